"""Regenerate the CI accuracy baseline from the packaged demo: reports/baselines/demo.csv.

    .venv/bin/python scripts/update_demo_baseline.py

Run it after a deliberate change of the demo's numbers (a new demo model, a method fix) and commit
the CSV with a message that says why the numbers moved. tests/test_demo_baseline.py reruns the demo
and gates on it with `ovss-bench compare`.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pandas as pd

from robustbench_ovss.cli import main

REPO = Path(__file__).resolve().parent.parent
BASELINE = REPO / "reports" / "baselines" / "demo.csv"
# what the gate needs; timestamps, versions and hashes would only make the diff noisy
COLUMNS = [
    "label", "method", "method_version", "params_hash", "dataset", "corruption", "severity", "seed",
    "n_images", "limit", "status", "miou", "aacc", "macc", "fps", "prompts_decoded", "active_size",
    "active_recall", "checkpoint",
]  # fmt: skip


def trim(results_csv: Path) -> pd.DataFrame:
    df = pd.read_csv(results_csv)
    keep = [c for c in COLUMNS if c in df.columns]
    return df[keep].sort_values(["label", "dataset", "corruption", "severity", "seed"]).reset_index(drop=True)


def main_(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "demo"
        code = main(["run", "--out", str(out), *argv])
        if code != 0:
            print(f"demo run failed with exit code {code}; baseline not written", file=sys.stderr)
            return code
        BASELINE.parent.mkdir(parents=True, exist_ok=True)
        trim(out / "results.csv").to_csv(BASELINE, index=False, float_format="%.6g")
    print(f"wrote {BASELINE.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main_(sys.argv[1:]))
