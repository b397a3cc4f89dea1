"""Helpers of the harness tests: configs for the toy plugins, reading and comparing run directories."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import tomli_w

TESTS_DIR = Path(__file__).resolve().parent.parent
REPO = TESTS_DIR.parent
PLUGIN = "harness_plugins.toy"


def write_config(path: Path, out: Path, **over: Any) -> Path:
    """A toy config (toy dataset of ``n`` images, two corruptions x two severities, two methods).

    Keyword overrides: ``n`` (toy images), ``options`` (more toy dataset options, e.g. h, w), ``datasets`` (names), ``run`` (dict merged into [run]), ``methods`` (list of tables),
    ``corruptions`` (list), ``severities``, ``seeds``, ``clean``, ``report_auto``.
    """
    cfg = {
        "run": {"out": str(out), "chunk_size": 3, "workers": 0, "warmup_calls": 0, **over.get("run", {})},
        "datasets": {"names": over.get("datasets", ["toy"]),
                     "options": {"toy": {"n": over.get("n", 7), **over.get("options", {})}}},
        "corruptions": {
            "names": over.get("corruptions", ["toy_noise", "toy_roll"]),
            "severities": over.get("severities", [1, 3]),
            "clean": over.get("clean", True),
        },
        "methods": over.get("methods", [{"name": "toy-color"}, {"name": "toy-const", "params": {"value": 1}}]),
        # reports cost seconds of plotting; only tests about the automatic report turn it on
        "report": {"reference": "toy-color", "auto": over.get("report_auto", False)},
    }
    if "seeds" in over:
        cfg["run"]["seeds"] = over["seeds"]
    path.write_text(tomli_w.dumps(cfg))
    return path


def subprocess_env(extra_path: list[str] | None = None) -> dict[str, str]:
    """Environment for ``ovss-bench`` subprocesses: tests/ (and extra dirs) on PYTHONPATH, no hub."""
    env = dict(os.environ)
    parts = [*(extra_path or []), str(TESTS_DIR), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in parts if p)
    env["HF_HUB_OFFLINE"] = "1"
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    return env


def bench_cmd() -> list[str]:
    """``ovss-bench`` as a command that works without the console script on PATH."""
    return [sys.executable, "-m", "robustbench_ovss.cli"]


def unit_records(run_dir: Path) -> dict[str, dict[str, Any]]:
    """unit_key -> the reproducible part of its unit file (status, conf, metrics, rows, n_images)."""
    out = {}
    for p in sorted((Path(run_dir) / "units").glob("*.json")):
        rec = json.loads(p.read_text())
        out[rec["unit_key"]] = {
            "status": rec["status"], "conf": rec["conf"], "n_images": rec["n_images"], "rows": rec["rows"],
            "metrics": json.dumps(rec["metrics"]), "chunks": rec["chunks"], "unit": rec["unit"],
        }
    return out


ACCURACY_COLUMNS = ["unit_key", "label", "dataset", "corruption", "severity", "seed", "n_images", "status",
                    "miou", "aacc", "macc", "active_size", "active_recall", "prompts_decoded"]


def tables(run_dir: Path) -> dict[str, Any]:
    """The reproducible columns of results.csv, and per_class.csv / per_image.csv, sorted by key."""
    import pandas as pd

    res = pd.read_csv(Path(run_dir) / "results.csv")[ACCURACY_COLUMNS].sort_values("unit_key").reset_index(drop=True)
    pc = pd.read_csv(Path(run_dir) / "per_class.csv").sort_values(["unit_key", "class_id"]).reset_index(drop=True)
    pi = pd.read_csv(Path(run_dir) / "per_image.csv").sort_values(["unit_key", "index"]).reset_index(drop=True)
    return {"results": res, "per_class": pc, "per_image": pi}


def assert_same_results(a: Path, b: Path) -> None:
    """Unit files and CSV tables of two runs agree on everything that must be reproducible."""
    import pandas.testing as pdt

    ua, ub = unit_records(a), unit_records(b)
    assert sorted(ua) == sorted(ub)
    for k in ua:
        ra, rb = dict(ua[k]), dict(ub[k])
        ra.pop("chunks"), rb.pop("chunks")
        assert ra == rb, f"unit {k} differs"
    ta, tb = tables(a), tables(b)
    for name in ta:
        pdt.assert_frame_equal(ta[name], tb[name], check_exact=True)
