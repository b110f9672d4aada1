"""Every editor with and without tokens, side by side: a table and the alignment-vs-preservation plot.

    python -m agsm.report.edit_study runs/edit-study --out docs/editing

Reads ROOT/<backbone>/<editor>/seed<k>/results.json, each written by
`agsm eval edit-shapes --method <editor> --tokens <token set of training seed k> --out ...`, and writes
edit_study.md (per backbone: editor x {base, tokens}, mean ± std over the token sets' training seeds) and
edit_pareto.png (per backbone: success against PSNR outside the edited box, the paper's editing trade-off:
up is better alignment, right is better preservation; an arrow from each editor's base to its tokens).
The base row of a deterministic editor is the same in every seed folder; its ± is then 0.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from ..utils.markdown_tables import mean_std, table_lines

COLUMNS = (("success", "success", 3), ("clean", "clean", 3), ("psnr_outside", "PSNR outside box (dB)", 2),
           ("objects_kept", "objects kept", 3))


def collect(root: Path) -> dict:
    """{backbone: {editor: {variant: {column: [one value per seed]}}}} from the results.json files under root."""
    table: dict = {}
    for path in sorted(root.glob("*/*/seed*/results.json")):
        backbone, editor = path.parts[-4], path.parts[-3]
        results = json.loads(path.read_text())
        for variant, body in results["variants"].items():
            cells = table.setdefault(backbone, {}).setdefault(editor, {}).setdefault(variant, {})
            for key, _, _ in COLUMNS:
                cells.setdefault(key, []).append(body["summary"]["all"][key])
    if not table:
        raise FileNotFoundError(f"no <backbone>/<editor>/seed<k>/results.json under {root}; run "
                                "`agsm eval edit-shapes --method M --tokens T --out ROOT/BACKBONE/M/seedK` first")
    return table


def _cell(values: list[float], digits: int) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else None
    return mean_std((statistics.mean(values), spread), digits)


def markdown(table: dict) -> str:
    lines = []
    for backbone, editors in table.items():
        rows = [[editor, variant, str(len(cells["success"])),
                 *(_cell(cells[key], digits) for key, _, digits in COLUMNS)]
                for editor, variants in editors.items() for variant, cells in variants.items()]
        lines += [f"**{backbone}**", "", *table_lines(["editor", "variant", "seeds", *(c[1] for c in COLUMNS)], rows),
                  ""]
    return "\n".join(lines)


def pareto_plot(table: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(table), figsize=(5.5 * len(table), 4.5), squeeze=False)
    for ax, (backbone, editors) in zip(axes[0], table.items()):
        for i, (editor, variants) in enumerate(editors.items()):
            color = f"C{i}"
            points = {v: (statistics.mean(c["psnr_outside"]), statistics.mean(c["success"])) for v, c in variants.items()}
            base = points.get("base")
            tokens = points.get("tokens")
            if base:
                ax.plot(*base, "o", color=color, mfc="white", label=f"{editor} base")
            if tokens:
                ax.plot(*tokens, "o", color=color, label=f"{editor} + tokens")
                if base:
                    ax.annotate("", xy=tokens, xytext=base, arrowprops={"arrowstyle": "->", "color": color})
        ax.set_title(backbone)
        ax.set_xlabel("PSNR outside the edited box (dB), preservation")
        ax.set_ylabel("edit success (judge)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", help="folder with <backbone>/<editor>/seed<k>/results.json")
    parser.add_argument("--out", required=True, help="folder for edit_study.md and edit_pareto.png")
    args = parser.parse_args(argv)
    table = collect(Path(args.root))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "edit_study.md").write_text(markdown(table))
    pareto_plot(table, out / "edit_pareto.png")
    print(markdown(table))
    print(f"wrote {out / 'edit_study.md'} and {out / 'edit_pareto.png'}")


if __name__ == "__main__":
    main()
