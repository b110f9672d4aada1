"""A training method is one spec (objectives/registry.py): a method defined in this file alone, its options and its
step, registers, reads its options from the config, trains end to end, and leaves again."""
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from agsm.objectives import MethodSpec, TokenMethodOptions, get_method, method_names, register, unregister
from agsm.objectives.dsm import dsm_step
from agsm.objectives.options import check, method_name
from agsm.tokens.token_file import read_tokens
from agsm.training.config import load_config, option_help
from agsm.training.loop import train


@dataclass
class WeightedDsmOptions(TokenMethodOptions):
    """A toy method: plain DSM times a constant weight."""

    name: str = method_name("weighted_dsm")
    weight: float = field(default=2.0, metadata={"help": "the constant the DSM loss is multiplied by"})

    def __post_init__(self):
        super().__post_init__()
        check(self.weight > 0, f"method.weight {self.weight} must be > 0")


def weighted_dsm_step(denoiser, batch, options: WeightedDsmOptions, generator: torch.Generator):
    loss, _ = dsm_step(denoiser, batch, options, generator)
    return options.weight * loss, {"unweighted": loss.detach()}


@pytest.fixture
def toy_method():
    spec = register(MethodSpec("weighted_dsm", WeightedDsmOptions, weighted_dsm_step, data="captions",
                               trains="tokens", about="test only: DSM times a weight"))
    try:
        yield spec
    finally:
        unregister("weighted_dsm")
    assert "weighted_dsm" not in method_names()


def test_the_built_in_six_are_registered_with_what_the_trainer_needs():
    assert method_names()[:6] == ("agsm", "softrepa", "dsm", "dpo", "inpo", "spo")
    kinds = {n: (get_method(n).data, get_method(n).trains) for n in method_names()[:6]}
    assert kinds == {"agsm": ("captions", "tokens"), "softrepa": ("captions", "tokens"), "dsm": ("captions", "tokens"),
                     "dpo": ("pairs", "backbone"), "inpo": ("pairs", "backbone"), "spo": ("prompts", "backbone")}
    assert [n for n in method_names()[:6] if get_method(n).unet_only] == ["inpo", "spo"]
    agsm = get_method("agsm")
    assert agsm.token_sets(agsm.options()) == 2 and agsm.token_sets(agsm.options(gamma_neg=0.0)) == 1
    assert agsm.token_sets(agsm.options(shared_tokens=True)) == 1
    assert get_method("softrepa").token_sets(get_method("softrepa").options()) == 1
    with pytest.raises(ValueError, match="method.name 'ppo' is not one of 'agsm', 'softrepa', 'dsm', 'dpo'"):
        get_method("ppo")


def test_a_spec_is_checked_when_it_is_made(toy_method):
    with pytest.raises(ValueError, match="already registered"):
        register(toy_method)
    with pytest.raises(ValueError, match="data 'images' is not one of captions, pairs, prompts"):
        MethodSpec("weighted_dsm", WeightedDsmOptions, weighted_dsm_step, data="images", trains="tokens")
    with pytest.raises(ValueError, match="its options' name defaults to 'weighted_dsm'"):
        MethodSpec("other", WeightedDsmOptions, weighted_dsm_step, data="captions", trains="tokens")


def test_its_options_are_the_method_section(toy_method):
    config = load_config(None, ["--method.name", "weighted_dsm", "--method.weight", "3"])
    assert config.method == WeightedDsmOptions(weight=3.0) and config.method.num_token_sets == 1
    assert config.to_dict()["method"]["weight"] == 3.0
    with pytest.raises(ValueError, match="method.weight 0.0 must be > 0"):
        load_config(None, ["--method.name", "weighted_dsm", "--method.weight", "0"])
    with pytest.raises(ValueError, match="method.weight is an option of weighted_dsm, not of agsm"):
        load_config(None, ["--method.weight", "3"])
    listed = {section: [flag for flag, _, _ in options] for section, _, options in option_help()}
    assert "--method.weight" in listed["method.name weighted_dsm"]


@pytest.mark.slow
def test_it_trains_end_to_end(toy_method, sd15_dir, image_folder, tmp_path):
    run = tmp_path / "run"
    decay = 0.5
    config = load_config(None, ["--model.path", str(sd15_dir), "--data.path", str(image_folder),
                                "--train.output_dir", str(run), "--data.cache_dir", str(tmp_path / "cache"),
                                "--method.name", "weighted_dsm", "--method.weight", "3", "--method.ema_decay",
                                str(decay), "--train.steps", "2", "--train.checkpoint_every", "1",
                                "--train.checkpoints_total_limit", "null", "--train.lr", "0.05"])
    tensors, meta = read_tokens(train(config))
    assert meta["method"] == "weighted_dsm" and "psi_neg" not in tensors
    logged = (run / "train_log.jsonl").read_text()
    assert '"unweighted"' in logged
    # The EMA, watched through what the run wrote: after each step, ema <- lerp(ema, tokens, 1 - decay).
    first, second = (load_file(Path(run, "checkpoints", f"checkpoint-{n}", "train_state.safetensors")) for n in (1, 2))
    online = {k.removeprefix("tokens."): v for k, v in second.items() if k.startswith("tokens.")}
    assert online
    for key, value in online.items():
        expected = first[f"ema.{key}"].lerp(value.to(first[f"ema.{key}"].dtype), 1.0 - decay)
        torch.testing.assert_close(second[f"ema.{key}"], expected, rtol=0, atol=1e-7)
        assert not torch.equal(second[f"ema.{key}"], value)  # a moving average, not a copy
    ema_file, _ = read_tokens(run / "soft_tokens_ema.safetensors")
    torch.testing.assert_close(ema_file["psi_pos"], second["ema.sets"][0])
