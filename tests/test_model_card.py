"""The model card written beside a run's token files: Hub front matter and a body that names the method, the
backbone, the data, the steps, the online and EMA files, the final metrics, the validation images and how to use
the tokens (from the Hub, or the folder on disk)."""
import json
from pathlib import Path

import yaml

from agsm.training.config import load_config
from agsm.training.model_card import base_model_of, final_metrics, write_model_card
from agsm.tokens.token_file import FILE_NAME
from agsm.training.loop import train


def _front_matter_and_body(card: Path) -> tuple[dict, str]:
    text = card.read_text()
    assert text.startswith("---\n")
    front, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(front), body


def test_a_short_training_run_writes_its_model_card(sd15_dir, image_folder, tmp_path):
    out = tmp_path / "run"
    config = load_config(None, ["--model.path", str(sd15_dir), "--data.path", str(image_folder),
                                "--train.output_dir", str(out), "--data.cache_dir", str(tmp_path / "cache"),
                                "--train.steps", "2", "--train.checkpoint_every", "100", "--train.log_every", "1",
                                "--method.ema_decay", "0.9", "--train.validation_prompts", '["a red square"]',
                                "--train.validation_every", "1", "--train.validation_steps", "1"])
    train(config)
    front, body = _front_matter_and_body(out / "README.md")
    assert front["library_name"] == "agsm" and "base_model" not in front  # a local model of unknown origin
    assert {"agsm", "soft-tokens", "sd15"} <= set(front["tags"])
    assert "# agsm soft tokens for sd15" in body
    assert "- Method: `agsm`" in body and "| gamma_pos |" in body  # the method and its settings
    settings = body.split("Method settings:")[1].split("##")[0]
    for other in ("diagonal_weight", "scale", "beta"):  # softrepa's and dpo's options: not this run's
        assert f"| {other} |" not in settings, other
    assert f"- Backbone: `{sd15_dir}` (architecture sd15, family unet" in body
    assert f"- Data: format `imagefolder`, path `{image_folder}`, 16 images" in body
    assert "- Steps: 2" in body
    assert f"| `{FILE_NAME}` | online: the tokens the optimiser trained; loaded by default | 2 |" in body
    ema_row = "| `soft_tokens_ema.safetensors` | EMA: the exponential moving average of the online tokens (decay 0.9)"
    assert ema_row in body
    last = json.loads((out / "train_log.jsonl").read_text().splitlines()[-1])
    assert last["step"] == 2 and f"| loss | {last['loss']:.6g} |" in body
    assert f"agsm.load_soft_tokens(pipe, '{out}')" in body and f"agsm sample --model {sd15_dir} --tokens {out}" in body
    # Hub usage, with the note to put the real repo id in
    assert 'agsm.load_soft_tokens(pipe, "<user>/<repo>")' in body and "Replace `<user>/<repo>`" in body
    assert "--tokens <user>/<repo>" in body
    # the validation images: the base round and the last, linked relative to the folder
    assert "## Validation images" in body
    assert "](validation/step-0/0.png)" in body and "](validation/step-2/0.png)" in body and "| a red square |" in body
    assert str(out / "validation") not in body


def test_card_from_the_folder_alone_and_hub_base_models(tmp_path):
    from agsm.tokens.token_file import save_tokens
    from agsm.tokens import SoftTokens

    info = {"family": "mmdit", "architecture": "sd3", "token_width": 8, "num_train_timesteps": 1000}
    save_tokens(tmp_path / "soft_tokens.safetensors", SoftTokens(6, 8), info, {"blocks": "3"}, "softrepa", {}, 7,
                weights="ema")
    cached = "/home/u/.cache/huggingface/hub/models--stabilityai--stable-diffusion-3-medium-diffusers/snapshots/abc"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"model": {"path": cached}, "data": {"format": "coco"}}))
    (tmp_path / "train_log.jsonl").write_text('{"step": 7, "loss": 0.5}\n{"step": 8, "lo')  # a torn last line
    front, body = _front_matter_and_body(write_model_card(tmp_path))
    assert front["base_model"] == "stabilityai/stable-diffusion-3-medium-diffusers"
    assert "| `soft_tokens.safetensors` | EMA: the exponential moving average of the online tokens; loaded by " in body
    assert "first 3 MM-DiT blocks" in body and "number of images not recorded" in body
    assert "(step 7)" in body and "| loss | 0.5 |" in body
    assert "from_pretrained('stabilityai/stable-diffusion-3-medium-diffusers')" in body
    assert "## Validation images" not in body  # this run drew none
    assert final_metrics(tmp_path / "missing.jsonl") is None
    assert base_model_of("someone/sd15-base") == "someone/sd15-base" and base_model_of(str(tmp_path)) is None
