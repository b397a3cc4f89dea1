"""Markdown rendering of the report's tables: formatting only, no metric is computed here.

Accuracy values arrive as fractions and are shown as percent (mIoU, rPC, CE, recall) with
``DECIMALS`` decimals; ``n/a`` marks a value that could not be computed (the reason is listed below
the table) and an empty cell a value the source does not have.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

DECIMALS = 2
NA = "n/a"


def pct(x: float | None, nd: int = DECIMALS) -> str:
    """A fraction as percent with ``nd`` decimals ("n/a" for NaN/None)."""
    if x is None or (isinstance(x, float) and math.isnan(x)) or pd.isna(x):
        return NA
    return f"{100 * float(x):.{nd}f}"


def num(x: float | None, nd: int = 2) -> str:
    """A plain number with ``nd`` decimals ("n/a" for NaN/None)."""
    if x is None or pd.isna(x):
        return NA
    return f"{float(x):.{nd}f}"


def sig(x: float | None, digits: int = 4) -> str:
    """A number with ``digits`` significant digits (timings span orders of magnitude)."""
    if x is None or pd.isna(x):
        return NA
    return f"{float(x):.{digits}g}"


def mean_std_pct(mean: float, std: float, n: int, nd: int = DECIMALS) -> str:
    """"m ± s" in percent when there are several seeds, else "m"."""
    if pd.isna(mean):
        return NA
    if n > 1 and not pd.isna(std):
        return f"{pct(mean, nd)} ± {pct(std, nd)}"
    return pct(mean, nd)


def escape(cell: object) -> str:
    """A table cell: pipes escaped, newlines flattened."""
    return str(cell).replace("|", "\\|").replace("\n", " ").strip()


def md_table(df: pd.DataFrame, align_right: Iterable[str] = ()) -> str:
    """A GitHub-flavoured markdown table of ``df`` (all cells shown as their string form)."""
    right = set(align_right)
    head = "| " + " | ".join(escape(c) for c in df.columns) + " |"
    sep = "|" + "|".join("---:" if c in right else "---" for c in df.columns) + "|"
    body = ["| " + " | ".join(escape(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, sep, *body])


def bullet_list(items: Sequence[str]) -> str:
    """Markdown bullets."""
    return "\n".join(f"- {escape(i)}" for i in items)


def relpath(path: Path, start: Path) -> str:
    """Path of ``path`` relative to ``start`` with forward slashes (for links in report.md)."""
    import os

    return Path(os.path.relpath(path, start)).as_posix()
