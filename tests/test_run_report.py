"""`ovss-bench run` ends with the report when the whole plan is finished (and not when told not to)."""

from __future__ import annotations

from pathlib import Path

from harness_plugins.helpers import PLUGIN, write_config

from robustbench_ovss.cli import main


def test_finished_run_writes_report(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cfg = write_config(tmp_path / "c.toml", out, n=4, severities=[1], report_auto=True)
    assert main(["run", str(cfg), "--plugins", PLUGIN]) == 0
    md = (out / "report" / "report.md").read_text()
    assert "toy-color" in md and "toy-const" in md


def test_report_auto_off(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cfg = write_config(tmp_path / "c.toml", out, n=4, severities=[1])
    assert main(["run", str(cfg), "--plugins", PLUGIN]) == 0
    assert (out / "results.csv").is_file() and not (out / "report").exists()
