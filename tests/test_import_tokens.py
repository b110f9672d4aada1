"""`agsm import-tokens` (agsm.tokens.authors_tokens): token files in the AGSM authors' layout, written here with
torch.save of the objects their code saves (an nn.Parameter and a whole nn.Embedding), become agsm token files
whose loaded predictions follow the authors' sampling rule; anything else in a .pth is refused unrun.

The rule by hand, as their code states it and independent of agsm's injector (which wraps attention processors and
cuts tokens off after each block): the UNet gets a context with the tokens after BOS passed to its down and mid
blocks (block pre-hooks replace the blocks' `encoder_hidden_states`), and on SD3 every joint block's input context
is cut back to the text length and, for the first L blocks, that block's tokens appended. Tokens are the chosen
set plus the time-table row int(t) // 10 (one less for t = 1000); on SD3 block k reads the table's k-th column
slice. The conditional branch uses set 0 (psi+), the unconditional one set 1 here (their uncon2neg).
"""
import hashlib
import json
import re

import pytest
import torch
from torch import nn

import agsm
from agsm.backbones.architectures import build_pipeline
from agsm.cli import main
from agsm.tokens.authors_tokens import import_authors_tokens
from agsm.tokens.import_command import model_facts
from agsm.tokens.token_file import read_tokens

TOKENS, SD3_BLOCKS = 4, 3  # the toy SD3 has 6 blocks: blocks 3-5 see the stock context
TINY = "src/agsm/shapes/models/{}-tiny"


def authors_row(t: torch.Tensor) -> torch.Tensor:
    """Their time-table row: int(t), one less for every sample when any is >= 1000, then // 10."""
    rows = t.to(torch.int32)
    if bool((rows >= 1000).any()):
        rows = rows - 1
    return (rows // 10).long()


def authors_tokens(tokens, table, sets, t, block=None) -> torch.Tensor:
    """[B, N, D]: set `sets[b]` (of block `block` on SD3) plus the sample's time-table row (its block slice)."""
    rows = table[authors_row(t)]
    if block is None:
        return tokens[sets] + rows[:, None, :]
    width = tokens.shape[-1]
    return tokens[sets, block] + rows[:, None, block * width:(block + 1) * width]


def branch_sets(batch: int) -> torch.Tensor:
    """[uncond half: psi-, cond half: psi+] as a CFG batch is laid out; a single sample is conditional."""
    half = batch // 2
    return torch.tensor([1] * half + [0] * (batch - half))


def by_hand(denoiser, tokens, table):
    """Hooks that put the authors' tokens into the stock denoiser; returns their handles."""
    state = {}
    unet = hasattr(denoiser, "down_blocks")

    def on_call(module, args, kwargs):
        sample = kwargs["sample" if unet else "hidden_states"]
        state["t"] = torch.as_tensor(kwargs["timestep"]).reshape(-1).expand(sample.shape[0])
        state["text"] = kwargs["encoder_hidden_states"].shape[1]

    def unet_block(module, args, kwargs):
        context = kwargs["encoder_hidden_states"]
        soft = authors_tokens(tokens, table, branch_sets(context.shape[0]), state["t"])
        return args, {**kwargs, "encoder_hidden_states": torch.cat([context[:, :1], soft, context[:, 1:]], 1)}

    def sd3_block(index):
        def before(module, args, kwargs):
            context = kwargs["encoder_hidden_states"][:, :state["text"]]
            if index < tokens.shape[1]:
                soft = authors_tokens(tokens, table, branch_sets(context.shape[0]), state["t"], block=index)
                context = torch.cat([context, soft], 1)
            return args, {**kwargs, "encoder_hidden_states": context}
        return before

    handles = [denoiser.register_forward_pre_hook(on_call, with_kwargs=True)]
    if unet:
        for block in [*denoiser.down_blocks, denoiser.mid_block]:
            if getattr(block, "has_cross_attention", False):
                handles.append(block.register_forward_pre_hook(unet_block, with_kwargs=True))
    else:
        for index, block in enumerate(denoiser.transformer_blocks):
            handles.append(block.register_forward_pre_hook(sd3_block(index), with_kwargs=True))
    return handles


def write_authors_files(folder, arch, width, seed=0):
    """soft_tokens.pth and soft_t_tokens.pth as their code writes them; returns (tokens, time table weight)."""
    g = torch.Generator().manual_seed(seed)
    shape = (2, SD3_BLOCKS, TOKENS, width) if arch == "sd3" else (2, TOKENS, width)
    tokens = nn.Parameter(torch.randn(shape, generator=g))
    table = nn.Embedding(100, width * (SD3_BLOCKS if arch == "sd3" else 1))
    with torch.no_grad():
        table.weight.copy_(torch.randn(table.weight.shape, generator=g))
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(tokens, folder / "soft_tokens.pth")
    torch.save(table, folder / "soft_t_tokens.pth")
    return tokens.detach(), table.weight.detach()


def _calls(denoiser, unet: bool):
    """A list filled with (keyword arguments, output) of every denoiser call."""
    calls = []

    def record(module, args, kwargs, output):
        names = ("sample", "timestep") if unet else ("hidden_states", "timestep")
        call = {**dict(zip(names, args)), **kwargs, "return_dict": False}
        calls.append(({k: v.clone() if torch.is_tensor(v) else v for k, v in call.items()}, output[0].clone()))
    return calls, denoiser.register_forward_hook(record, with_kwargs=True)


def _one_sample(call: dict, t) -> dict:
    """The conditional sample of a CFG call, at timestep t."""
    def take(v):
        if isinstance(v, dict):
            return {k: take(x) for k, x in v.items()}
        return v[-1:] if torch.is_tensor(v) and v.ndim and v.shape[0] > 1 else v
    return {**take(call), "timestep": t}


@pytest.mark.parametrize("arch", ["sd15", "sdxl", "sd3"])
def test_imported_tokens_predict_as_the_authors_rule(arch, tmp_path):
    pipe = build_pipeline(arch, "toy")
    pipe.set_progress_bar_config(disable=True)
    unet = arch != "sd3"
    denoiser = pipe.unet if unet else pipe.transformer
    width = denoiser.config.cross_attention_dim if unet else denoiser.config.caption_projection_dim
    tokens, table = write_authors_files(tmp_path / "authors", arch, width)
    done = import_authors_tokens(tmp_path / "authors" / "soft_tokens.pth", tmp_path / "authors" / "soft_t_tokens.pth",
                                 tmp_path / "imported.safetensors", backbone=arch)
    assert done.architecture == arch

    agsm.load_soft_tokens(pipe, done.path, uncond_tokens="negative")
    calls, handle = _calls(denoiser, unet)
    with torch.no_grad():
        pipe("a red circle", num_inference_steps=2, guidance_scale=5.0, output_type="latent",
             generator=torch.Generator().manual_seed(0))
        handle.remove()
        # single conditional samples at the table's edges: t = 1000 reads row 99, 10 row 1, a float below 10 row 0
        edges = [1000.0, 999.5, 10.0, 9.999999, 0.0] if arch == "sd3" else [999, 990, 10, 9, 0]
        assert len(calls) == 2, "one CFG call per step"
        singles = [_one_sample(calls[0][0], torch.tensor([t])) for t in edges]
        calls += [(call, denoiser(**call)[0]) for call in singles]

    agsm.unload_soft_tokens(pipe)
    with torch.no_grad():
        stock = [denoiser(**call)[0] for call, _ in calls]
        handles = by_hand(denoiser, tokens, table)
        expected = [denoiser(**call)[0] for call, _ in calls]
    for h in handles:
        h.remove()
    for (call, got), want, plain in zip(calls, expected, stock):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        assert (got - plain).abs().max() > 1e-3, "the tokens changed nothing: the comparison would prove nothing"


@pytest.mark.parametrize("arch", ["sd15", "sd3"])
def test_cli_writes_a_checked_file_naming_its_source(arch, tmp_path, capsys):
    model = TINY.format(arch)
    authors = tmp_path / "authors"
    write_authors_files(authors, arch, model_facts(model)["token_width"])
    out = tmp_path / "tokens.safetensors"
    main(["import-tokens", "--tokens", str(authors), "--model", model, "--out", str(out)])
    tensors, meta = read_tokens(out)
    source = json.loads(meta["imported_from"])
    for role, name in (("tokens", "soft_tokens.pth"), ("time_table", "soft_t_tokens.pth")):
        assert source[role] == {"file": name, "sha256": hashlib.sha256((authors / name).read_bytes()).hexdigest()}
    assert (meta["architecture"], meta["weights"]) == (arch, "online")
    assert meta.get("blocks" if arch == "sd3" else "stages") == (str(SD3_BLOCKS) if arch == "sd3" else "down,mid")
    assert "--uncond-tokens positive" in capsys.readouterr().out  # their SD1.5 and SD3 scripts: psi+ in both
    with pytest.raises(SystemExit):  # an existing file is kept unless --overwrite
        main(["import-tokens", "--tokens", str(authors), "--out", str(out), "--backbone", arch])
    assert "exists" in capsys.readouterr().err


def test_model_of_another_backbone_or_width_is_refused(tmp_path):
    write_authors_files(tmp_path, "sd15", 64)  # the sd15-tiny width
    pth = tmp_path / "soft_tokens.pth"
    with pytest.raises(ValueError, match="--backbone sd15 but --model is an sdxl pipeline"):
        import_authors_tokens(pth, None, tmp_path / "o.safetensors", backbone="sd15", model=model_facts(TINY.format("sdxl")))
    with pytest.raises(ValueError, match="width 64 but the sdxl model's cross_attention_dim is 96"):
        import_authors_tokens(pth, None, tmp_path / "o.safetensors", model=model_facts(TINY.format("sdxl")))
    with pytest.raises(ValueError, match="cannot tell the backbone .* pass --backbone"):
        import_authors_tokens(pth, None, tmp_path / "o.safetensors")
    assert not (tmp_path / "o.safetensors").exists()


def test_full_size_width_names_the_backbone(tmp_path):
    torch.save(nn.Parameter(torch.zeros(2, TOKENS, 2048)), tmp_path / "soft_tokens.pth")
    done = import_authors_tokens(tmp_path / "soft_tokens.pth", None, tmp_path)
    assert done.architecture == "sdxl" and done.uncond_tokens == "negative"  # their SDXL script: psi- unconditional
    tensors, _ = read_tokens(done.path)
    assert not tensors["time_table"].any()  # no time table file: rows of zeros, as their use_soft_t off


class _WritesAFile:
    """Unpickling this would run exec, which writes `marker`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('ran')",)


@pytest.mark.parametrize("role", ["tokens", "time table"])
def test_a_pickle_that_would_run_code_is_refused_unrun(role, tmp_path):
    write_authors_files(tmp_path, "sd15", 32)
    marker = tmp_path / "ran.txt"
    bad = tmp_path / ("soft_tokens.pth" if role == "tokens" else "soft_t_tokens.pth")
    torch.save(_WritesAFile(marker), bad)
    with pytest.raises(ValueError, match=re.escape(f"{bad} was refused without running it: it holds a reference to exec")):
        import_authors_tokens(tmp_path / "soft_tokens.pth", tmp_path / "soft_t_tokens.pth", tmp_path / "o.safetensors",
                              backbone="sd15")
    assert not marker.exists()


def test_other_modules_are_not_allowed(tmp_path):
    torch.save(nn.Parameter(torch.zeros(2, TOKENS, 32)), tmp_path / "soft_tokens.pth")
    torch.save(nn.Linear(32, 100), tmp_path / "soft_t_tokens.pth")  # only nn.Embedding is on the allow-list
    with pytest.raises(ValueError, match="holds a reference to torch.nn.modules.linear.Linear"):
        import_authors_tokens(tmp_path / "soft_tokens.pth", tmp_path / "soft_t_tokens.pth", tmp_path, backbone="sd15")


@pytest.mark.parametrize("arch,tokens,table,expected", [
    ("sd15", (3, TOKENS, 32), (100, 32), r"shape \[3, 4, 32\]; sd15 tokens .* \[2, tokens, width\]"),
    ("sd3", (2, TOKENS, 32), (100, 32), r"sd3 tokens .* \[2, blocks, tokens, width\]"),
    ("sdxl", (2, TOKENS, 32), (99, 32), r"time table of shape \[99, 32\]; .* need \[100, 32\]"),
    ("sd3", (2, 3, TOKENS, 32), (100, 32), r"need \[100, 96\] \(3 blocks x width 32\)"),
])
def test_wrong_shapes_are_refused_naming_the_expected_one(arch, tokens, table, expected, tmp_path):
    torch.save(nn.Parameter(torch.zeros(tokens)), tmp_path / "soft_tokens.pth")
    torch.save(nn.Embedding(*table), tmp_path / "soft_t_tokens.pth")
    with pytest.raises(ValueError, match=expected):
        import_authors_tokens(tmp_path / "soft_tokens.pth", tmp_path / "soft_t_tokens.pth", tmp_path, backbone=arch)


def test_a_state_dict_without_the_weight_is_refused(tmp_path):
    torch.save(nn.Parameter(torch.zeros(2, TOKENS, 32)), tmp_path / "soft_tokens.pth")
    torch.save({"bias": torch.zeros(100, 32)}, tmp_path / "soft_t_tokens.pth")
    with pytest.raises(ValueError, match=r"holds a dict with keys \['bias'\]; expected the time table"):
        import_authors_tokens(tmp_path / "soft_tokens.pth", tmp_path / "soft_t_tokens.pth", tmp_path, backbone="sd15")
