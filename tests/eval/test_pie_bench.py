"""`agsm eval pie-bench` on a two-entry PIE-Bench look-alike with a fake editor, a fake CLIP metric and tiny
LPIPS / DINO weights: the masked metrics equal direct computations; resume; metric selection."""
import argparse
import json
import math

import numpy as np
import pytest
import torch
from eval_helpers import FakeMetric, save_tiny_dino, save_tiny_lpips
from PIL import Image

from agsm.eval import pie_bench as pie_mod
from agsm.metrics.lpips_net import load_lpips
from agsm.eval.pie_bench import add_commands, evaluate_pie, pie_keywords, results_markdown
from agsm.eval.pie_data import decode_mask
from agsm.metrics.structure_distance import load_structure_distance


class FakeEditor:
    """edit()'s signature; recolours the top half of the image so that both regions change."""

    def __init__(self):
        self.calls = []

    def __call__(self, pipe, image, source_prompt, target_prompt, *, seed=0, method=None, progress=True, **options):
        self.calls.append({"source": source_prompt, "target": target_prompt, "seed": seed, "method": method,
                           "size": image.size, "options": options})
        pixels = np.asarray(image, dtype=np.int16).copy()
        pixels[: image.height // 2] = 255 - pixels[: image.height // 2]
        pixels[image.height // 2:, :, 0] //= 2
        return Image.fromarray(pixels.astype(np.uint8))


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("weights")
    return {"lpips": save_tiny_lpips(root / "lpips"), "dino": save_tiny_dino(root / "dino"), "clip": root}


def _args(model, pie, out, weights, *extra):
    """evaluate_pie's keywords for these command-line options (through the CLI adapter)."""
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers())
    return pie_keywords(parser.parse_args(["pie-bench", "--model", str(model), "--pie", str(pie), "--out", str(out),
                              "--steps", "3", "--lpips", str(weights["lpips"]), "--dino", str(weights["dino"]),
                              "--clip", str(weights["clip"]), *extra]))


def test_metrics_equal_direct_computations(sd15_dir, pie_dir, tmp_path, weights, fakes):
    editor = FakeEditor()
    result = evaluate_pie(**_args(sd15_dir, pie_dir, tmp_path / "out", weights), editor=editor, metric_loader=fakes.loader())
    assert [c["source"] for c in editor.calls] == ["a red circle 1", "a red circle 0"]  # sorted ids, no [ ]
    assert [c["seed"] for c in editor.calls] == [0, 1] and editor.calls[0]["method"] == "ddim_inversion"
    assert editor.calls[0]["options"]["steps"] == 3 and editor.calls[0]["size"] == (32, 32)

    mapping = json.loads((pie_dir / "mapping_file.json").read_text())
    lpips = load_lpips(weights["lpips"], "squeeze")
    structure = load_structure_distance(weights["dino"])
    rows = [json.loads(line) for line in (tmp_path / "out" / "scores.jsonl").read_text().splitlines()]
    for row in rows:
        entry = mapping[row["key"]]
        src = np.asarray(Image.open(pie_dir / "annotation_images" / entry["image_path"]), dtype=np.float64) / 255
        edt = np.asarray(Image.open(tmp_path / "out" / row["file"]), dtype=np.float64) / 255
        mask = decode_mask(entry["mask"], 32, 32)[..., None]
        bg_src, bg_edt = src * (1 - mask), edt * (1 - mask)
        err = np.mean((bg_edt - bg_src) ** 2)
        assert row["mse"] == pytest.approx(err)
        assert row["psnr"] == pytest.approx(10 * math.log10(1 / err))
        as_tensor = [torch.tensor(a, dtype=torch.float32).permute(2, 0, 1)[None] for a in (bg_edt, bg_src)]
        assert row["lpips"] == pytest.approx(float(lpips(as_tensor[0] * 2 - 1, as_tensor[1] * 2 - 1)[0]), rel=1e-5)
        whole = [torch.tensor(a, dtype=torch.float32).permute(2, 0, 1) for a in (src, edt)]
        assert row["structure_distance"] == pytest.approx(structure(*whole), rel=1e-5)
        target = entry["editing_prompt"].replace("[", "").replace("]", "")
        edited_image = Image.open(tmp_path / "out" / row["file"])
        only_edit = Image.fromarray((edt * 255 * mask).round().astype(np.uint8))
        assert row["clip_whole"] == pytest.approx(float(FakeMetric("clip").score([edited_image], [target])[0]))
        assert row["clip_edited"] == pytest.approx(float(FakeMetric("clip").score([only_edit], [target])[0]))
        assert 0 < row["ssim"] < 1
    assert result["metrics"]["psnr"]["mean"] == pytest.approx(np.mean([r["psnr"] for r in rows]))
    assert set(result["by_type"]) == {"0", "6"} and result["by_type"]["6"]["mse"]["n"] == 1
    assert "| method | Structure distance x10^3 ↓ | PSNR ↑ | LPIPS x10^3 ↓ |" in results_markdown([result])


def test_resume_and_finished_run_checks(sd15_dir, pie_dir, tmp_path, weights, fakes, monkeypatch):
    real_save, saved = pie_mod.write_png, []

    def dying_save(path, image):
        if saved:
            raise KeyboardInterrupt("simulated kill")
        saved.append(path)
        real_save(path, image)

    monkeypatch.setattr(pie_mod, "write_png", dying_save)
    with pytest.raises(KeyboardInterrupt):
        evaluate_pie(**_args(sd15_dir, pie_dir, tmp_path / "out", weights), editor=FakeEditor(), metric_loader=fakes.loader())
    monkeypatch.setattr(pie_mod, "write_png", real_save)
    editor = FakeEditor()
    result = evaluate_pie(**_args(sd15_dir, pie_dir, tmp_path / "out", weights), editor=editor, metric_loader=fakes.loader())
    assert [c["seed"] for c in editor.calls] == [1] and result["n"] == 2
    assert len((tmp_path / "out" / "manifest.jsonl").read_text().splitlines()) == 2
    with pytest.raises(ValueError, match="steps 5 differs"):
        evaluate_pie(**_args(sd15_dir, pie_dir, tmp_path / "out", weights, "--steps", "5"), editor=editor, metric_loader=fakes.loader())


def test_metric_selection_and_missing_weights(sd15_dir, pie_dir, tmp_path, weights, fakes, caplog):
    args = _args(sd15_dir, pie_dir, tmp_path / "a", weights, "--types", "6")
    args["lpips"] = args["dino"] = None
    result = evaluate_pie(**args, editor=FakeEditor(), metric_loader=fakes.loader())
    assert set(result["metrics"]) == {"psnr", "mse", "ssim", "clip_whole", "clip_edited"} and result["n"] == 1
    assert "lpips skipped: no --lpips weights" in caplog.text
    args = _args(sd15_dir, pie_dir, tmp_path / "b", weights, "--metrics", "psnr,lpips")
    args["lpips"] = None
    with pytest.raises(ValueError, match="asks for lpips, which needs --lpips"):
        evaluate_pie(**args, editor=FakeEditor(), metric_loader=fakes.loader())
    with pytest.raises(ValueError, match="--types 12"):
        evaluate_pie(**_args(sd15_dir, pie_dir, tmp_path / "c", weights, "--types", "12"), editor=FakeEditor(), metric_loader=fakes.loader())


@pytest.mark.slow
def test_real_editor_and_clip_end_to_end(sd15_dir, pie_dir, tmp_path, weights):
    """agsm.editing.edit (DDIM inversion on the tiny SD1.5) and agsm.metrics' CLIP with tiny weights."""
    from agsm.metrics.tiny import write_tiny_weights

    args = _args(sd15_dir, pie_dir, tmp_path / "out", weights, "--steps", "2", "--num", "1", "--label", "tiny")
    args["clip"] = str(write_tiny_weights("clip", tmp_path / "clip"))
    result = evaluate_pie(**args)
    assert result["n"] == 1 and result["label"] == "tiny"
    assert set(result["metrics"]) == {"structure_distance", "psnr", "lpips", "mse", "ssim", "clip_whole",
                                      "clip_edited"}
    assert all(entry["n"] == 1 for entry in result["metrics"].values())
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["method"] == "ddim_inversion" and config["options"]["steps"] == 2 and config["size"] == 32
    assert Image.open(tmp_path / "out" / "edited" / "000000000000.png").size == (32, 32)


@pytest.mark.slow
def test_any_registered_editor_runs_through_pie_bench(sd15_dir, pie_dir, tmp_path, weights):
    """--method and --option reach agsm.editing.edit: Plug-and-Play with a typed option, base model."""
    args = _args(sd15_dir, pie_dir, tmp_path / "out", weights, "--steps", "2", "--num", "1", "--method", "pnp",
                 "--option", "tau_f=0.5", "--metrics", "psnr,mse")
    result = evaluate_pie(**args)
    assert result["n"] == 1 and set(result["metrics"]) == {"psnr", "mse"}
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["method"] == "pnp" and config["options"]["tau_f"] == 0.5
