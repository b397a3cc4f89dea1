"""Reports that do not mislead: few-image datasets flagged, rPC of a near-zero clean score left out,
intervals only where there are images enough, one seed said as such, runs over other image sets never
averaged, setup time shown once per dataset."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from harness_plugins.helpers import PLUGIN, write_config
from robustbench_ovss.cli import main
from robustbench_ovss.report import ReportError, build_report, tables
from robustbench_ovss.report.loading import load_runs
from robustbench_ovss.report.plots import seeds_phrase


def run(cfg, *flags):
    return main(["run", str(cfg), "--plugins", PLUGIN, *flags])


def test_single_image_dataset_is_flagged_and_gets_no_interval(tmp_path):
    out = tmp_path / "one"
    assert run(write_config(tmp_path / "c.toml", out, n=1, corruptions=["toy_noise"], severities=[1, 3])) == 0
    md = build_report([out], plots=False).read_text()
    assert "**1 image(s) per unit**" in md
    assert "n/a (1 image(s): an interval needs at least 10)" in md
    assert "One seed, so no spread is shown" in md
    assert "setup s (once per dataset)" in md


def test_rpc_is_left_out_below_a_near_zero_clean_score():
    res = pd.DataFrame({
        "label": ["m"] * 3, "dataset": ["d"] * 3, "corruption": ["none", "fog", "fog"], "severity": [0, 1, 3],
        "seed": [0, 0, 0], "status": ["ok"] * 3, "miou": [0.01, 0.02, 0.03], "unit_key": ["a", "b", "c"],
    })  # fmt: skip
    values, na = tables.robustness_per_seed(res, "m")
    assert "rpc" not in set(values["metric"])
    assert na.query("metric == 'rpc'")["reason"].str.contains("below 5%").all()
    assert np.isnan(tables.rpc_by_corruption(res)["rpc"]).all()
    res.loc[0, "miou"] = 0.4
    assert tables.rpc_by_corruption(res)["rpc"].tolist() == pytest.approx([0.025 / 0.4])


def test_seed_wording_of_figures():
    one = pd.DataFrame({"label": ["m", "m"], "dataset": ["d", "d"], "corruption": ["fog", "fog"], "severity": [1, 3],
                        "seed": [0, 0], "miou": [0.4, 0.3]})  # fmt: skip
    assert seeds_phrase(one) == "one seed"
    two = pd.concat([one, one.assign(seed=1)])
    assert seeds_phrase(two) == "mean ± std over seeds"


def test_class_drops_list_only_real_drops():
    pc = pd.DataFrame({
        "unit_key": ["c", "c", "x", "x"], "dataset": ["d"] * 4, "label": ["m"] * 4, "corruption": ["none", "none", "fog", "fog"],
        "class_id": [0, 1, 0, 1], "class_name": ["a", "b", "a", "b"], "iou": [0.0, 0.5, 0.0, 0.2],
    })  # fmt: skip
    res = pd.DataFrame({"unit_key": ["c", "x"], "status": ["ok", "ok"], "dataset": ["d", "d"], "label": ["m", "m"], "miou": [0.3, 0.1],
                        "corruption": ["none", "fog"]})  # fmt: skip
    drops = tables.class_drops(pc, res)
    assert drops["class_name"].tolist() == ["b"]  # class a went from 0.00 to 0.00: no drop


def test_runs_over_other_image_sets_are_not_averaged(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert run(write_config(tmp_path / "a.toml", a, corruptions=["toy_noise"], severities=[1], run={"limit": 1})) == 0
    assert run(write_config(tmp_path / "b.toml", b, corruptions=["toy_noise"], severities=[1], run={"limit": 2})) == 0
    with pytest.raises(ReportError, match=r"evaluate different image sets .*\(limit 1 vs 2\); report them separately"):
        load_runs([a, b])
    assert main(["report", str(a), str(b), "-o", str(tmp_path / "rep")]) == 2
    # the same image set in two directories (e.g. shards written apart) still merges
    c = tmp_path / "c"
    assert run(write_config(tmp_path / "c.toml", c, corruptions=["toy_noise"], severities=[1], run={"limit": 2})) == 0
    assert len(load_runs([b, c]).results) == len(load_runs([b]).results)
