"""CI regression gate: the packaged demo, rerun here, against the committed baseline.

The demo exercises the whole real path (tokenizer, SAM 3 backend, preview, buckets, fusion, MABC,
corruptions, store, report) on the shipped checkpoint, so a change that breaks a method's maths shows
as an mIoU drop. Speed is gated only on counts that do not vary with the machine (prompts decoded);
wall-clock ratios over two images per cell are too noisy for a pass/fail gate.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from robustbench_ovss.cli import main

BASELINE = Path(__file__).resolve().parent.parent / "reports" / "baselines" / "demo.csv"


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "run"
    assert main(["run", "--out", str(out)]) == 0
    return out


@pytest.mark.slow
def test_demo_matches_baseline(demo_run: Path) -> None:
    assert BASELINE.is_file(), "run scripts/update_demo_baseline.py and commit reports/baselines/demo.csv"
    assert main(["compare", str(BASELINE), str(demo_run / "results.csv"), "--max-miou-drop", "0.5"]) == 0


@pytest.mark.slow
def test_demo_decodes_no_more_prompts_than_baseline(demo_run: Path) -> None:
    key = ["label", "dataset", "corruption", "severity", "seed"]
    base = pd.read_csv(BASELINE).set_index(key)["prompts_decoded"]
    new = pd.read_csv(demo_run / "results.csv").set_index(key)["prompts_decoded"]
    joined = pd.concat({"base": base, "new": new}, axis=1).dropna()
    assert len(joined) == len(base.dropna()), "every baseline cell must be in the new run"
    worse = joined[joined["new"] > joined["base"] + 1e-9]
    assert worse.empty, f"more prompts decoded than the baseline:\n{worse}"


@pytest.mark.slow
def test_demo_ends_with_report(demo_run: Path) -> None:
    md = (demo_run / "report" / "report.md").read_text()
    assert "activesam" in md and "segearth-ov3" in md
    assert any((demo_run / "report" / "plots").glob("*.png"))


@pytest.mark.slow
def test_demo_times_every_unit(demo_run: Path) -> None:
    """Warm-up calls are extra: even the 2-image clean units get a model and a pipeline speed."""
    res = pd.read_csv(demo_run / "results.csv")
    assert (res["timed_images"] == res["n_images"]).all()
    assert res["fps"].gt(0).all() and res["pipeline_fps"].gt(0).all()
    assert (res["pipeline_fps"] < res["fps"]).all()


@pytest.mark.slow
def test_demo_manifest_records_how_the_backend_computes(demo_run: Path) -> None:
    """The demo runs on the CPU in fp32: Meta's numerics are not declared by the demo model, and the split
    pixel decoder runs (round-off only, so it is recorded, not part of the identity)."""
    import json

    backend = json.loads((demo_run / "manifest.json").read_text())["backend"]
    assert backend["numerics"] == "transformers" and backend["pixel_decoder"] == "split"
    assert "split" not in backend["identity"]
