"""A side-by-side report of several evaluated variants over seeds: markdown, HTML, bar chart."""
from __future__ import annotations

import base64
import html
import statistics
from dataclasses import dataclass
from pathlib import Path

from ..shapes.spec import CATEGORIES
from ..utils import markdown_tables as tables
from ..utils.markdown_tables import mean_std

ROWS = list(CATEGORIES) + ["mean", "overcount_rate"]


def summarise(runs: dict[str, list[dict]]) -> dict[str, dict[str, tuple[float, float | None]]]:
    """{variant: [results per seed]} -> {variant: {row: (mean over seeds, std over seeds)}}; the std is None for
    one seed (no spread was measured, which is not a spread of 0)."""
    table = {}
    for name, results in runs.items():
        table[name] = {}
        for row in ROWS:
            values = [_value(r, row) for r in results]
            values = [v for v in values if v is not None]
            if values:
                spread = statistics.stdev(values) if len(values) > 1 else None
                table[name][row] = (statistics.fmean(values), spread)
    return table


def _value(result: dict, row: str):
    if row in ("mean", "overcount_rate"):
        return result.get(row)
    return result["accuracy"].get(row)


def cell(value: tuple[float, float | None], digits: int = 3) -> str:
    """'0.784 ± 0.003', or '0.617 (n=1)' where one seed gave no spread."""
    return mean_std(value, digits)


def markdown_table(table: dict) -> str:
    """Rows: categories, mean, over-count rate; one column per variant."""
    names = list(table)
    rows = [["over-count rate (lower is better)" if row == "overcount_rate" else row,
             *(cell(table[n][row]) if row in table[n] else "-" for n in names)]
            for row in ROWS if any(row in table[n] for n in names)]
    return tables.markdown_table(["", *names], rows)


def bar_chart(table: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in list(CATEGORIES) + ["mean"] if all(r in table[n] for n in table)]
    width = 0.8 / len(table)
    fig, ax = plt.subplots(figsize=(9, 3.6), dpi=110)
    for i, (name, values) in enumerate(table.items()):
        xs = [j + (i - (len(table) - 1) / 2) * width for j in range(len(rows))]
        ax.bar(xs, [values[r][0] for r in rows], width, yerr=[values[r][1] or 0.0 for r in rows], label=name, capsize=2)
    ax.set_xticks(range(len(rows)), [r.replace("_", " ") for r in rows])
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy (exact judge)")
    ax.legend(ncols=len(table), loc="lower left", bbox_to_anchor=(0, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


@dataclass
class Section:
    """One backbone's results: its table, bar chart and same-seed grid."""

    title: str
    intro: str
    table: dict
    chart: Path
    grid: Path
    paired: str = ""        # a markdown table of paired differences (report/paired_sections.py), if any
    grid_caption: str = ""  # what the grid's rows are, when not the first prompts of each category


def write_report(out: Path, title: str, intro: str, sections: list[Section], notes: str) -> None:
    md, body = [f"# {title}", "", intro, ""], [f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(intro)}</p>"]
    for sec in sections:
        heading = f"{sec.title}: accuracy on the ShapesWorld suite (mean ± std over evaluation seeds)"
        columns = (sec.grid_caption + " " if sec.grid_caption else "") + "Columns: " + ", ".join(sec.table) + \
            ". Frames: green = judged correct, red = wrong."
        paired_md = [sec.paired, ""] if sec.paired else []
        md += [f"## {heading}", "", sec.intro, "", markdown_table(sec.table), "", *paired_md,
               f"![accuracy per category]({sec.chart.relative_to(out)})", "", f"### {sec.title}: same prompts, same seeds",
               "", columns, "", f"![side by side]({sec.grid.relative_to(out)})", ""]
        body += [f"<h2>{html.escape(heading)}</h2>", f"<p>{html.escape(sec.intro)}</p>", _html_table(sec.table),
                 f"<pre>{html.escape(sec.paired)}</pre>" if sec.paired else "",
                 f'<img src="data:image/png;base64,{_b64(sec.chart)}" alt="accuracy per category">',
                 f"<h3>{html.escape(sec.title)}: same prompts, same seeds</h3>", f"<p>{html.escape(columns)}</p>",
                 f'<img src="data:image/png;base64,{_b64(sec.grid)}" alt="side by side">']
    md += ["## Notes", "", notes, ""]
    body += ["<h2>Notes</h2>", f"<pre>{html.escape(notes)}</pre>"]
    (out / "report.md").write_text("\n".join(md))
    style = "body{font-family:sans-serif;max-width:1000px;margin:2em auto}td,th{padding:4px 10px;text-align:right}"
    (out / "report.html").write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
                                     f"</title><style>{style}</style></head><body>{''.join(body)}</body></html>")


def _html_table(table: dict) -> str:
    names = list(table)
    head = "<tr><th></th>" + "".join(f"<th>{html.escape(n)}</th>" for n in names) + "</tr>"
    rows = []
    for row in ROWS:
        if any(row in table[n] for n in names):
            cells = "".join(f"<td>{cell(table[n][row])}</td>" if row in table[n]
                            else "<td>-</td>" for n in names)
            rows.append(f"<tr><th>{html.escape(row)}</th>{cells}</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _b64(path: Path) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode()
