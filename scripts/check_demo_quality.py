#!/usr/bin/env python
"""Measure the demo model with the suite and check the quality targets of issue #8.

    .venv/bin/python scripts/check_demo_quality.py                 # runs configs/demo-quality.toml
    .venv/bin/python scripts/check_demo_quality.py --run-dir DIR   # checks a finished run instead

Targets (on held-out synthetic scenes, 121 prompts):
  * clean mIoU >= 0.6 for segearth-ov3 and activesam;
  * ActiveSAM's presence preview keeps >= 95 % of the ground-truth concepts (clean active-set recall);
  * mIoU non-increasing with severity (clean = severity 0) for every noise and blur corruption run (segearth-ov3, activesam);
  * ActiveSAM faster than SegEarth-OV3 (model images/s, mean over the run's units, same device).

Prints a markdown table and one line per target; exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import sys
from itertools import pairwise
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "configs" / "demo-quality.toml"
MIN_MIOU, MIN_RECALL = 0.6, 0.95
TARGET_METHODS = ("segearth-ov3", "activesam")
MONOTONIC = ("noise", "blur")  # corruption families that must degrade with severity


def table(df: pd.DataFrame) -> str:
    """Markdown: one row per method, clean then each corruption's mIoU by severity."""
    cors = [c for c in sorted(df["corruption"].unique()) if c != "none"]
    sev = "/".join(f"s{int(s)}" for s in sorted(df.loc[df["corruption"] != "none", "severity"].unique()))
    head = ["method", "clean mIoU"] + [f"{c} {sev}" for c in cors] + ["clean active-set recall", "images/s (all units)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, g in df.groupby("label", sort=True):
        clean = g[g["corruption"] == "none"].iloc[0]
        cells = [str(label), f"{clean['miou']:.3f}"]
        for c in cors:
            s = g[g["corruption"] == c].sort_values("severity")
            cells.append(" / ".join(f"{v:.3f}" for v in s["miou"]))
        rec = clean.get("active_recall")
        cells.append("-" if pd.isna(rec) else f"{rec:.3f}")
        cells.append(f"{g['fps'].mean():.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def check(df: pd.DataFrame) -> list[tuple[str, bool, str]]:
    """(target, reached, evidence) for each target of issue #8."""
    out = []
    clean = df[df["corruption"] == "none"].set_index("label")
    for m in TARGET_METHODS:
        v = float(clean.loc[m, "miou"]) if m in clean.index else float("nan")
        out.append((f"clean mIoU >= {MIN_MIOU} ({m})", v >= MIN_MIOU, f"{v:.3f}"))
    rec = float(clean.loc["activesam", "active_recall"]) if "activesam" in clean.index else float("nan")
    out.append((f"active-set recall >= {MIN_RECALL:.0%} (clean)", rec >= MIN_RECALL, f"{rec:.3f}"))
    for (label, cor), g in df[df["corruption"] != "none"].groupby(["label", "corruption"]):
        if not any(k in cor for k in MONOTONIC) or label not in clean.index or label not in TARGET_METHODS:
            continue
        seq = [float(clean.loc[label, "miou"])] + g.sort_values("severity")["miou"].astype(float).tolist()
        ok = all(b <= a + 1e-9 for a, b in pairwise(seq))
        out.append((f"mIoU non-increasing with severity ({label}, {cor})", ok, " > ".join(f"{v:.3f}" for v in seq)))
    # mean over every unit of the run: the first units' images are warm-up and carry no time
    fps = df.groupby("label")["fps"].mean()
    fa, fs = float(fps.get("activesam", float("nan"))), float(fps.get("segearth-ov3", float("nan")))
    out.append(("ActiveSAM faster than SegEarth-OV3", fa > fs, f"{fa:.2f} vs {fs:.2f} images/s ({fa / fs:.2f}x)"))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", type=Path, help="check this finished run instead of running the config")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "demo-quality", help="where the run goes")
    args = ap.parse_args(argv)
    run_dir = args.run_dir
    if run_dir is None:
        from robustbench_ovss.cli import main as cli

        code = cli(["run", str(CONFIG), "--out", str(args.out)])
        if code != 0:
            print(f"run failed with exit code {code}", file=sys.stderr)
            return code
        run_dir = args.out
    results = run_dir / "results.csv"
    if not results.is_file():
        print(f"{results}: not found; point --run-dir at a finished run", file=sys.stderr)
        return 2
    df = pd.read_csv(results)
    df = df[(df["status"] == "complete") & (df["dataset"] == "synthetic")]
    if df.empty:
        print(f"{results}: no complete synthetic units", file=sys.stderr)
        return 2
    print(table(df))
    print()
    verdicts = check(df)
    for name, ok, evidence in verdicts:
        print(f"[{'ok' if ok else 'MISSED'}] {name}: {evidence}")
    return 0 if all(ok for _, ok, _ in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
