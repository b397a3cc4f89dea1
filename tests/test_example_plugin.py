"""The documented example plugin (examples/ovss_bench_plugin_example) runs on the shared backend."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
import tomli_w

from robustbench_ovss.cli import main


def test_example_plugin_runs_beside_a_builtin(repo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(repo_root / "examples" / "ovss_bench_plugin_example" / "src"))
    out = tmp_path / "run"
    cfg = {
        "run": {"out": str(out), "workers": 0, "threads": 1, "warmup_calls": 0},
        "backend": {"checkpoint": "builtin:tiny-random"},
        "datasets": {"names": ["voc-sample"]},
        "corruptions": {"names": ["gaussian_noise"], "severities": [1]},
        "methods": [{"name": "sam3-semantic", "params": {"bucket_size": 8}}, {"name": "segearth-ov3", "params": {"bucket_size": 8}}],
        "report": {"auto": False},
    }
    path = tmp_path / "c.toml"
    path.write_text(tomli_w.dumps(cfg))
    assert main(["run", str(path), "--plugins", "ovss_bench_plugin_example.semantic"]) == 0
    res = pd.read_csv(out / "results.csv")
    plug = res[res["method"] == "sam3-semantic"]
    assert len(plug) == 2 and set(plug["status"]) == {"complete"}
    assert (plug["prompts_decoded"] == 21).all()  # one prompt per VOC class alias
    assert plug["miou"].between(0, 1).all()
    sys.modules.pop("ovss_bench_plugin_example.semantic", None)
