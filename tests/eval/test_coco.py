"""`agsm eval coco` on a ten-caption COCO look-alike with a tiny SD1.5 model, fake metrics and a fake FID
extractor: caption choice, resume after a kill equals an uninterrupted run, settings checks, the table."""
import argparse
import json

import numpy as np
import pytest
import torch

from agsm.eval import coco as coco_mod
from agsm.eval.coco import add_commands, coco_keywords, evaluate_coco, results_markdown
from agsm.eval.coco_data import read_captions


@pytest.fixture(scope="module")
def metric_weights(tmp_path_factory):
    """Tiny random ImageReward and PickScore weights in the real layouts (agsm.metrics.tiny)."""
    from agsm.metrics.tiny import write_tiny_weights

    root = tmp_path_factory.mktemp("metrics")
    return [f"{name}={write_tiny_weights(name, root / name)}" for name in ("imagereward", "pickscore")]


def _args(model, coco, out, *extra, metrics=()):
    """evaluate_coco's keywords for these command-line options (through the CLI adapter)."""
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers())
    args = parser.parse_args(["coco", "--model", str(model), "--coco", str(coco), "--out", str(out), "--num", "10",
                              "--steps", "2", "--batch-size", "3", "--metric-batch-size", "4", *extra])
    if metrics:
        args.metrics = list(metrics)
    else:
        args.metrics = {"clip": str(coco), "imagereward": str(coco)}  # fake metrics: any existing path
    return coco_keywords(args)


class CountingExtractor:
    """The fake FID extractor, counting the images it sees."""

    def __init__(self, fakes):
        self.fakes, self.seen = fakes, 0

    def __call__(self, images):
        self.seen += len(images)
        return self.fakes.extractor(images)


def test_captions_first_by_json_order_or_id(coco_dir):
    data = json.loads((coco_dir / "annotations" / "captions_val2017.json").read_text())
    by_json = read_captions(coco_dir, 10)
    by_id = read_captions(coco_dir, 10, order="id")
    assert [it["image_id"] for it in by_json] == sorted(im["id"] for im in data["images"])
    for it in by_json:
        mine = [a for a in data["annotations"] if a["image_id"] == it["image_id"]]
        assert it["annotation_id"] == mine[0]["id"]
        assert it["caption"] == " ".join(mine[0]["caption"].split())
    assert all(it["caption"].startswith("another caption") for it in by_id)  # ids 2k+1 < 2k+100
    assert [it["image_id"] for it in read_captions(coco_dir, 3)] == [it["image_id"] for it in by_json[:3]]


def test_missing_coco_files_are_named(tmp_path, coco_dir):
    with pytest.raises(FileNotFoundError, match="captions_val2017.json is missing"):
        read_captions(tmp_path, 5)
    with pytest.raises(ValueError, match="--num 11 must be between 1 and the 10"):
        read_captions(coco_dir, 11)


@pytest.fixture
def one_thread():
    """Exact equality of floats scored in two runs needs one BLAS thread: with several, oneDNN/MKL results can
    differ in the last bits between runs on identical inputs (seen in CI at 2 threads: 1.6e-6 relative)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_killed_run_resumes_to_the_uninterrupted_result(sd15_dir, coco_dir, tmp_path, monkeypatch, fakes,
                                                         metric_weights, one_thread):
    from agsm.eval.scoring import default_metric_loader as real_metrics

    whole = evaluate_coco(**_args(sd15_dir, coco_dir, tmp_path / "whole", metrics=metric_weights),
                          metric_loader=real_metrics, fid_extractor=fakes.extractor)
    saved, real_save = [], coco_mod.write_png

    def dying_save(path, image):
        if len(saved) == 4:  # killed in the middle of the second batch of three
            raise KeyboardInterrupt("simulated kill")
        saved.append(path)
        real_save(path, image)

    monkeypatch.setattr(coco_mod, "write_png", dying_save)
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        evaluate_coco(**_args(sd15_dir, coco_dir, out, metrics=metric_weights), metric_loader=real_metrics,
                      fid_extractor=fakes.extractor)
    assert len((out / "manifest.jsonl").read_text().splitlines()) == 4
    monkeypatch.setattr(coco_mod, "write_png", real_save)
    resumed = evaluate_coco(**_args(sd15_dir, coco_dir, out, metrics=metric_weights), metric_loader=real_metrics,
                            fid_extractor=fakes.extractor)

    assert set(whole["metrics"]) == {"imagereward", "pickscore"} and whole["metrics"]["pickscore"]["n"] == 10
    assert resumed["metrics"] == whole["metrics"]
    assert resumed["fid"]["value"] == whole["fid"]["value"] and whole["fid"]["n"] == 10
    lines = (out / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == 10 and len({json.loads(l)["index"] for l in lines}) == 10
    assert sorted(lines) == sorted((tmp_path / "whole" / "manifest.jsonl").read_text().splitlines())
    assert (out / "scores.jsonl").read_text() == (tmp_path / "whole" / "scores.jsonl").read_text()
    for png in (tmp_path / "whole" / "images").glob("*.png"):
        assert (out / "images" / png.name).read_bytes() == png.read_bytes()
    assert len(list((out / "images").iterdir())) == 10  # no temporary files left behind
    assert (out / "results.md").read_text().startswith("| model | ImageReward x100 | PickScore | FID |")


@pytest.mark.slow
def test_fid_against_centre_cropped_val_images_is_cached(sd15_dir, coco_dir, tmp_path, fakes):
    from PIL import Image

    from agsm.metrics.fid import compute_stats, fid_from_stats

    extractor = CountingExtractor(fakes)
    out = tmp_path / "run"
    result = evaluate_coco(**_args(sd15_dir, coco_dir, out, "--num", "6"), metric_loader=fakes.loader(), fid_extractor=extractor)
    assert extractor.seen == 12  # 6 reference + 6 generated images
    ids = [json.loads(line)["image_id"] for line in (out / "manifest.jsonl").read_text().splitlines()]
    # the fixture's val images are 40x30: the centred 30x30 square starts at x = 5
    ref = [Image.open(coco_dir / "val2017" / f"{i:012d}.jpg").convert("RGB").crop((5, 0, 35, 30))
           .resize((32, 32), Image.BICUBIC) for i in ids]
    generated = sorted((out / "images").glob("*.png"))
    mine, theirs = compute_stats(generated, fakes.extractor), compute_stats(ref, fakes.extractor)
    direct = fid_from_stats(mine, theirs)
    # FID is a small difference of terms as large as the covariances' traces, computed from float32 features whose
    # rounding depends on how the CPU's kernels block the batch: bound the difference by float32 rounding of those
    # terms, not of the FID (measured 0.9e-9 of them apart under AVX2 kernels, identical under AVX512-BF16; a wrong
    # crop or image moves the FID by percents).
    terms = float(np.trace(mine.sigma) + np.trace(theirs.sigma) + np.sum((mine.mu - theirs.mu) ** 2))
    assert result["fid"]["value"] == pytest.approx(direct, abs=1e-6 * terms)
    assert (out / "fid_reference_32px_6.npz").is_file()
    again = evaluate_coco(**_args(sd15_dir, coco_dir, out, "--num", "6"), metric_loader=fakes.loader(), fid_extractor=extractor)
    assert extractor.seen == 18 and again["fid"]["value"] == pytest.approx(result["fid"]["value"], rel=1e-12)


@pytest.mark.slow
def test_finished_run_rescoring_loads_no_model_and_reuses_scores(sd15_dir, coco_dir, tmp_path, fakes):
    args = _args(sd15_dir, coco_dir, tmp_path / "run", "--num", "4")
    evaluate_coco(**args, metric_loader=fakes.loader())
    calls = []
    args["model"] = str(tmp_path / "nowhere")  # would fail to load: the finished run must not need it
    with pytest.raises(ValueError, match="model"):  # ... but a different model is still refused
        evaluate_coco(**args, metric_loader=fakes.loader(calls))
    args = _args(sd15_dir, coco_dir, tmp_path / "run", "--num", "4")
    again = evaluate_coco(**args, metric_loader=fakes.loader(calls))
    assert calls == [] and again["n"] == 4
    with pytest.raises(ValueError, match="guidance"):
        evaluate_coco(**_args(sd15_dir, coco_dir, tmp_path / "run", "--num", "4", "--guidance", "2"), metric_loader=fakes.loader())


@pytest.mark.slow
def test_torn_manifest_line_is_redone(sd15_dir, coco_dir, tmp_path, fakes):
    out = tmp_path / "run"
    evaluate_coco(**_args(sd15_dir, coco_dir, out, "--num", "3"), metric_loader=fakes.loader())
    manifest = out / "manifest.jsonl"
    lines = manifest.read_text().splitlines()
    manifest.write_text("\n".join(lines[:2]) + "\n" + lines[2][:10])  # killed while appending the third entry
    evaluate_coco(**_args(sd15_dir, coco_dir, out, "--num", "3"), metric_loader=fakes.loader())
    assert manifest.read_text().splitlines() == lines


def test_results_markdown_uses_the_paper_layout():
    result = {"label": "agsm", "n": 5000, "fid": {"value": 25.94},
              "metrics": {"imagereward": {"mean": 0.345}, "pickscore": {"mean": 21.59}, "clip": {"mean": 27.23},
                          "hpsv2": {"mean": 0.2566}}}
    base = {"label": "base", "n": 5000, "fid": None, "metrics": {"clip": {"mean": 26.4}}}
    table = results_markdown([result, base])
    assert "| model | ImageReward x100 | PickScore | CLIP x100 | HPSv2 x100 | FID |" in table
    assert "| agsm | 34.50 | 21.59 | 27.23 | 25.66 | 25.94 |" in table
    assert "| base | - | - | 26.40 | - | - |" in table


@pytest.mark.slow
@pytest.mark.parametrize("model, guidance", [("sdxl_dir", 7.0), ("sd3_dir", 4.0)])
def test_other_backbones_use_their_evaluation_sampler(model, guidance, request, coco_dir, tmp_path, fakes):
    out = tmp_path / "run"
    result = evaluate_coco(**_args(request.getfixturevalue(model), coco_dir, out, "--num", "2"), metric_loader=fakes.loader())
    assert result["config"]["sampler"] == {"steps": 2, "guidance": guidance, "size": 32}
    assert len(list((out / "images").glob("*.png"))) == 2


def test_a_tuned_denoiser_is_evaluated_recorded_and_not_mixed_with_the_base(sd15_dir, coco_dir, tmp_path, fakes):
    """A preference-tuned UNet (--denoiser) draws other images than the base, is named in the run's settings and
    results row, and a run started with it refuses to continue without it (the images would mix two models)."""
    from agsm.sample import load_pipeline

    pipe = load_pipeline(sd15_dir)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in pipe.unet.parameters():
            p.add_(0.05 * torch.randn_like(p))
    pipe.unet.save_pretrained(tmp_path / "dpo" / "unet")
    evaluate_coco(**_args(sd15_dir, coco_dir, tmp_path / "base", "--num", "3"), metric_loader=fakes.loader(), fid_extractor=fakes.extractor)
    tuned = evaluate_coco(**_args(sd15_dir, coco_dir, tmp_path / "tuned", "--num", "3", "--denoiser",
                                str(tmp_path / "dpo" / "unet")), metric_loader=fakes.loader(), fid_extractor=fakes.extractor)
    config = json.loads((tmp_path / "tuned" / "config.json").read_text())
    assert config["variant"]["denoiser"] == str((tmp_path / "dpo" / "unet").resolve())
    assert "unet" in tuned["label"] and "(base)" not in tuned["label"]
    base_png = sorted((tmp_path / "base" / "images").glob("*.png"))[0]
    assert (tmp_path / "tuned" / "images" / base_png.name).read_bytes() != base_png.read_bytes()
    with pytest.raises(ValueError, match="variant"):
        evaluate_coco(**_args(sd15_dir, coco_dir, tmp_path / "tuned", "--num", "4"), metric_loader=fakes.loader(), fid_extractor=fakes.extractor)
