"""`agsm report`: results files side by side, one column per file, the best value of each row marked.

    agsm report runs/coco-base/results.json runs/coco-agsm/results.json --labels base AGSM --out runs/report

Reads COCO results (`agsm eval coco`), ShapesWorld results (`agsm eval shapes`) and PIE-Bench results
(`agsm eval pie-bench`), in any mix: each kind gets its own table, with the scale factors of the paper's tables.
Best per row: the highest value, or the lowest where lower is better (FID, over-count rate, structure distance,
LPIPS, MSE); marked only when at least two files have the row. Writes report.md and report.html.
"""
from __future__ import annotations

import html
import json
from pathlib import Path

from ..eval.coco import COLUMNS as COCO_COLUMNS
from ..utils.markdown_tables import table_lines
from ..metrics.pie_metrics import DISPLAY as PIE_DISPLAY
from ..metrics.pie_metrics import METRICS as PIE_METRICS
from .variants import ROWS as SHAPES_ROWS
from .variants import summarise

TITLES = {"coco": "COCO (generation)", "shapes": "ShapesWorld suite (exact judge)", "pie-bench": "PIE-Bench (editing)"}


def result_rows(data: dict, source: str = "results") -> tuple[str, dict[str, tuple[float, bool]]]:
    """(kind, {row title: (value in the paper's scale, higher is better)}) of one results file."""
    kind = data.get("kind") or ("shapes" if "accuracy" in data and "verdicts" in data else None)
    if kind == "coco":
        rows = {}
        for key, title, factor in COCO_COLUMNS:
            if key == "fid" and data.get("fid"):
                rows[title] = (data["fid"]["value"], False)
            elif key in data["metrics"]:
                rows[title] = (data["metrics"][key]["mean"] * factor, True)
        return kind, rows
    if kind == "pie-bench":
        rows = {}
        for key in PIE_METRICS:
            entry = data["metrics"].get(key)
            if entry and entry["mean"] is not None:
                title, factor, higher = PIE_DISPLAY[key]
                rows[title] = (entry["mean"] * factor, higher)
        return kind, rows
    if kind == "shapes":
        table = summarise({"x": [data]})["x"]
        return kind, {("over-count rate" if row == "overcount_rate" else row): (table[row][0], row != "overcount_rate")
                      for row in SHAPES_ROWS if row in table}
    raise ValueError(f"{source} is not a results file of agsm eval coco, shapes or pie-bench "
                     "(no 'kind' of coco / pie-bench, no ShapesWorld 'accuracy' and 'verdicts')")


def build_tables(paths: list, labels: list[str] | None = None) -> dict[str, dict]:
    """{kind: {"labels": [...], "rows": {title: [(value or None, is_best)] per file of that kind},
    "higher": {title: whether higher is better}}}."""
    if labels is not None and len(labels) != len(paths):
        raise ValueError(f"--labels gives {len(labels)} names for {len(paths)} results files; give one per file")
    columns: dict[str, list] = {}
    for i, path in enumerate(paths):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no results file at {path}")
        data = json.loads(path.read_text())
        kind, rows = result_rows(data, str(path))
        label = labels[i] if labels else data.get("label") or path.parent.name
        columns.setdefault(kind, []).append((label, rows))
    tables = {}
    for kind, cols in columns.items():
        titles = list(dict.fromkeys(t for _, rows in cols for t in rows))
        table, higher = {}, {}
        for title in titles:
            values = [rows.get(title) for _, rows in cols]
            present = [v for v in values if v is not None]
            higher[title] = present[0][1]
            best = None
            if len(present) > 1:
                pick = max if present[0][1] else min
                best = pick(v[0] for v in present)
            table[title] = [(None, False) if v is None else (v[0], best is not None and v[0] == best) for v in values]
        tables[kind] = {"labels": [label for label, _ in cols], "rows": table, "higher": higher}
    return tables


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}" if abs(value) < 10 else f"{value:.2f}"


def _arrow(table: dict, title: str) -> str:
    return "↑" if table["higher"][title] else "↓"


def markdown(tables: dict) -> str:
    out = ["# Results side by side", "", "Best per row in **bold** (↑ higher is better, ↓ lower is better).", ""]
    for kind, t in tables.items():
        rows = [[f"{title} {_arrow(t, title)}", *(f"**{_fmt(v)}**" if best else _fmt(v) for v, best in cells)]
                for title, cells in t["rows"].items()]
        out += [f"## {TITLES[kind]}", "", *table_lines(["", *t["labels"]], rows), ""]
    return "\n".join(out)


def html_page(tables: dict) -> str:
    body = ["<h1>Results side by side</h1>", "<p>Best per row in bold (↑ higher is better, ↓ lower is better).</p>"]
    for kind, t in tables.items():
        head = "<tr><th></th>" + "".join(f"<th>{html.escape(l)}</th>" for l in t["labels"]) + "</tr>"
        rows = []
        for title, cells in t["rows"].items():
            tds = "".join(f'<td class="best"><b>{_fmt(v)}</b></td>' if best else f"<td>{_fmt(v)}</td>"
                          for v, best in cells)
            rows.append(f"<tr><th>{html.escape(title)} {_arrow(t, title)}</th>{tds}</tr>")
        body += [f"<h2>{html.escape(TITLES[kind])}</h2>", f"<table>{head}{''.join(rows)}</table>"]
    style = ("body{font-family:sans-serif;max-width:1000px;margin:2em auto}td,th{padding:4px 10px;text-align:right}"
             "td.best{background:#e6f4ea}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Results</title><style>{style}</style></head>"
            f"<body>{''.join(body)}</body></html>")


def write_report(paths: list, out, labels: list[str] | None = None) -> dict:
    tables = build_tables(paths, labels)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(markdown(tables))
    (out / "report.html").write_text(html_page(tables))
    return tables


def add_report_command(subparsers) -> None:
    p = subparsers.add_parser("report", help="side-by-side markdown + HTML of results.json files "
                                             "(COCO, ShapesWorld, PIE-Bench), best per row marked")
    p.add_argument("results", nargs="+", help="results.json files, one column each")
    p.add_argument("--out", required=True, help="folder for report.md and report.html (made if missing)")
    p.add_argument("--labels", nargs="+", help="column names, one per file (default: each file's label or folder)")
    p.set_defaults(run=_run)


def _run(args, extra) -> None:
    if extra:
        raise ValueError(f"agsm report: unknown arguments {extra}")
    write_report(args.results, args.out, args.labels)
    print(f"wrote report.md and report.html to {args.out}")
