"""The one place that writes markdown tables and their cells, for every evaluation, report and study.

Here, in utils, and not in agsm.report: evaluations write their own results.md (agsm eval coco, pie-bench,
edit-shapes), and agsm.eval never imports agsm.report (reports read what evaluations wrote, not the reverse).
The layout is the one every table in the repository has always had, byte for byte (committed docs and tests compare
the files): `| a | b |` rows, one `---` per column, an empty top-left corner written `| |`.
"""
from __future__ import annotations

from collections.abc import Iterable


def row(cells: Iterable[str]) -> str:
    """'| a | b |' (an empty cell stays empty: '| a |  | c |')."""
    return "| " + " | ".join(cells) + " |"


def header(titles: Iterable[str]) -> list[str]:
    """The title row and the separator; an empty first title is the top-left corner of a row-labelled table."""
    titles = list(titles)
    head = "| |" + "".join(f" {t} |" for t in titles[1:]) if titles and titles[0] == "" else row(titles)
    return [head, "|" + "---|" * len(titles)]


def markdown_table(titles: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    """A whole table, no newline at the end."""
    return "\n".join(table_lines(titles, rows))


def table_lines(titles: Iterable[str], rows: Iterable[Iterable[str]]) -> list[str]:
    return [*header(titles), *(row(cells) for cells in rows)]


def fixed(value: float | None, digits: int = 3, missing: str = "-") -> str:
    """'0.123', or `missing` for a value not measured."""
    return missing if value is None else f"{value:.{digits}f}"


def mean_std(value: tuple[float, float | None], digits: int = 3, one_seed: str = " (n=1)") -> str:
    """'0.784 ± 0.003' (mean ± std over seeds), or '0.617 (n=1)' where one seed gave no spread (`one_seed` says
    so; not a spread of 0)."""
    mean, std = value
    return f"{mean:.{digits}f}{one_seed}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"
