"""The ceiling study's tables (docs/study.md, "The ceiling"), from what scripts/run_ceiling_study.sh has run.

    .venv/bin/python scripts/ceiling_tables.py            # prints the tables and writes docs/study/ceiling.md

Reads every ceiling report under runs/ceiling/<backbone>/ (agsm ceiling) and the token arms under runs/study/sd15/
(agsm.study.arms: eval-test.json per training seed). Every comparison is paired (same prompts and image seeds):
the difference of suite means with a 95% paired-bootstrap interval over prompts and the exact McNemar p on the
flipped verdicts (agsm.study.paired). Token arms give mean ± std over training seeds, and each seed's paired
comparison with the base and with the ceiling.
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from agsm.study.paired import compare_verdicts  # noqa: E402
from agsm.utils.markdown_tables import markdown_table  # noqa: E402

CEILING, STUDY = ROOT / "runs" / "ceiling", ROOT / "runs" / "study"
# The token arms each model's table reads (scripts/run_ceiling_study.sh, token_arms): sd15-tiny at the study's
# 2,000 steps with the noisy-caption control; sdxl-tiny and sd3-tiny at the demo's earlier budgets (1,000 and 400).
TOKEN_ARMS = {"sd15": ("agsm", "dsm", "softrepa", "agsm-noisy35", "dsm-noisy35", "softrepa-noisy35"),
              "sdxl": ("agsm-1k", "dsm-1k", "softrepa-1k"), "sd3": ("agsm-400", "dsm-400", "softrepa-400")}


def reports(backbone: str, prompts: str) -> list[dict]:
    found = [json.loads(p.read_text()) for p in sorted((CEILING / backbone).glob("*.json"))]
    return [r for r in found if r.get("prompts") == prompts and "paired" in r]


def interval(stats: dict) -> str:
    p = stats["mcnemar_p"]
    p_text = "-" if p is None else ("<0.001" if p < 0.001 else f"{p:.3f}")
    return (f"{stats['diff']:+.3f} [{stats['ci_low']:+.3f}, {stats['ci_high']:+.3f}]",
            f"{stats['flips_up']} / {stats['flips_down']}", p_text)


def sweep_table(found: list[dict]) -> str:
    rows = []
    order = sorted(found, key=lambda r: (r["setting"]["where"], r["setting"]["negatives"], r["setting"]["gamma"],
                                         r["setting"]["temperature"], r["setting"]["guidance"]))
    for r in order:
        s, mean = r["setting"], r["table"][-1]
        q = r["quality"]
        cost = r.get("cost") or {}
        rows.append([s["where"], s["negatives"], f"{s['gamma']:g}", f"{s['temperature']:g}", f"{s['guidance']:g}",
                     f"{mean['base']:.3f}", f"{mean['ceiling']:.3f}", *interval(r["paired"]),
                     f"{q['base']['clean_rate']:.2f} -> {q['ceiling']['clean_rate']:.2f}",
                     f"x{cost['ratio']:.2f}" if cost else "-"])
    return markdown_table(["where", "negatives", "gamma", "T", "CFG", "base", "ceiling", "diff [95% CI]",
                           "flips up / down", "McNemar p", "clean rate", "cost"], rows)


def verdicts_of(folder: Path) -> list[dict]:
    return json.loads((folder / "results.json").read_text())["verdicts"]


def token_table(backbone: str, ceiling_report: dict | None) -> tuple[str, dict]:
    """A model's token arms on the test suite: mean ± std over training seeds; per seed paired with the base and
    with the ceiling; the share of the ceiling's gain (undefined when the ceiling is not above the base)."""
    base = json.loads((STUDY / backbone / "base" / "eval-test.json").read_text())
    ceiling_verdicts = verdicts_of(Path(ceiling_report["folders"]["ceiling"])) if ceiling_report else None
    rows, summary = [], {}
    for arm in TOKEN_ARMS[backbone]:
        seeds = sorted((STUDY / backbone / arm).glob("seed*/eval-test.json"))
        if not seeds:
            continue
        runs = [json.loads(p.read_text()) for p in seeds]
        means = [r["mean"] for r in runs]
        vs_base = [compare_verdicts(base["verdicts"], r["verdicts"]) for r in runs]
        vs_ceiling = [compare_verdicts(ceiling_verdicts, r["verdicts"]) for r in runs] if ceiling_verdicts else []
        spread = statistics.stdev(means) if len(means) > 1 else 0.0
        if ceiling_verdicts is not None and len(ceiling_verdicts) != len(base["verdicts"]):
            raise SystemExit(f"{backbone}: the ceiling's test run has {len(ceiling_verdicts)} images, the token arms' "
                             f"base {len(base['verdicts'])}: score both on the same prompts")
        gain = ceiling_report["table"][-1]["ceiling"] - base["mean"] if ceiling_report else None
        # a share of a gain the suite cannot tell from 0 is noise over noise: shown only for a resolved ceiling
        resolved_gain = bool(ceiling_report) and ceiling_report["paired"]["resolved"] and gain > 0
        share = (f"{(statistics.mean(means) - base['mean']) / gain:.2f}" if resolved_gain else
                 "- (ceiling's gain not resolved)" if ceiling_report else "-")
        resolved = sum(s["resolved"] for s in vs_base)
        rows.append([arm, f"{statistics.mean(means):.3f} ± {spread:.3f} (n={len(means)})",
                     "; ".join(f"{s['diff']:+.3f} [{s['ci_low']:+.3f}, {s['ci_high']:+.3f}]" for s in vs_base),
                     f"{resolved}/{len(vs_base)}",
                     "; ".join(f"{s['diff']:+.3f} [{s['ci_low']:+.3f}, {s['ci_high']:+.3f}]" for s in vs_ceiling)
                     or "-", share])
        summary[arm] = {"means": means, "vs_base": vs_base, "vs_ceiling": vs_ceiling}
    table = markdown_table(["token arm (3 training seeds)", "test mean ± std", "vs base per seed: diff [95% CI]",
                            "seeds resolved vs base", "vs ceiling per seed: diff [95% CI]", "share of ceiling gain"],
                           rows)
    return f"base: {base['mean']:.3f}\n\n{table}", summary


def main() -> None:
    out = ["# The ceiling study's tables", "",
           "Generated by `python scripts/ceiling_tables.py` from `bash scripts/run_ceiling_study.sh`; read with "
           "docs/study.md, \"The ceiling\".", ""]
    chosen = {}
    for backbone in ("sd15", "sdxl", "sd3"):
        for prompts in ("dev", "test"):
            found = reports(backbone, prompts)
            if not found:
                continue
            n = found[0]["paired"]["n"]
            out += [f"## {backbone}-tiny, {prompts} suite ({n} images, one per prompt, image seed 0)", "",
                    sweep_table(found), ""]
            if prompts == "test":
                chosen[backbone] = found[0]
    for backbone in TOKEN_ARMS:
        if (STUDY / backbone / "base" / "eval-test.json").is_file():
            table, _ = token_table(backbone, chosen.get(backbone))
            out += [f"## {backbone}-tiny token arms against the base and the ceiling (test suite)", "", table, ""]
    text = "\n".join(out)
    print(text)
    target = ROOT / "docs" / "study" / "ceiling.md"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text + "\n")


if __name__ == "__main__":
    main()
