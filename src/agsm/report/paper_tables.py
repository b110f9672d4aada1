"""The paper's tables as agsm reproduces them: each table's rows and columns in the paper's layout, its published
numbers (docs/method.md, "Published results" and "Combined with preference-tuned backbones"), and how our numbers
are read from what the evaluations wrote (agsm eval coco / pie-bench results.json, GenEval's results.jsonl).

    table = PAPER_TABLES["coco"]
    filled = fill(table, {"sd15/agsm": coco_numbers(json.load(open("coco-agsm/results.json")))})
    write_table(filled, "runs/table1")     # table.md (ours beside the paper's) and table.json

The scripts in scripts/reproduce/ train, sample and evaluate; this module only lays the numbers out, so the
published numbers live in one place. The published values are kept as docs/method.md writes them (strings), so a
test can check them against that page and the table shows them with the paper's digits.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..utils.atomic_files import write_json, write_text
from ..utils.markdown_tables import markdown_table

SOURCE = "docs/method.md"


@dataclass(frozen=True)
class Column:
    key: str            # our number's name (a metric, a GenEval tag, or a variant)
    title: str          # the paper's column title, with its scale (x100, x10^3 ...)
    higher_better: bool = True


@dataclass(frozen=True)
class Row:
    key: str                       # what the scripts fill: 'sd15/agsm', 'sdxl/dpo', 'sd3/flowedit/tokens' ...
    labels: tuple[str, ...]        # the paper's row headers
    published: dict[str, str] = field(default_factory=dict)  # column key -> the paper's value, as written there


@dataclass(frozen=True)
class PaperTable:
    name: str
    title: str
    headers: tuple[str, ...]       # titles of the row-label columns
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    section: str                   # the docs/method.md section the published numbers come from
    notes: tuple[str, ...] = ()

    def row(self, key: str) -> Row:
        for row in self.rows:
            if row.key == key:
                return row
        raise KeyError(f"table {self.name} has no row {key!r}; its rows are {[r.key for r in self.rows]}")


def _published(columns: tuple[Column, ...], written: str) -> dict[str, str]:
    """'17.72 / 21.47 / ...' (docs/method.md's way of writing a row) -> {column key: '17.72', ...}."""
    values = [v.strip() for v in written.split("/")]
    if len(values) != len(columns):
        raise ValueError(f"{written!r} has {len(values)} values for {len(columns)} columns")
    return dict(zip((c.key for c in columns), values))


BACKBONES = {"sd15": "SD1.5", "sdxl": "SDXL", "sd3": "SD3"}
TOKEN_METHODS = {"base": "base", "softrepa": "SoftREPA", "agsm": "AGSM"}

# Table 1: COCO val5K, the first caption of each val2017 image. Keys are agsm.eval.coco's metric names.
COCO_COLUMNS = (Column("imagereward", "ImageReward x100"), Column("pickscore", "PickScore"),
                Column("clip", "CLIP x100"), Column("hpsv2", "HPSv2 x100"), Column("fid", "FID", higher_better=False))
_TABLE1 = {
    "sd15": ("17.72 / 21.47 / 26.40 / 25.08 / 24.59", "40.02 / 21.64 / 27.09 / 26.05 / 29.25",
             "34.50 / 21.59 / 27.23 / 25.66 / 25.94"),
    "sdxl": ("75.06 / 22.38 / 26.76 / 27.35 / 24.69", "85.28 / 22.63 / 26.78 / 28.41 / 26.42",
             "84.22 / 22.57 / 26.86 / 27.96 / 24.83"),
    "sd3": ("94.27 / 22.54 / 26.30 / 28.09 / 31.59", "108.5 / 22.55 / 26.91 / 28.91 / 36.21",
            "103.3 / 22.39 / 27.00 / 28.22 / 34.08"),
}
COCO_TABLE = PaperTable(
    "coco", "Table 1: COCO val5K (first caption of each val2017 image)", ("model", "method"), COCO_COLUMNS,
    tuple(Row(f"{arch}/{method}", (BACKBONES[arch], TOKEN_METHODS[method]), _published(COCO_COLUMNS, written))
          for arch, row_values in _TABLE1.items() for method, written in zip(TOKEN_METHODS, row_values)),
    "Published results")

# GenEval on SD3: GenEval's own tag names (its prompts/evaluation_metadata.jsonl), the overall score first.
GENEVAL_COLUMNS = (Column("overall", "mean"), Column("single_object", "single object"),
                   Column("two_object", "two objects"), Column("counting", "counting"), Column("colors", "colors"),
                   Column("position", "position"), Column("color_attr", "color attribution"))
_GENEVAL = {"base": "0.68 / 0.99 / 0.86 / 0.56 / 0.85 / 0.27 / 0.55",
            "softrepa": "0.70 / 1.00 / 0.95 / 0.29 / 0.92 / 0.34 / 0.68",
            "agsm": "0.72 / 1.00 / 0.91 / 0.64 / 0.89 / 0.26 / 0.64"}
GENEVAL_TABLE = PaperTable(
    "geneval", "GenEval on SD3", ("model", "method"), GENEVAL_COLUMNS,
    tuple(Row(f"sd3/{method}", ("SD3", TOKEN_METHODS[method]), _published(GENEVAL_COLUMNS, written))
          for method, written in _GENEVAL.items()),
    "Published results", ("The paper's main claim is the counting column against SoftREPA.",
                          "Scored by GenEval's own evaluate_images.py; mean = the mean over the six tags."))

# Table 3: AGSM tokens trained on a preference-tuned backbone, ImageReward x100.
PREFERENCE_METHODS = {"dpo": "Diffusion-DPO", "spo": "SPO", "inpo": "InPO"}
PREFERENCE_COLUMNS = (Column("backbone", "ImageReward x100, tuned backbone"),
                      Column("agsm", "ImageReward x100, + AGSM tokens"))
_TABLE3 = {("sd15", "dpo"): "29.09 / 42.47", ("sd15", "spo"): "18.98 / 34.86", ("sd15", "inpo"): "62.12 / 67.95",
           ("sdxl", "dpo"): "91.67 / 93.12", ("sdxl", "spo"): "96.95 / 98.64", ("sdxl", "inpo"): "94.05 / 96.07"}
PREFERENCE_TABLE = PaperTable(
    "preference", "Table 3: AGSM tokens on preference-tuned backbones (ImageReward x100)", ("model", "backbone"),
    PREFERENCE_COLUMNS,
    tuple(Row(f"{arch}/{method}", (BACKBONES[arch], PREFERENCE_METHODS[method]),
              _published(PREFERENCE_COLUMNS, written)) for (arch, method), written in _TABLE3.items()),
    "Combined with preference-tuned backbones",
    ("ImageReward x100 on the COCO val5K protocol of Table 1 (docs/method.md does not name the prompt set).",))

# PIE-Bench editing: docs/method.md states the paper's finding without numbers, so the published cells hold it.
EDITORS = {"sd15": {"pnp": "PnP", "masactrl": "MasaCtrl"},
           "sd3": {"rf_inversion": "RF-Inversion", "flowedit": "FlowEdit", "flowalign": "FlowAlign"}}
PIE_COLUMNS = (Column("structure_distance", "Structure distance x10^3", False), Column("psnr", "PSNR"),
               Column("lpips", "LPIPS x10^3", False), Column("mse", "MSE x10^4", False), Column("ssim", "SSIM x10^2"),
               Column("clip_whole", "CLIP whole"), Column("clip_edited", "CLIP edited"))
_PIE_CLAIM = {**{c.key: "holds" for c in PIE_COLUMNS[:5]}, "clip_whole": "higher than without",
              "clip_edited": "higher than without"}
PIE_TABLE = PaperTable(
    "pie", "PIE-Bench editing, with and without psi+ in the denoiser", ("model", "editor", "tokens"), PIE_COLUMNS,
    tuple(Row(f"{arch}/{editor}/{tokens}", (BACKBONES[arch], title, tokens),
              _PIE_CLAIM if tokens == "tokens" else {})
          for arch, editors in EDITORS.items() for editor, title in editors.items() for tokens in ("none", "tokens")),
    "Editing",
    ("docs/method.md gives the paper's finding, not its numbers: with the tokens the CLIP similarity of the edit is "
     "higher than without, while the structure metrics (structure distance, PSNR, LPIPS, MSE, SSIM) hold.",))

PAPER_TABLES = {t.name: t for t in (COCO_TABLE, GENEVAL_TABLE, PREFERENCE_TABLE, PIE_TABLE)}


def coco_numbers(results: dict) -> dict[str, float | None]:
    """agsm eval coco's results.json -> {metric: value in Table 1's scale} (FID as is)."""
    from ..eval.coco import COLUMNS

    factors = {key: factor for key, _, factor in COLUMNS}
    numbers = {key: entry["mean"] * factors[key] for key, entry in results.get("metrics", {}).items()
               if key in factors and entry.get("mean") is not None}
    numbers["fid"] = (results.get("fid") or {}).get("value")
    return numbers


def pie_numbers(results: dict) -> dict[str, float | None]:
    """agsm eval pie-bench's results.json -> {metric: value in PIE-Bench's scale} (pie_metrics.DISPLAY)."""
    from ..metrics.pie_metrics import DISPLAY

    return {key: (None if entry.get("mean") is None else entry["mean"] * DISPLAY[key][1])
            for key, entry in results.get("metrics", {}).items() if key in DISPLAY}


def geneval_numbers(results_jsonl) -> dict[str, float]:
    """GenEval's evaluate_images.py output (one JSON line per image with 'tag' and 'correct') -> the fraction of
    correct images per tag and 'overall', their mean over tags, as GenEval's summary_scores.py reports them."""
    path = Path(results_jsonl)
    if not path.is_file():
        raise FileNotFoundError(f"GenEval results {path} do not exist; write them with GenEval's "
                                "evaluation/evaluate_images.py IMAGEDIR --outfile FILE")
    by_tag: dict[str, list[bool]] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            by_tag.setdefault(str(entry["tag"]), []).append(bool(entry["correct"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path} line {number} is not a GenEval result with 'tag' and 'correct' ({exc}); "
                             "give the file evaluate_images.py wrote") from None
    if not by_tag:
        raise ValueError(f"{path} holds no GenEval results")
    scores = {tag: sum(flags) / len(flags) for tag, flags in by_tag.items()}
    return {"overall": sum(scores.values()) / len(scores), **scores}


def fill(table: PaperTable, ours: dict[str, dict], runs: dict[str, dict] | None = None) -> dict:
    """The table as JSON: every row with the paper's values and ours (None where not run); `runs` may name what
    each row was computed from (results files, token files)."""
    unknown = sorted(set(ours) - {r.key for r in table.rows})
    if unknown:
        raise KeyError(f"table {table.name} has no rows {unknown}; its rows are {[r.key for r in table.rows]}")
    rows = []
    for row in table.rows:
        mine = ours.get(row.key, {})
        rows.append({"key": row.key, "labels": list(row.labels),
                     "ours": {c.key: _number(mine.get(c.key)) for c in table.columns},
                     "published": {c.key: row.published.get(c.key) for c in table.columns},
                     "from": (runs or {}).get(row.key)})
    return {"table": table.name, "title": table.title, "source": f"{SOURCE}, \"{table.section}\"",
            "headers": list(table.headers),
            "columns": [{"key": c.key, "title": c.title, "higher_better": c.higher_better} for c in table.columns],
            "rows": rows, "notes": list(table.notes)}


def table_markdown(filled: dict, digits: int = 2) -> str:
    """The filled table in the paper's layout, each cell 'ours (paper)'; '-' where we have no number."""
    body = []
    for row in filled["rows"]:
        cells = []
        for column in filled["columns"]:
            value, paper = row["ours"][column["key"]], row["published"][column["key"]]
            mine = "-" if value is None else f"{value:.{digits}f}"
            cells.append(mine if paper is None else f"{mine} ({paper})")
        body.append([*row["labels"], *cells])
    arrows = ["↑" if c["higher_better"] else "↓" for c in filled["columns"]]
    titles = [*filled["headers"], *(f"{c['title']} {a}" for c, a in zip(filled["columns"], arrows))]
    lines = [f"# {filled['title']}", "", f"Each cell: ours (the paper's, from {filled['source']}).", "",
             markdown_table(titles, body)]
    if filled["notes"]:
        lines += ["", *filled["notes"]]
    return "\n".join(lines) + "\n"


def write_table(filled: dict, out) -> Path:
    """Write OUT/table.json and OUT/table.md (atomically); returns table.md's path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "table.json", filled)
    return write_text(out / "table.md", table_markdown(filled))


def _number(value) -> float | None:
    """None stays None (not run); anything else a float, NaN included, so a broken number shows as one."""
    return None if value is None else float(value)
