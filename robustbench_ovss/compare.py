"""``ovss-bench compare BASE.csv NEW.csv``: the regression gate of DESIGN §4.

Rows are matched on (label, dataset, corruption, severity, seed); ``label`` falls back to ``method``
in files without it. The gate fails (exit 1) when

- a finished row of BASE is missing from NEW or did not finish there,
- a row's mIoU dropped by more than ``--max-miou-drop`` points (1 point = 0.01 mIoU), or
- with ``--max-speed-ratio-drop PCT``: a method's speed ratio to the reference method measured in the
  same file (fps_method / fps_reference on the same dataset, corruption, severity and seed) fell by
  more than PCT percent relative to BASE's ratio.

Absolute speeds are shown, never gated: they depend on the machine. No torch import.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .errors import OvssError

KEY = ["label", "dataset", "corruption", "severity", "seed"]
DEFAULT_REFERENCE = "segearth-ov3"


def read_results(path: str | Path) -> Any:
    """results.csv as a DataFrame with a ``label`` column; one-line errors for missing or foreign files."""
    import pandas as pd

    p = Path(path)
    if p.is_dir():
        p = p / "results.csv"
    if not p.is_file():
        raise OvssError(f"{p}: no such results file (pass a results.csv or a run directory)")
    try:
        df = pd.read_csv(p)
    except Exception as exc:  # pandas raises a zoo of parser errors
        raise OvssError(f"{p}: not a readable CSV ({type(exc).__name__}: {exc})") from None
    if "label" not in df.columns and "method" in df.columns:
        df["label"] = df["method"]
    missing = [c for c in [*KEY, "miou"] if c not in df.columns]
    if missing:
        raise OvssError(f"{p}: missing column(s) {', '.join(missing)} (is it an ovss-bench results.csv?)")
    if "status" not in df.columns:
        df["status"] = "complete"
    if "fps" not in df.columns:
        df["fps"] = float("nan")
    df["label"] = df["label"].astype(str)
    dup = df.duplicated(KEY)
    if dup.any():
        first = df[dup].iloc[0]
        raise OvssError(f"{p}: duplicate row {', '.join(str(first[k]) for k in KEY)}; collect the run again")
    return df


def speed_ratios(df: Any, reference: str) -> dict[tuple[Any, ...], float]:
    """(label, dataset, corruption, severity, seed) -> fps / fps of ``reference`` on the same cell."""
    ref = {tuple(r[k] for k in KEY[1:]): r["fps"] for _, r in df[df["label"] == reference].iterrows()}
    out = {}
    for _, r in df.iterrows():
        cell = tuple(r[k] for k in KEY[1:])
        rf = ref.get(cell)
        if rf is None or not _finite(rf) or rf <= 0 or not _finite(r["fps"]):
            continue
        out[tuple(r[k] for k in KEY)] = float(r["fps"]) / float(rf)
    return out


def compare(
    base: Any, new: Any, max_miou_drop: float, max_speed_ratio_drop: float | None = None, reference: str | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """Compare two results tables.

    Args:
        base, new: DataFrames from :func:`read_results`.
        max_miou_drop: allowed mIoU drop, in points (percent of mIoU).
        max_speed_ratio_drop: allowed relative drop of the speed ratio, in percent; None = not gated.
        reference: reference method label for speed ratios (default "segearth-ov3").

    Returns:
        (rows, failures): one row dict per BASE row (key, base/new mIoU, delta in points, ratios,
        verdict), and the one-line reasons the gate fails (empty = pass).
    """
    failures: list[str] = []
    reference = reference or DEFAULT_REFERENCE
    if max_speed_ratio_drop is not None:
        for name, df in (("BASE", base), ("NEW", new)):
            if not (df["label"] == reference).any():
                raise OvssError(f"compare: reference method {reference!r} not in {name}; pass --reference METHOD")
        rb, rn = speed_ratios(base, reference), speed_ratios(new, reference)
    else:
        rb, rn = {}, {}
    new_idx = {tuple(r[k] for k in KEY): r for _, r in new.iterrows()}
    rows = []
    for _, b in base.iterrows():
        key = tuple(b[k] for k in KEY)
        name = "/".join(str(x) for x in key)
        if b["status"] != "complete":
            continue
        n = new_idx.get(key)
        row: dict[str, Any] = dict(zip(KEY, key, strict=True))
        row.update(base_miou=b["miou"], new_miou=float("nan"), delta_pts=float("nan"), base_fps=b["fps"],
                   new_fps=float("nan"), base_ratio=rb.get(key), new_ratio=rn.get(key), verdict="ok")  # fmt: skip
        if n is None:
            row["verdict"] = "MISSING"
            failures.append(f"{name}: missing in NEW")
        elif n["status"] != "complete":
            row["verdict"] = "FAILED"
            failures.append(f"{name}: status {n['status']} in NEW")
        else:
            row.update(new_miou=n["miou"], new_fps=n["fps"])
            if _finite(b["miou"]):
                delta = (float(n["miou"]) - float(b["miou"])) * 100.0 if _finite(n["miou"]) else -math.inf
                row["delta_pts"] = delta
                if delta < -max_miou_drop:
                    row["verdict"] = "MIOU DROP"
                    failures.append(f"{name}: mIoU {100 * b['miou']:.2f} -> {100 * float(n['miou']):.2f} "
                                    f"({delta:+.2f} points, allowed -{max_miou_drop:g})")  # fmt: skip
            if max_speed_ratio_drop is not None and row["label"] != reference:
                r0, r1 = rb.get(key), rn.get(key)
                if r0 is not None and r1 is None:
                    row["verdict"] = "NO SPEED"
                    failures.append(f"{name}: speed ratio to {reference} measurable in BASE but not in NEW")
                elif r0 is not None and r1 is not None:
                    drop = (1.0 - r1 / r0) * 100.0
                    row["ratio_drop_pct"] = drop
                    if drop > max_speed_ratio_drop:
                        row["verdict"] = "SLOWER" if row["verdict"] == "ok" else row["verdict"] + ", SLOWER"
                        failures.append(f"{name}: speed ratio to {reference} {r0:.3f} -> {r1:.3f} "
                                        f"(-{drop:.1f}%, allowed -{max_speed_ratio_drop:g}%)")  # fmt: skip
        rows.append(row)
    return rows, failures


def _finite(x: Any) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def _fmt(x: Any, scale: float = 1.0, nd: int = 2) -> str:
    return f"{float(x) * scale:.{nd}f}" if _finite(x) else "-"


def render(rows: list[dict[str, Any]], all_rows: bool = False) -> Any:
    """A rich table of the rows that moved (or all of them), worst mIoU change first."""
    from rich.table import Table

    moved = [r for r in rows if all_rows or r["verdict"] != "ok" or (_finite(r["delta_pts"]) and abs(r["delta_pts"]) > 1e-9)
             or (r.get("ratio_drop_pct") is not None and abs(r["ratio_drop_pct"]) > 1e-9)]  # fmt: skip
    moved.sort(key=lambda r: r["delta_pts"] if _finite(r["delta_pts"]) else -math.inf)
    t = Table(title=f"{len(moved)} of {len(rows)} row(s) moved", show_lines=False)
    for col in ("method", "dataset", "corruption", "sev", "seed", "mIoU base", "mIoU new", "Δ pts", "ratio base",
                "ratio new", "Δ ratio %", "verdict"):  # fmt: skip
        left = col in ("method", "dataset", "corruption", "verdict")
        t.add_column(col, justify="left" if left else "right", no_wrap=True)
    for r in moved:
        t.add_row(
            str(r["label"]), str(r["dataset"]), str(r["corruption"]), str(r["severity"]), str(r["seed"]),
            _fmt(r["base_miou"], 100), _fmt(r["new_miou"], 100),
            f"{r['delta_pts']:+.2f}" if _finite(r["delta_pts"]) else "-",
            _fmt(r["base_ratio"], 1, 3), _fmt(r["new_ratio"], 1, 3),
            f"{-r['ratio_drop_pct']:+.1f}" if r.get("ratio_drop_pct") is not None else "-", r["verdict"],
        )  # fmt: skip
    return t


def cli_compare(args: Any) -> int:
    """``ovss-bench compare``: print what moved; exit 1 when the gate fails."""
    from rich.console import Console

    if args.max_miou_drop < 0:
        raise OvssError("--max-miou-drop must be >= 0 (points)")
    if args.max_speed_ratio_drop is not None and args.max_speed_ratio_drop < 0:
        raise OvssError("--max-speed-ratio-drop must be >= 0 (percent)")
    base, new = read_results(args.base), read_results(args.new)
    rows, failures = compare(base, new, args.max_miou_drop, args.max_speed_ratio_drop, getattr(args, "reference", None))
    console = Console(width=max(Console().width, 150))
    table = render(rows)
    if table.row_count:
        console.print(table)
    else:
        console.print(f"nothing moved ({len(rows)} row(s) compared)")
    extra = sorted({tuple(r[k] for k in KEY) for _, r in new.iterrows()} - {tuple(r[k] for k in KEY) for _, r in base.iterrows()})
    if extra:
        console.print(f"{len(extra)} row(s) only in NEW (not gated)")
    if failures:
        for f in failures:
            console.print(f"FAIL {f}", markup=False, highlight=False)
        console.print(f"compare: {len(failures)} regression(s)", markup=False)
        return 1
    gates = f"mIoU drop <= {args.max_miou_drop:g} points"
    if args.max_speed_ratio_drop is not None:
        gates += f", speed ratio drop <= {args.max_speed_ratio_drop:g}%"
    console.print(f"compare: pass ({len(rows)} row(s); {gates})", markup=False)
    return 0
