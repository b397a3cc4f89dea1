"""``ovss-bench ls {methods,datasets,corruptions,backends} [GLOB]``: what is registered, and from where.

Lists names without importing the built-in modules (so no torch): a built-in is known by name, an
entry-point plugin is loaded so that a broken one can be shown as such. For datasets the listing adds
the class count, the split size and whether the data is found under ``--data-root``
(``robustbench_ovss.datasets.describe``, which reads class attributes and scans no files).
"""

from __future__ import annotations

import fnmatch
from typing import Any

from .registry import REGISTRIES

DATASET_FIELDS = ("classes", "size", "root", "found")


def describe_dataset(name: str, data_root: str) -> dict[str, Any]:
    """Class count, split size, root and whether its files are found ("yes", "no", or "n/a" for a
    dataset that needs no files); "?" for what cannot be told."""
    from .datasets import describe

    try:
        d = describe(name, data_root)
    except Exception as exc:  # a listing shows what it can; one bad entry must not hide the rest
        return {"classes": "?", "size": "?", "root": "?", "found": f"error: {type(exc).__name__}: {exc}"}
    found = "n/a" if not d["root"] else ("yes" if d["found"] else "no")
    return {**d, "size": d["size"] if d["size"] is not None else "?", "found": found}


def listing(what: str, pattern: str | None = None, data_root: str = "data") -> tuple[list[list[str]], list[str]]:
    """Rows of the table (header first) and lines about broken plugins."""
    reg = REGISTRIES[what]
    broken = reg.load_plugins()
    header = ["name", "source"] + (list(DATASET_FIELDS) if what == "datasets" else [])
    rows = [header]
    for name in reg.names(pattern):
        row = [name, reg.source(name)]
        if what == "datasets":
            d = describe_dataset(name, data_root)
            row += [str(d.get(k, "?")) for k in DATASET_FIELDS]
        rows.append(row)
    bad = [f"{name}: BROKEN plugin ({err})" for name, err in sorted(broken.items())
           if not pattern or fnmatch.fnmatchcase(name, pattern)]  # fmt: skip
    return rows, bad


def cli_ls(args: Any) -> int:
    """Print the table on stdout and broken plugins on stderr (exit 0 either way)."""
    import sys

    rows, bad = listing(args.what, args.pattern, getattr(args, "data_root", "data") or "data")
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    if len(rows) == 1:
        print(f"(no {args.what} match {args.pattern!r})" if args.pattern else f"(no {args.what})")
    for line in bad:
        print(line, file=sys.stderr)
    return 0
