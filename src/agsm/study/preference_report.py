"""The miniature Table 3 (scripts/run_preference_study.sh): every arm's suite scores, and what AGSM adds on top.

    python -m agsm.study.preference_report --root runs/preference-study --prompts test --out docs/study/preference-test

Reads the study's folders: <root>/base/sd15/base (the shipped model), <root>/base/sd15/agsm/seed<k> (+AGSM), and for
each preference method m and training seed k, <root>/<m>-seed<k>/sd15/base (the tuned backbone) and
<root>/<m>-seed<k>/sd15/agsm/seed<k> (AGSM tokens trained on it). Writes into --out:
- table.md / table.json: accuracy per category, mean, over-count rate, quality (clean rate) and the pixel change
  against the shipped model at the same image seeds, mean ± sd over training seeds (compare.summarise_arm);
- each arm against the shipped model, paired per seed (study/paired.py: mean difference ± the mean half-width of the
  seeds' 95% intervals, and how many seeds the suite resolves);
- the AGSM gain on each backbone, paired by seed: (backbone k + AGSM seed k) - (backbone k), mean ± sd, and how many
  seeds gained. This pairing answers "does AGSM add on top of this backbone" without the backbones' own spread;
- chart.png (suite mean of each backbone without and with AGSM, error bars: sd over seeds) and pareto.png
  (alignment against quality), and same_seed.png (the first prompts of each category, seed 0 of every arm).
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from ..utils.markdown_tables import table_lines
from .compare import ROWS, _cell, arm_columns, category_grid, load_arm, pareto, summarise_arm
from .paired import compare_verdicts

BACKBONE = "sd15"
METHODS = {"dpo": "DPO", "inpo": "InPO", "spo": "SPO"}


def arm_folders(root: Path, tag: str) -> dict[str, list[Path]]:
    """Arm name -> the folders of its runs (one per training seed), in the table's order; arms with no run left out."""
    seeds = sorted(int(p.name.rsplit("seed", 1)[1]) for p in (root / "base" / BACKBONE / "agsm").glob("seed*"))
    arms = {"base": [root / "base" / BACKBONE / "base"],
            "+AGSM": [root / "base" / BACKBONE / "agsm" / f"seed{k}" for k in seeds]}
    for method, label in METHODS.items():
        tuned = sorted(root.glob(f"{method}-seed*"), key=lambda p: int(p.name.rsplit("seed", 1)[1]))
        arms[label] = [p / BACKBONE / "base" for p in tuned]
        arms[f"{label}+AGSM"] = [p / BACKBONE / "agsm" / p.name.rsplit("-", 1)[1] for p in tuned]
    return {name: [f for f in folders if (f / f"eval-{tag}.json").is_file()] for name, folders in arms.items()}


def _eval_of(folder: Path, tag: str) -> dict:
    return json.loads((folder / f"eval-{tag}.json").read_text())


def agsm_gains(folders: dict[str, list[Path]], tag: str) -> dict[str, dict]:
    """Per backbone: the seed-paired gain of adding AGSM tokens (the shipped model is one backbone for every seed)."""
    gains = {}
    for label in ("base", *METHODS.values()):
        with_tokens = folders.get("+AGSM" if label == "base" else f"{label}+AGSM", [])
        diffs, paired = [], []
        for run in with_tokens:
            # the tokens' own backbone: <root>/<m>-seed<k>/sd15/base for a tuned one, the shipped model for base
            backbone = folders["base"][0] if label == "base" else run.parent.parent / "base"
            if (backbone / f"eval-{tag}.json").is_file():
                before, after = _eval_of(backbone, tag), _eval_of(run, tag)
                diffs.append(after["mean"] - before["mean"])
                # the same prompts and image seeds: a paired interval over prompts (study/paired.py)
                paired.append(compare_verdicts(before["verdicts"], after["verdicts"]))
        if diffs:
            gains[label] = {"gain": statistics.fmean(diffs),
                            "sd": statistics.stdev(diffs) if len(diffs) > 1 else None,
                            "seeds": len(diffs), "seeds_gaining": sum(d > 0 for d in diffs), "per_seed": diffs,
                            "ci_half_width": statistics.fmean((q["ci_high"] - q["ci_low"]) / 2 for q in paired),
                            "seeds_resolved": sum(q["resolved"] for q in paired)}
    return gains


def summarise(root: Path, tag: str) -> tuple[dict, dict]:
    folders = arm_folders(root, tag)
    if not folders["base"]:
        raise FileNotFoundError(f"no {root / 'base' / BACKBONE / 'base' / f'eval-{tag}.json'}: run the study's "
                                f"base stage with PROMPTS={tag} first (scripts/run_preference_study.sh)")
    base = load_arm(folders["base"][0], tag)[0]
    arms = {}
    for name, runs in folders.items():
        if runs:
            arms[name] = summarise_arm([load_arm(f, tag)[0] for f in runs], base)
    return arms, agsm_gains(folders, tag)


def markdown(arms: dict, gains: dict) -> str:
    lines = table_lines(arm_columns(arms), [[key, *(_cell(arms[n][key]) for n in arms)]
                                            for key in (*ROWS, "clean_rate", "pixel_change")])
    lines += [f"| vs shipped model, paired (95% CI) | " + " | ".join(arms[n].get("vs_base", "-") if n != "base" else "-"
                                                                    for n in arms) + " |"]
    gain_rows = [[label, f"{g['gain']:+.3f}" + (f" ± {g['sd']:.3f}" if g["sd"] is not None else ""),
                  f"{g['seeds_gaining']} of {g['seeds']}",
                  f"± {g['ci_half_width']:.3f}, {g['seeds_resolved']} of {g['seeds']} resolved"]
                 for label, g in gains.items()]
    lines += ["", *table_lines(["backbone", "AGSM gain (seed-paired), mean ± sd", "seeds gaining",
                                "paired 95% CI per seed (mean half-width)"], gain_rows)]
    return "\n".join(lines)


def chart(arms: dict, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [label for label in ("base", *METHODS.values()) if label in arms]
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    for offset, (suffix, name) in zip((-0.2, 0.2), (("", "backbone"), ("+AGSM", "backbone + AGSM tokens"))):
        keys = [("+AGSM" if label == "base" else label + "+AGSM") if suffix else label for label in labels]
        heights = [arms[k]["mean"][0] if k in arms else 0.0 for k in keys]
        errors = [(arms[k]["mean"][1] or 0.0) if k in arms else 0.0 for k in keys]
        ax.bar([i + offset for i in range(len(labels))], heights, width=0.4, yerr=errors, capsize=3, label=name)
    low = min(row["mean"][0] for row in arms.values())
    ax.set(xticks=range(len(labels)), xticklabels=labels, ylim=(max(low - 0.1, 0), 1.0),
           ylabel="suite mean (exact judge)", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def same_seed_grid(folders: dict[str, list[Path]], tag: str, path: Path, per_category: int = 2) -> Path:
    """Rows: the first prompts of each category; columns: every arm's first training seed, same image seeds."""
    return category_grid({name: load_arm(runs[0], tag)[0] for name, runs in folders.items() if runs}, path,
                         per_category)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="runs/preference-study")
    parser.add_argument("--prompts", default="test", help="the eval tag: dev or test")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    root, out = Path(args.root), Path(args.out)
    arms, gains = summarise(root, args.prompts)
    out.mkdir(parents=True, exist_ok=True)
    table = markdown(arms, gains)
    (out / "table.md").write_text(table + "\n")
    (out / "table.json").write_text(json.dumps({"arms": arms, "agsm_gains": gains}, indent=2))
    chart(arms, out / "chart.png", f"sd15-tiny on preference-tuned backbones ({args.prompts} prompts)")
    pareto(arms, out / "pareto.png", f"sd15-tiny, preference study, {args.prompts} prompts")
    same_seed_grid(arm_folders(root, args.prompts), args.prompts, out / "same_seed.png")
    print(table)


if __name__ == "__main__":
    main()
