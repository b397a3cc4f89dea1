"""``ovss-bench compare BASE.csv NEW.csv``: the regression gate of DESIGN §4.

Rows are matched on (label, dataset, corruption, severity, seed); ``label`` falls back to ``method``
in files without it. The gate fails (exit 1) when

- a finished row of BASE is missing from NEW or did not finish there,
- a row's mIoU dropped by more than ``--max-miou-drop`` points (1 point = 0.01 mIoU), or
- a row's mean prompts decoded per image changed (a count that does not depend on the machine), or
- with ``--max-speed-ratio-drop PCT``: a method's speed ratio to the reference method measured in the
  same file (fps_method / fps_reference on the same dataset, corruption, severity and seed) fell by
  more than PCT percent relative to BASE's ratio. A ratio is gated only where the method and the
  reference timed at least ``--min-timed-images`` images (default 20) in both files: below that the
  ratio is noise (the demo times 1-2 images per unit), and the row says why it was not gated.

A row counts as "moved" when its mIoU changed by at least ``MOVED_PTS`` points or its verdict is not
ok. Absolute speeds are shown, never gated: they depend on the machine. No torch import.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .errors import OvssError

KEY = ["label", "dataset", "corruption", "severity", "seed"]
DEFAULT_REFERENCE = "segearth-ov3"
DEFAULT_MIN_TIMED = 20
#: mIoU changes below this (in points) are float round-off between machines, not movement.
MOVED_PTS = 0.01
#: prompts decoded per image: a change beyond this is a change of the method, not noise.
PROMPTS_TOL = 1e-6


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
    for col in ("fps", "timed_images", "prompts_decoded"):
        if col not in df.columns:
            df[col] = float("nan")
    df["label"] = df["label"].astype(str)
    dup = df.duplicated(KEY)
    if dup.any():
        first = df[dup].iloc[0]
        raise OvssError(f"{p}: duplicate row {', '.join(str(first[k]) for k in KEY)}; collect the run again")
    return df


def speed_ratios(df: Any, reference: str) -> dict[tuple[Any, ...], tuple[float, float]]:
    """(label, dataset, corruption, severity, seed) -> (fps / fps of ``reference`` on the same cell,
    the fewer of the two rows' timed images; NaN when the file does not say)."""
    ref = {tuple(r[k] for k in KEY[1:]): r for _, r in df[df["label"] == reference].iterrows()}
    out = {}
    for _, r in df.iterrows():
        cell = tuple(r[k] for k in KEY[1:])
        rr = ref.get(cell)
        if rr is None or not _finite(rr["fps"]) or rr["fps"] <= 0 or not _finite(r["fps"]):
            continue
        timed = min(float(r["timed_images"]), float(rr["timed_images"]))
        out[tuple(r[k] for k in KEY)] = (float(r["fps"]) / float(rr["fps"]), timed)
    return out


def compare(
    base: Any, new: Any, max_miou_drop: float, max_speed_ratio_drop: float | None = None, reference: str | None = None,
    min_timed_images: int = DEFAULT_MIN_TIMED,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Compare two results tables.

    Args:
        base, new: DataFrames from :func:`read_results`.
        max_miou_drop: allowed mIoU drop, in points (percent of mIoU).
        max_speed_ratio_drop: allowed relative drop of the speed ratio, in percent; None = not gated.
        reference: reference method label for speed ratios (default "segearth-ov3").
        min_timed_images: a speed ratio is gated only where both rows of both files timed at least this
            many images; other rows get ``speed_note`` saying why they were not gated.

    Returns:
        (rows, failures): one row dict per BASE row (key, base/new mIoU, delta in points, ratios,
        verdict, speed_note), and the one-line reasons the gate fails (empty = pass).
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
        r0, t0 = rb.get(key, (None, math.nan))
        r1, t1 = rn.get(key, (None, math.nan))
        row.update(base_miou=b["miou"], new_miou=float("nan"), delta_pts=float("nan"), base_fps=b["fps"],
                   new_fps=float("nan"), base_ratio=r0, new_ratio=r1, verdict="ok", speed_note="")  # fmt: skip
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
            pb, pn = b["prompts_decoded"], n["prompts_decoded"]
            if _finite(pb) and (not _finite(pn) or abs(float(pn) - float(pb)) > PROMPTS_TOL):
                row["verdict"] = "PROMPTS" if row["verdict"] == "ok" else row["verdict"] + ", PROMPTS"
                failures.append(f"{name}: prompts decoded per image {float(pb):.3f} -> {float(pn):.3f}")
            if max_speed_ratio_drop is not None and row["label"] != reference:
                few = [t for t in (t0, t1) if not (_finite(t) and t >= min_timed_images)]
                if r0 is not None and few:
                    known = [t for t in few if _finite(t)]
                    row["speed_note"] = (f"not gated: {int(min(known)) if known else 'unknown number of'} timed "
                                         f"image(s) < {min_timed_images}")  # fmt: skip
                elif r0 is not None and r1 is None:
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

    moved = [r for r in rows if all_rows or r["verdict"] != "ok"
             or (_finite(r["delta_pts"]) and abs(r["delta_pts"]) >= MOVED_PTS)]  # fmt: skip
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
    if args.min_timed_images < 1:
        raise OvssError("--min-timed-images must be >= 1")
    rows, failures = compare(base, new, args.max_miou_drop, args.max_speed_ratio_drop, getattr(args, "reference", None),
                             args.min_timed_images)  # fmt: skip
    console = Console(width=max(Console().width, 150))
    table = render(rows)
    if table.row_count:
        console.print(table)
    else:
        console.print(f"nothing moved ({len(rows)} row(s) compared)")
    extra = sorted({tuple(r[k] for k in KEY) for _, r in new.iterrows()} - {tuple(r[k] for k in KEY) for _, r in base.iterrows()})
    if extra:
        console.print(f"{len(extra)} row(s) only in NEW (not gated)")
    ungated = [r for r in rows if r["speed_note"]]
    if ungated:
        console.print(f"speed not gated on {len(ungated)} row(s): fewer than {args.min_timed_images} timed images "
                      "(speed ratios of so few images are noise; gated: accuracy and prompt counts)",
                      markup=False, highlight=False)  # fmt: skip
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
