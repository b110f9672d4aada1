"""Alignment-guided sampling (agsm.guidance): gamma 0 is the stock pipeline bit for bit; one denoiser call under the
wrapper equals the rule computed by hand from direct denoiser calls (both `where` values, with classifier-free
guidance, on the three architectures, and with soft tokens loaded); bad input is refused naming the fix."""
from contextlib import contextmanager, nullcontext
from pathlib import Path

import pytest
import torch

from agsm.backbones.architectures import build_pipeline
from agsm.guidance import align_guidance
from agsm.pipelines import active_injector, denoiser_of, load_soft_tokens
from agsm.tokens.soft_tokens import POSITIVE
from token_file_helpers import write_token_file

ARCHS = ("sd15", "sdxl", "sd3")
PROMPTS = ["a red circle", "two blue squares"]
# Different counts per prompt: the wrapper groups rows by how many negatives they have.
NEGATIVES = [["a blue circle", "a red square"], ["three blue squares", "two blue circles", "two green squares"]]
GUIDANCE = 4.0


@pytest.fixture(scope="module")
def pipes():
    built = {}
    for arch in ARCHS:
        pipe = build_pipeline(arch, "toy")
        pipe.set_progress_bar_config(disable=True)
        built[arch] = pipe
    return built


def draw(pipe, steps=2, output_type="latent"):
    generators = [torch.Generator().manual_seed(i) for i in range(len(PROMPTS))]
    return pipe(PROMPTS, num_inference_steps=steps, guidance_scale=GUIDANCE, generator=generators,
                output_type=output_type).images


@contextmanager
def recorded(denoiser):
    """Every call of `denoiser`: (args, kwargs, its final output), after any other forward hook changed it."""
    calls = []

    def hook(module, args, kwargs, output):
        calls.append((args, dict(kwargs), (output[0] if isinstance(output, tuple) else output.sample).clone()))

    handle = denoiser.register_forward_hook(hook, with_kwargs=True)
    try:
        yield calls
    finally:
        handle.remove()


@pytest.mark.parametrize("arch", ARCHS)
def test_gamma_zero_is_the_stock_pipeline_bit_for_bit(pipes, arch):
    pipe = pipes[arch]
    stock = draw(pipe, output_type="np")
    with align_guidance(pipe, NEGATIVES, gamma=0.0):
        zero = draw(pipe, output_type="np")
    with align_guidance(pipe, NEGATIVES, gamma=1.0):
        guided = draw(pipe, output_type="np")
    after = draw(pipe, output_type="np")
    assert (zero == stock).all()
    assert (after == stock).all()  # leaving the block takes every wrapper away
    assert "encode_prompt" not in vars(pipe) and not denoiser_of(pipe)._forward_hooks
    assert abs(guided - stock).max() > 1e-4  # the same block with gamma 1 does change the images


def _inputs(arch, args, kwargs):
    """(x_t, t, text embeddings, pooled embeddings, SDXL time ids) of a recorded denoiser call."""
    if arch == "sd3":
        return kwargs["hidden_states"], kwargs["timestep"], kwargs["encoder_hidden_states"], \
            kwargs["pooled_projections"], None
    added = kwargs.get("added_cond_kwargs") or {}
    return args[0], args[1], kwargs["encoder_hidden_states"], added.get("text_embeds"), added.get("time_ids")


def _predict(pipe, arch, x, t, embeds, pooled, time_ids):
    denoiser = denoiser_of(pipe)
    if arch == "sd3":
        t = torch.as_tensor(t).reshape(-1)[:1].expand(x.shape[0])
        return denoiser(hidden_states=x, timestep=t, encoder_hidden_states=embeds, pooled_projections=pooled).sample
    extra = {"added_cond_kwargs": {"text_embeds": pooled, "time_ids": time_ids}} if arch == "sdxl" else {}
    return denoiser(x, t, encoder_hidden_states=embeds, **extra).sample


def _encode(pipe, arch, texts):
    if arch == "sd15":
        return pipe.encode_prompt(texts, "cpu", 1, False)[0], None
    extra = {"prompt_2": texts, "prompt_3": texts} if arch == "sd3" else {}
    out = pipe.encode_prompt(texts, device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=False, **extra)
    return out[0], out[2]


@torch.no_grad()
def by_hand(pipe, arch, call, temperature, conditional_tokens=None):
    """For each conditional row: eps(c), the negatives' predictions, the weights and D, from direct calls."""
    x, t, embeds, pooled, time_ids = _inputs(arch, *call[:2])
    own_all = _predict(pipe, arch, x, t, embeds, pooled, time_ids)
    n = len(PROMPTS)
    rows = []
    for i, texts in enumerate(NEGATIVES):
        c = n + i  # conditional half
        m = len(texts)
        neg_embeds, neg_pooled = _encode(pipe, arch, texts)
        ids = time_ids[c:c + 1].expand(m, -1) if time_ids is not None else None
        with conditional_tokens(m) if conditional_tokens else nullcontext():
            others = _predict(pipe, arch, x[c:c + 1].expand(m, *x.shape[1:]), t, neg_embeds, neg_pooled, ids)
        own = own_all[c]
        every = torch.cat([own[None], others])
        rewards = -((every - own) ** 2).flatten(1).mean(1)  # r_c = 0
        weights = torch.softmax(rewards / temperature, 0)
        direction = own - (weights.reshape(-1, 1, 1, 1) * every).sum(0)
        rows.append({"own": own, "uncond": own_all[i], "rewards": rewards, "weights": weights, "D": direction})
    return own_all, rows


def _temperature(pipe, arch, call) -> float:
    """A temperature at which the hand-computed weights are far from uniform (the toy models' rewards are tiny)."""
    _, rows = by_hand(pipe, arch, call, 1.0)
    spread = max(float(r["rewards"].max() - r["rewards"].min()) for r in rows)
    return spread / 2


def _first_guided_call(calls):
    return next(c for c in calls if c[2].shape[0] == 2 * len(PROMPTS))


@pytest.mark.parametrize("where", ("conditional", "after-guidance"))
@pytest.mark.parametrize("arch", ARCHS)
def test_one_denoiser_call_equals_the_rule_by_hand(pipes, arch, where):
    pipe, gamma = pipes[arch], 2.0
    check_against_hand(pipe, arch, where, gamma)


def check_against_hand(pipe, arch, where, gamma, conditional_tokens=None):
    with recorded(denoiser_of(pipe)) as plain:
        draw(pipe, steps=1)
    call = _first_guided_call(plain)
    temperature = _temperature(pipe, arch, call)
    with align_guidance(pipe, NEGATIVES, gamma=gamma, temperature=temperature, where=where):
        with recorded(denoiser_of(pipe)) as guided:
            draw(pipe, steps=1)
    got_call = _first_guided_call(guided)
    for seen, plain_input in zip(_inputs(arch, *got_call[:2])[:2], _inputs(arch, *call[:2])[:2]):
        assert torch.equal(torch.as_tensor(seen), torch.as_tensor(plain_input))  # the same step-1 x_t and t
    own_all, rows = by_hand(pipe, arch, call, temperature, conditional_tokens)
    assert any(float(r["weights"].max() - r["weights"].min()) > 0.05 for r in rows)  # weights that matter
    got = got_call[2]
    n = len(PROMPTS)
    torch.testing.assert_close(got[:n], own_all[:n])  # the unconditional half is untouched
    for i, row in enumerate(rows):
        factor = gamma / (GUIDANCE if where == "after-guidance" else 1.0)
        want = factor * row["D"]
        shift = got[n + i] - row["own"]
        assert want.abs().max() > 1e-4
        torch.testing.assert_close(shift, want, rtol=1e-3, atol=1e-3 * float(want.abs().max()))
        if where == "after-guidance":  # the guided prediction gains exactly gamma D
            guided_now = row["uncond"] + GUIDANCE * (got[n + i] - row["uncond"])
            guided_stock = row["uncond"] + GUIDANCE * (row["own"] - row["uncond"])
            torch.testing.assert_close(guided_now - guided_stock, gamma * row["D"], rtol=1e-3,
                                       atol=1e-3 * float((gamma * row["D"]).abs().max()))


def test_with_tokens_loaded_negatives_are_conditional_predictions(tmp_path):
    """Tokens with psi- in the unconditional branch: the negatives still get psi+ (they stand for eps(c_j))."""
    pipe = build_pipeline("sd15", "toy")
    pipe.set_progress_bar_config(disable=True)
    with recorded(denoiser_of(pipe)) as plain:
        draw(pipe, steps=1)
    load_soft_tokens(pipe, write_token_file(tmp_path, pipe, scale=2.0), uncond_tokens="negative")
    with recorded(denoiser_of(pipe)) as tokened:
        draw(pipe, steps=1)
    assert not torch.equal(_first_guided_call(plain)[2], _first_guided_call(tokened)[2])  # the tokens act
    injector = active_injector(pipe)

    @contextmanager
    def conditional_tokens(m):
        with injector.use(injector.tokens, torch.full((m,), POSITIVE, dtype=torch.long)):
            yield

    check_against_hand(pipe, "sd15", "conditional", 2.0, conditional_tokens)


def test_bad_input_is_refused_naming_the_fix(pipes):
    pipe = pipes["sd15"]
    with pytest.raises(ValueError, match="where 'inside'"):
        align_guidance(pipe, NEGATIVES, where="inside").__enter__()
    with pytest.raises(ValueError, match="one list per prompt"):
        with align_guidance(pipe, NEGATIVES[:1]):
            draw(pipe, steps=1)
    with pytest.raises(ValueError, match="no entry for the prompt"):
        with align_guidance(pipe, {"a red circle": ["a blue circle"]}):
            draw(pipe, steps=1)
    embeds = pipe.encode_prompt(PROMPTS, "cpu", 1, False)[0]
    with pytest.raises(ValueError, match="prompts as text"):
        with align_guidance(pipe, NEGATIVES):
            pipe(prompt_embeds=embeds, num_inference_steps=1, guidance_scale=GUIDANCE, output_type="latent")
    assert "encode_prompt" not in vars(pipe) and not denoiser_of(pipe)._forward_hooks  # removed after errors too


# ---- negatives ----
def _attribute_changes(a, b) -> int:
    """How many attributes (an object's colour or shape, the count, the relation) differ between two requirements."""
    changes = int(a.count != b.count) + int(a.relation != b.relation) + abs(len(a.objects) - len(b.objects))
    return changes + sum(int(x.color != y.color) + int(x.shape != y.shape) for x, y in zip(a.objects, b.objects))


def test_hard_negatives_change_one_attribute_of_suite_and_real_prompts():
    from agsm.guidance import hard_negatives
    from agsm.shapes.grammar import parse_prompt
    from agsm.shapes.suite import load_eval_suite

    suite = [line["prompt"] for line in load_eval_suite(None)][::10]  # every category
    table = hard_negatives(suite, count=3, seed=0)
    for prompt in suite:
        assert 1 <= len(table[prompt]) == len(set(table[prompt])) <= 3  # 'a square' has only two other shapes
        for negative in table[prompt]:
            assert _attribute_changes(parse_prompt(prompt), parse_prompt(negative)) == 1, (prompt, negative)
    real = ["a red car parked near two dogs", "a cat sitting on the left of a green bench"]
    for prompt, negatives in hard_negatives(real, count=3, seed=0).items():
        assert negatives and prompt not in negatives
        for negative in negatives:
            content = [(x, y) for x, y in zip(prompt.split(), negative.split()) if x != y and {x, y} != {"a", "an"}]
            assert len(negative.split()) == len(prompt.split()) and len(content) == 1, (prompt, negative)
    assert hard_negatives(suite, 3, seed=0) == table and hard_negatives(suite, 3, seed=1) != table  # seeded


def test_inbatch_negatives_are_other_prompts_of_the_set_whatever_the_batch():
    from agsm.guidance import inbatch_negatives, make_negatives

    prompt_set = ["a red circle", "a blue square", "two green triangles", "a yellow circle", "A red circle."]
    table = inbatch_negatives(prompt_set[:4], count=3, seed=0, prompt_set=prompt_set)
    for prompt, negatives in table.items():
        assert len(set(negatives)) == 3 and set(negatives) <= set(prompt_set)
        assert all(n.lower().rstrip(".") != prompt.lower().rstrip(".") for n in negatives)  # never the same text
    alone = inbatch_negatives(["two green triangles"], count=3, seed=0, prompt_set=prompt_set)
    assert alone["two green triangles"] == table["two green triangles"]  # the draw does not depend on the batch
    with pytest.raises(ValueError, match="need 3 other prompts"):
        make_negatives("inbatch", ["a red circle", "a blue square"], k=4)
    with pytest.raises(ValueError, match="'near' is not one of"):
        make_negatives("near", prompt_set)


def test_sample_command_samples_with_align_guidance_and_records_it(tmp_path, capsys):
    import json

    import numpy as np
    from PIL import Image

    import agsm.shapes
    from agsm.cli import main

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    common = ["sample", "--model", str(Path(agsm.shapes.__file__).parent / "models" / "sd15-tiny"), "--prompts",
              str(prompts), "--steps", "3", "--batch-size", "2", "--device", "cpu", "--dtype", "float32"]

    def pixels(name):
        return [np.asarray(Image.open(p)) for p in sorted((tmp_path / name).glob("*.png"))]

    main([*common, "--out", str(tmp_path / "plain")])
    main([*common, "--out", str(tmp_path / "zero"), "--align-guidance", "0"])
    main([*common, "--out", str(tmp_path / "guided"), "--align-guidance", "2", "--align-where", "after-guidance",
          "--align-k", "3"])
    assert all((a == b).all() for a, b in zip(pixels("plain"), pixels("zero")))
    assert any((a != b).any() for a, b in zip(pixels("plain"), pixels("guided")))
    record = json.loads((tmp_path / "guided" / "run.json").read_text())["align_guidance"]
    assert (record["gamma"], record["where"], record["k"], record["negatives"]) == (2.0, "after-guidance", 3, "hard")
    assert sorted(record["negatives_table"]) == sorted(PROMPTS)
    assert all(len(n) == 2 for n in record["negatives_table"].values())
    assert "align_guidance" not in json.loads((tmp_path / "plain" / "run.json").read_text())
    with pytest.raises(SystemExit):
        main([*common, "--out", str(tmp_path / "bad"), "--align-where", "conditional"])
    assert "--align-where needs --align-guidance" in capsys.readouterr().err
