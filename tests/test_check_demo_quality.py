"""scripts/check_demo_quality.py: the issue-8 targets are checked from a results table."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "check_demo_quality.py"


def _load():
    spec = importlib.util.spec_from_file_location("check_demo_quality", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _rows(miou: dict[str, list[float]], recall: float, fps: dict[str, float]) -> pd.DataFrame:
    rows = []
    for label, seq in miou.items():
        rows.append({"label": label, "corruption": "none", "severity": 0, "miou": seq[0], "fps": fps[label],
                     "active_recall": recall if label == "activesam" else float("nan"), "status": "complete"})
        for cor in ("gaussian_noise", "gaussian_blur"):
            for s, v in enumerate(seq[1:], start=1):
                rows.append({"label": label, "corruption": cor, "severity": s, "miou": v, "fps": fps[label],
                             "active_recall": float("nan"), "status": "complete"})
    return pd.DataFrame(rows)


def test_all_targets_met() -> None:
    mod = _load()
    df = _rows({"activesam": [0.7, 0.6, 0.5], "segearth-ov3": [0.72, 0.6, 0.4]}, 0.97,
               {"activesam": 3.0, "segearth-ov3": 1.0})
    verdicts = mod.check(df)
    assert all(ok for _, ok, _ in verdicts), verdicts
    assert len(verdicts) == 2 + 1 + 4 + 1  # two mIoU, recall, 2 methods x 2 corruptions, speed
    assert "activesam" in mod.table(df) and "0.700" in mod.table(df)


def test_each_target_can_fail() -> None:
    mod = _load()
    df = _rows({"activesam": [0.5, 0.6, 0.4], "segearth-ov3": [0.7, 0.6, 0.5]}, 0.9,
               {"activesam": 1.0, "segearth-ov3": 2.0})
    failed = {name for name, ok, _ in mod.check(df) if not ok}
    assert "clean mIoU >= 0.6 (activesam)" in failed
    assert "clean mIoU >= 0.6 (segearth-ov3)" not in failed
    assert "active-set recall >= 95% (clean)" in failed
    assert "mIoU non-increasing with severity (activesam, gaussian_noise)" in failed
    assert "mIoU non-increasing with severity (segearth-ov3, gaussian_blur)" not in failed
    assert "ActiveSAM faster than SegEarth-OV3" in failed


def test_missing_run_dir_is_one_line(tmp_path, capsys) -> None:
    mod = _load()
    assert mod.main(["--run-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "results.csv" in err and "\n" not in err
