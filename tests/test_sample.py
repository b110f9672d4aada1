"""`agsm sample`'s options (images per prompt, batch size, negative prompt, device and dtype, run.json), the
sampler defaults every command shares, and a warning-free run."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import agsm.shapes
from agsm.cli import build_parser, main
from agsm.sample import load_pipeline, sample
from agsm.backbones.sampler_defaults import SamplerSettings, read_model_sampler, resolve_sampler_settings

SHIPPED = Path(agsm.shapes.__file__).parent / "models"


def _pixels(folder, name):
    return np.asarray(Image.open(Path(folder) / name), dtype=int)


@pytest.mark.parametrize("model", ["sd15_dir", "sdxl_dir", "sd3_dir"])
def test_batches_give_the_images_drawn_one_by_one(model, request, tmp_path):
    """Each image has its own seed and generator (the stock pipelines take a list of them): a batch that spans two
    prompts draws what separate calls draw, within the rounding of another batch layout."""
    path = request.getfixturevalue(model)
    prompts = ["a red circle", "two blue squares"]
    alone = sample(path, prompts, tmp_path / "alone", seed=5, steps=2, images_per_prompt=2, batch_size=1)
    batched = sample(path, prompts, tmp_path / "batched", seed=5, steps=2, images_per_prompt=2, batch_size=3)
    assert [p.name for p in alone] == [p.name for p in batched] == [
        "p0000_i00.png", "p0000_i01.png", "p0001_i00.png", "p0001_i01.png"]
    for a, b in zip(alone, batched):
        # Another batch size changes matmul shapes, so float rounding may differ: at most 2 of 255 levels.
        assert np.abs(_pixels(a.parent, a.name) - _pixels(b.parent, b.name)).max() <= 2, a.name
    first, second = _pixels(alone[0].parent, alone[0].name), _pixels(alone[1].parent, alone[1].name)
    assert np.abs(first - second).max() > 2  # two images of one prompt: two seeds
    record = json.loads((tmp_path / "batched" / "run.json").read_text())
    assert [(i["prompt_index"], i["image_index"], i["seed"]) for i in record["images"]] == [
        (0, 0, 5), (0, 1, 6), (1, 0, 7), (1, 1, 8)]
    assert record["images_per_prompt"] == 2 and record["batch_size"] == 3 and record["prompts"] == prompts


def test_negative_prompt_changes_the_image_and_is_recorded(sd15_dir, tmp_path):
    base = sample(sd15_dir, ["a red circle"], tmp_path / "base", steps=2)[0]
    negative = sample(sd15_dir, ["a red circle"], tmp_path / "neg", steps=2, negative_prompt="a blue square")[0]
    assert np.abs(_pixels(base.parent, base.name) - _pixels(negative.parent, negative.name)).max() > 2
    record = json.loads((tmp_path / "neg" / "run.json").read_text())
    assert record["negative_prompt"] == "a blue square"
    assert json.loads((tmp_path / "base" / "run.json").read_text())["negative_prompt"] is None


def test_sample_command_records_every_setting(sd15_dir, tmp_path):
    out = tmp_path / "out"
    main(["sample", "--model", str(sd15_dir), "--prompt", "a red circle", "--negative-prompt", "blue",
          "--images-per-prompt", "3", "--batch-size", "2", "--steps", "2", "--guidance", "3.5", "--seed", "4",
          "--out", str(out)])
    record = json.loads((out / "run.json").read_text())
    assert {k: record[k] for k in ("negative_prompt", "images_per_prompt", "batch_size", "steps", "guidance", "seed",
                                   "sampler_source", "device", "dtype", "size", "scheduler")} == {
        "negative_prompt": "blue", "images_per_prompt": 3, "batch_size": 2, "steps": 2, "guidance": 3.5, "seed": 4,
        "sampler_source": "given", "device": "cpu", "dtype": "float32", "size": 32, "scheduler": "DDIMScheduler"}
    assert sorted(p.name for p in out.glob("*.png")) == ["p0000_i00.png", "p0000_i01.png", "p0000_i02.png"]


def test_bad_counts_are_errors_naming_the_option(sd15_dir, tmp_path):
    with pytest.raises(ValueError, match="--images-per-prompt 0 must be >= 1"):
        sample(sd15_dir, ["a"], tmp_path, images_per_prompt=0)
    with pytest.raises(ValueError, match="--batch-size 0 must be >= 1"):
        sample(sd15_dir, ["a"], tmp_path, batch_size=0)


def test_every_sample_option_has_help():
    parser = dict(a for a in build_parser()._subparsers._group_actions[0].choices.items())["sample"]
    missing = [a.option_strings for a in parser._actions if a.option_strings != ["-h", "--help"] and not a.help]
    assert not missing
    assert "default: the model's recommended sampler" in " ".join(parser.format_help().split())


def test_sampler_comes_from_the_model_folder_else_the_architecture(sd15_dir, sd3_dir, tmp_path):
    assert resolve_sampler_settings(load_pipeline(sd15_dir)) == SamplerSettings(30, 7.0, "architecture")
    assert resolve_sampler_settings(load_pipeline(sd3_dir)) == SamplerSettings(28, 4.0, "architecture")
    own = tmp_path / "own"
    shutil.copytree(sd15_dir, own)
    (own / "sampler.json").write_text(json.dumps({"steps": 12, "guidance": 3.5}))
    pipe = load_pipeline(own)
    assert resolve_sampler_settings(pipe) == SamplerSettings(12, 3.5, "model")
    assert resolve_sampler_settings(pipe, 4) == SamplerSettings(4, 3.5, "model and given")
    assert resolve_sampler_settings(pipe, 4, 1.0) == SamplerSettings(4, 1.0, "given")
    sample(own, ["a"], tmp_path / "out")
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    assert (record["steps"], record["guidance"], record["sampler_source"]) == (12, 3.5, "model")
    (own / "sampler.json").write_text('{"steps": "many", "guidance": 5}')
    with pytest.raises(ValueError, match="sampler.json: steps 'many' must be an integer >= 1.*fix or delete"):
        resolve_sampler_settings(pipe)
    (own / "sampler.json").write_text("25 steps")
    with pytest.raises(ValueError, match="sampler.json is not a sampler recommendation.*fix or delete it"):
        resolve_sampler_settings(pipe)


def test_shipped_models_recommend_the_sampler_their_scores_used():
    """README's numbers come from these settings: `agsm eval shapes` and the demo must keep drawing with them."""
    sd15, sd3 = read_model_sampler(SHIPPED / "sd15-tiny"), read_model_sampler(SHIPPED / "sd3-tiny")
    scored = json.loads((SHIPPED / "sd15-tiny" / "suite_scores.json").read_text())["sampler"]
    assert (sd15.steps, sd15.guidance) == (scored["steps"], scored["guidance"]) == (25, 6.0)
    assert (sd3.steps, sd3.guidance) == (25, 5.0)


def test_a_sample_run_gives_no_future_warning(sd15_dir, tmp_path, recwarn):
    """diffusers >= 0.40 warns about from_pretrained(torch_dtype=...): we pass the name it accepts."""
    sample(sd15_dir, ["a red circle"], tmp_path, steps=1)
    future = [str(w.message) for w in recwarn if issubclass(w.category, FutureWarning)]
    assert not future, future


def test_pretraining_ships_its_recipe_sampler_with_the_model(tmp_path):
    from agsm.shapes.pretraining.cli import record_sampler

    record_sampler(tmp_path, "sd3")
    sampler = read_model_sampler(tmp_path)
    assert (sampler.steps, sampler.guidance, sampler.source) == (25, 5.0, "model")
