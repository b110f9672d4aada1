"""What a same-seed comparison of variants shows: paired differences with intervals, and the images whose verdicts
differ between variants (the only images where the variants disagree; elsewhere they look alike on these models)."""
from __future__ import annotations

from pathlib import Path

from ..shapes.spec import CATEGORIES
from ..study.paired import compare_verdicts
from ..utils.image_grids import framed, grid
from ..utils.markdown_tables import markdown_table


def paired_rows(runs: dict[str, dict], pairs: list[tuple[str, str]]) -> list[dict]:
    """One row per (before, after) pair of variants evaluated at the same seeds: the paired difference of suite means
    with its bootstrap interval over prompts, the flipped verdicts and McNemar's exact p (agsm.study.paired)."""
    rows = []
    for before, after in pairs:
        stats = compare_verdicts(runs[before]["verdicts"], runs[after]["verdicts"])
        rows.append({"comparison": f"{after} - {before}", **{k: stats[k] for k in (
            "diff", "ci_low", "ci_high", "flips_up", "flips_down", "mcnemar_p", "resolved", "n", "confidence")}})
    return rows


def paired_markdown(rows: list[dict]) -> str:
    if not rows:
        return ""
    conf = round(100 * rows[0]["confidence"])
    body = [[r["comparison"], f"{r['diff']:+.3f}", f"[{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]",
             f"{r['flips_up']} / {r['flips_down']}", _p(r["mcnemar_p"]),
             "yes" if r["resolved"] else "no: within the suite's paired noise"] for r in rows]
    return markdown_table(["paired, same seeds", "diff of means", f"{conf}% CI (bootstrap over prompts)",
                           "verdicts up / down", "McNemar p", "resolved"], body)


def disagreements(runs: dict[str, dict]) -> list[int]:
    """Indices of the images whose verdict is not the same in every variant."""
    names = list(runs)
    first = runs[names[0]]["verdicts"]
    return [i for i in range(len(first)) if len({runs[n]["verdicts"][i]["correct"] for n in names}) > 1]


def disagreement_grid(runs: dict[str, dict], path: Path, per_category: int = 2) -> tuple[Path, int, int]:
    """Rows: up to `per_category` images per category whose verdicts differ between the variants (same prompt and
    seed in every column); returns (the grid, how many images differ, how many images in all)."""
    names = list(runs)
    verdicts = runs[names[0]]["verdicts"]
    differ = disagreements(runs)
    rows, labels = [], []
    for category in CATEGORIES:
        for i in [i for i in differ if verdicts[i]["category"] == category][:per_category]:
            rows.append([framed(runs[n]["images"][i], runs[n]["verdicts"][i]["correct"]) for n in names])
            labels.append(verdicts[i]["prompt"])
    if not rows:  # every verdict agrees: show the first image of each category instead
        for category in CATEGORIES:
            for i in [i for i, v in enumerate(verdicts) if v["category"] == category][:1]:
                rows.append([framed(runs[n]["images"][i], runs[n]["verdicts"][i]["correct"]) for n in names])
                labels.append(verdicts[i]["prompt"])
    grid(rows, labels, label_width=300, headers=names).save(path)
    return path, len(differ), len(verdicts)


def _p(p: float | None) -> str:
    return "-" if p is None else ("<0.001" if p < 0.001 else f"{p:.3f}")
