#!/usr/bin/env python
"""Does a method's measured speed depend on its place in the method list? (issue #13)

Runs ActiveSAM and SegEarth-OV3 on the demo model over the same synthetic images four times in one
process: both method orders, with the runner's per-image rotation of the order and with a fixed order
(the runner's rotation replaced by the identity, i.e. the behaviour before the rotation). Each run
writes its own run directory; the script prints the ActiveSAM / SegEarth-OV3 images/s ratio of each.
The runs alternate (fixed A-B, fixed B-A, rotated A-B, rotated B-A, repeated ``--repeats`` times) so
that a drift of the machine's load hits every variant alike.

    .venv/bin/python benchmarks/bench_timing_order.py [--images 12] [--workers 2] [--repeats 2] [--corruption fog]

Not part of the pass/fail suite: timings on a shared machine are noisy; read the ratios side by side.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import pandas as pd

import robustbench_ovss.runner as runner
from robustbench_ovss.config import config_from_dict

A, B = "activesam", "segearth-ov3"


def config(out: Path, order: list[str], images: int, workers: int, corruption: str = "") -> object:
    return config_from_dict({
        "run": {"out": str(out), "device": "cpu", "limit": images, "chunk_size": images, "workers": workers,
                "threads": 1, "warmup_calls": 2},
        "backend": {"checkpoint": "builtin:demo"},
        "datasets": {"names": ["synthetic"], "options": {"synthetic": {"vocab_size": 120, "n_images": images, "size": 256}}},
        # a corruption makes the loader's workers busy (they corrupt ahead of the model)
        "corruptions": {"names": [corruption] if corruption else [], "severities": [3] if corruption else [],
                        "clean": not corruption},
        "methods": [{"name": n} for n in order],
        "report": {"auto": False},
    }, name="bench-timing-order")  # fmt: skip


def ratio(out: Path) -> float:
    res = pd.read_csv(out / "results.csv").set_index("label")
    return float(res.loc[A, "fps"] / res.loc[B, "fps"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=12)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--corruption", default="", help="evaluate under this corruption (severity 3) instead of clean")
    args = ap.parse_args()
    rotate = runner.rotated
    found: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            for mode in ("fixed", "rotated"):
                runner.rotated = rotate if mode == "rotated" else (lambda items, k: list(items))
                for order in ([A, B], [B, A]):
                    out = Path(tmp) / f"{mode}-{order[0]}-{rep}"
                    runner.run(config(out, order, args.images, args.workers, args.corruption))
                    found.setdefault((mode, f"{order[0]} listed first"), []).append(ratio(out))
        runner.rotated = rotate
    cond = f"{args.corruption} s3" if args.corruption else "clean"
    print(f"ActiveSAM / SegEarth-OV3 images/s, {args.images} synthetic images ({cond}), demo model, CPU, {args.workers} loader workers")
    print("| method order | order | ratio per repeat | mean |")
    print("|---|---|---|---|")
    for (mode, order), vals in found.items():
        print(f"| {mode} | {order} | {' / '.join(f'{v:.2f}' for v in vals)} | {statistics.mean(vals):.2f} |")


if __name__ == "__main__":
    main()
