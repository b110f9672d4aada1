"""Aggregate study arms: accuracy with training-seed spread, effect size against the base, quality, Pareto plot.

    python -m agsm.study.compare --root runs/study --backbone sd15 --prompts dev --out docs/study/sd15-dev

For every arm folder under <root>/<backbone>/ with eval-<prompts>.json files (one per training seed):
- accuracy per category, mean and over-count rate: mean ± std over the training seeds (each seed's number is
  its whole prompt set; with one seed the std is not shown: "n=1");
- effect size against the base at the same image seeds: mean |image - base| in 0-255 units per pixel, the
  share of pixels moved by more than 30, and verdict flips each way (wrong->right, right->wrong) per image;
- quality (study/quality.py): clean rate and background noise;
- the paired difference from the base per training seed (study/paired.py): its mean over seeds, the mean half-width
  of the seeds' 95% bootstrap intervals over prompts, and in how many seeds the interval excludes 0.
Writes compare.json, compare.md and pareto.png (alignment: suite mean; quality: clean rate).
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np

from ..shapes.spec import CATEGORIES
from ..utils.markdown_tables import markdown_table, mean_std
from .paired import compare_verdicts

ROWS = (*CATEGORIES, "mean", "overcount_rate")


def _spread(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def effect(images: np.ndarray, base_images: np.ndarray, verdicts: list[dict], base_verdicts: list[dict]) -> dict:
    """How much tokens change what the model draws, at the same prompts and image seeds as the base."""
    if images.shape != base_images.shape:
        raise ValueError(f"images {images.shape} and base images {base_images.shape} differ in shape; evaluate both "
                         "on the same prompts and images per prompt")
    diff = np.abs(images.astype(np.int16) - base_images.astype(np.int16)).max(-1)  # [N, H, W], per pixel
    now = np.array([v["correct"] for v in verdicts])
    before = np.array([v["correct"] for v in base_verdicts])
    return {"pixel_change": float(diff.mean()), "moved_share": float((diff > 30).mean()),
            "wrong_to_right": float((now & ~before).mean()), "right_to_wrong": float((~now & before).mean())}


def load_arm(folder: Path, tag: str) -> list[tuple[dict, np.ndarray]]:
    runs = []
    for result_file in sorted(folder.glob(f"**/eval-{tag}.json")):
        images = np.load(result_file.with_name(f"images-{tag}.npz"))["images"]
        runs.append((json.loads(result_file.read_text()), images))
    return runs


def summarise_arm(runs, base) -> dict:
    base_result, base_images = base
    row = {}
    for name in ROWS:
        values = [r[name] if name in ("mean", "overcount_rate") else r["accuracy"][name] for r, _ in runs]
        row[name] = _spread(values)
    effects = [effect(im, base_images, r["verdicts"], base_result["verdicts"]) for r, im in runs]
    for key in effects[0]:
        row[key] = _spread([e[key] for e in effects])
    for key in ("clean_rate", "background_noise"):
        row[key] = _spread([r["quality"][key] for r, _ in runs])
    paired = [compare_verdicts(base_result["verdicts"], r["verdicts"]) for r, _ in runs]
    half = statistics.fmean((p["ci_high"] - p["ci_low"]) / 2 for p in paired)
    row["vs_base"] = (f"{statistics.fmean(p['diff'] for p in paired):+.3f} ± {half:.3f} "
                      f"({sum(p['resolved'] for p in paired)}/{len(paired)} resolved)")
    row["seeds"] = len(runs)
    return row


def compare(root: Path, backbone: str, tag: str) -> dict:
    folder = root / backbone
    # The base has no tokens, so a tag that only changes where tokens go (-u<choice>) shares the base's images.
    base = load_arm(folder / "base", tag.split("-u")[0])
    if not base:
        raise FileNotFoundError(f"no base evaluation {folder / 'base' / f'eval-{tag}.json'}; run "
                                f"`python -m agsm.study.arms --backbone {backbone} --name base --prompts {tag}` first")
    arms = {"base": summarise_arm(base, base[0])}
    for arm in sorted(p for p in folder.iterdir() if p.is_dir() and p.name != "base"):
        runs = load_arm(arm, tag)
        if runs:
            arms[arm.name] = summarise_arm(runs, base[0])
    return arms


def _cell(value) -> str:
    """'0.784 ± 0.003' over training seeds; one seed: the number alone (the column title says n=1)."""
    return mean_std(value, one_seed="")


def arm_columns(arms: dict) -> list[str]:
    """The corner and one title per arm, with its number of training seeds."""
    return ["", *(f"{n} (n={arms[n]['seeds']})" for n in arms)]


def markdown(arms: dict) -> str:
    keys = (*ROWS, "pixel_change", "moved_share", "wrong_to_right", "right_to_wrong", "clean_rate")
    rows = [[key, *(_cell(arms[n][key]) for n in arms)] for key in keys]
    # paired with the base, per training seed: mean diff ± mean half-width of the 95% intervals (study/paired.py)
    rows.append(["vs base, paired (95% CI)", *(arms[n].get("vs_base", "-") if n != "base" else "-" for n in arms)])
    return markdown_table(arm_columns(arms), rows)


def pareto(arms: dict, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
    for name, row in arms.items():
        (x, xs), (y, ys) = row["clean_rate"], row["mean"]
        ax.errorbar(x, y, xerr=xs or 0, yerr=ys or 0, fmt="o", capsize=2)
        ax.annotate(name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set(xlabel="quality: clean-image rate", ylabel="alignment: suite mean (exact judge)", title=title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def same_seed_grid(root: Path, backbone: str, tag: str, arms: list[str], path: Path, per_category: int = 3) -> Path:
    """Rows: the first prompts of each category; columns: base and each arm's training seed 0, same image seed."""
    columns = {"base": load_arm(root / backbone / "base", tag.split("-u")[0])[0]}
    for arm in arms:
        runs = load_arm(root / backbone / arm / "seed0", tag)
        if runs:
            columns[arm] = runs[0]
    return category_grid(columns, path, per_category)


def category_grid(columns: dict[str, tuple[dict, np.ndarray]], path: Path, per_category: int = 3) -> Path:
    """Rows: the first prompts of each category (by the first column's verdicts); columns: (result, images) each."""
    from PIL import Image

    from ..utils.image_grids import framed, grid

    verdicts = next(iter(columns.values()))[0]["verdicts"]
    rows, labels = [], []
    for category in CATEGORIES:
        for i in [i for i, v in enumerate(verdicts) if v["category"] == category][:per_category]:
            rows.append([framed(Image.fromarray(images[i]), result["verdicts"][i]["correct"])
                         for result, images in columns.values()])
            labels.append(verdicts[i]["prompt"])
    grid(rows, labels, label_width=260, headers=list(columns)).save(path)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="runs/study")
    parser.add_argument("--backbone", default="sd15")
    parser.add_argument("--prompts", default="dev", help="the eval tag: dev, test, or dev-g<guidance> ...")
    parser.add_argument("--arms", nargs="*", help="only these arms (and base), in this order")
    parser.add_argument("--grid-arms", nargs="*", default=[], help="arms for a same-seed image grid (seed 0)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    arms = compare(Path(args.root), args.backbone, args.prompts)
    if args.arms:
        missing = [a for a in args.arms if a not in arms]
        if missing:
            raise SystemExit(f"arms {missing} have no eval-{args.prompts}.json under {args.root}/{args.backbone}")
        arms = {n: arms[n] for n in ["base", *[a for a in args.arms if a != "base"]]}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps(arms, indent=2))
    (out / "compare.md").write_text(markdown(arms) + "\n")
    pareto(arms, out / "pareto.png", f"{args.backbone}, {args.prompts} prompts")
    if args.grid_arms:
        same_seed_grid(Path(args.root), args.backbone, args.prompts, args.grid_arms, out / "same_seed.png")
    print(markdown(arms))


if __name__ == "__main__":
    main()
