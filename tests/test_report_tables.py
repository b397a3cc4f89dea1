"""Report table functions against a direct pandas computation on a synthetic results table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from robustbench_ovss.report import tables
from robustbench_ovss.report.loading import ReportError, dedupe_results, load_run, load_runs, missing_units, normalize
from robustbench_ovss.testing.fake_runs import make_synthetic_run

REF = "segearth-ov3"
FAILED = ("sam3", "ade20k", "fog", 3, 1)
DROPPED = ("sam3", "voc21", "gaussian_noise", 5, 1)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_synthetic_run(tmp_path_factory.mktemp("rt") / "run", failed=[FAILED], drop=[DROPPED])


@pytest.fixture(scope="module")
def data(run):
    return load_run(run)


def direct_robustness(res: pd.DataFrame, ref: str) -> pd.DataFrame:
    """mPC, rPC, CE_c, mCE per (label, dataset, seed) written out in plain pandas."""
    ok = res[res["status"] == "ok"]
    clean = ok[ok["corruption"] == "none"].groupby(["label", "dataset"])["miou"].mean()
    corr = ok[ok["corruption"] != "none"]
    out = corr.groupby(["label", "dataset", "seed"])["miou"].mean().rename("mpc").to_frame()
    out["rpc"] = [m / clean[(lab, d)] for (lab, d, _), m in out["mpc"].items()]
    refc = corr[corr["label"] == ref][["dataset", "corruption", "severity", "seed", "miou"]]
    j = corr.merge(refc, on=["dataset", "corruption", "severity", "seed"], suffixes=("", "_ref"))
    j["err"], j["err_ref"] = 1 - j["miou"], 1 - j["miou_ref"]
    ce = j.groupby(["label", "dataset", "seed", "corruption"])[["err", "err_ref"]].sum()
    ce = (ce["err"] / ce["err_ref"]).rename("ce")
    out["mce"] = ce.groupby(["label", "dataset", "seed"]).mean()
    return out.reset_index(), ce.reset_index()


def test_robustness_equals_direct_pandas(data):
    values, na = tables.robustness_per_seed(data.results, REF)
    summary = tables.over_seeds(values).set_index(["label", "dataset", "metric"])
    per_seed, ce = direct_robustness(data.results, REF)
    assert na.empty
    for metric in ("mpc", "rpc", "mce"):
        exp = per_seed.groupby(["label", "dataset"])[metric].agg(["mean", "std"])
        for (lab, d), row in exp.iterrows():
            got = summary.loc[(lab, d, metric)]
            assert got["mean"] == pytest.approx(row["mean"], rel=1e-12)
            assert got["std"] == pytest.approx(row["std"], rel=1e-9)
            assert got["n_seeds"] == 2
    exp_ce = ce.groupby(["label", "dataset", "corruption"])["ce"].mean()
    for (lab, d, c), v in exp_ce.items():
        assert summary.loc[(lab, d, f"ce:{c}")]["mean"] == pytest.approx(v, rel=1e-12)
    assert summary.loc[(REF, "voc21", "mce")]["mean"] == pytest.approx(1.0)


def test_per_corruption_mean_over_severities(data):
    values, _ = tables.robustness_per_seed(data.results, REF)
    ok = data.results[(data.results["status"] == "ok") & (data.results["corruption"] == "fog")]
    exp = ok.groupby(["label", "dataset", "seed"])["miou"].mean().groupby(["label", "dataset"]).mean()
    got = tables.over_seeds(values).set_index(["label", "dataset", "metric"])
    for (lab, d), v in exp.items():
        assert got.loc[(lab, d, "miou:fog")]["mean"] == pytest.approx(v, rel=1e-12)


def test_failed_unit_left_out_and_coverage_flags_it(data):
    cov = tables.grid_coverage(data.results).set_index(["label", "dataset"])
    assert tuple(cov.loc[("sam3", "ade20k")]) == (11, 12)
    assert tuple(cov.loc[("sam3", "voc21")]) == (11, 12)
    assert tuple(cov.loc[("activesam", "ade20k")]) == (12, 12)
    fail = tables.failures(data.results)
    assert list(fail[["label", "dataset", "corruption", "severity", "seed"]].itertuples(index=False, name=None)) == [FAILED]
    assert "synthetic failure" in fail["error"].iloc[0]


def test_missing_reference_gives_reasons():
    res = pd.DataFrame({"label": ["a", "a", "a"], "dataset": ["d"] * 3, "corruption": ["none", "fog", "fog"],
                        "severity": [0, 1, 2], "seed": [0, 0, 0], "miou": [0.5, 0.4, 0.3], "status": ["ok"] * 3})
    values, na = tables.robustness_per_seed(res, "missing-ref")
    assert "mce" not in set(values["metric"])
    assert set(na["metric"]) == {"ce:fog", "mce"}
    assert "'missing-ref' has no results" in na["reason"].iloc[0]
    mpc = values.set_index("metric").loc["mpc", "value"]
    assert mpc == pytest.approx(0.35)


def test_reference_lacking_a_severity_is_na():
    res = pd.DataFrame({"label": ["a", "a", "r"], "dataset": ["d"] * 3, "corruption": ["fog"] * 3,
                        "severity": [1, 2, 1], "seed": [0] * 3, "miou": [0.4, 0.3, 0.5], "status": ["ok"] * 3})
    _, na = tables.robustness_per_seed(res, "r")
    reason = na[(na["label"] == "a") & (na["metric"] == "ce:fog")]["reason"].iloc[0]
    assert "severity 2" in reason


def test_speed_equals_direct_pandas(data):
    sp = tables.speed_table(data.results, REF).set_index(["label", "dataset", "device"])
    ok = data.results[(data.results["status"] == "ok") & (data.results["corruption"] == "none")]
    timed = (ok["fps"] * ok["model_seconds"]).groupby([ok["label"], ok["dataset"]]).sum()
    secs = ok.groupby(["label", "dataset"])["model_seconds"].sum()
    ips = timed / secs
    for (lab, d), v in ips.items():
        row = sp.loc[(lab, d, "cpu")]
        assert row["scope"] == "clean"
        assert row["images_per_s"] == pytest.approx(v, rel=1e-12)
        assert row["s_per_image"] == pytest.approx(1 / v, rel=1e-12)
        assert row["speedup"] == pytest.approx(v / ips[(REF, d)], rel=1e-12)


def test_speed_never_mixes_devices():
    rows = []
    for dev, f in (("cpu", 1.0), ("cuda:0", 10.0)):
        for lab, base in (("a", 2.0), ("r", 1.0)):
            rows.append(dict(label=lab, dataset="d", corruption="none", severity=0, seed=0, miou=0.5, status="ok",
                             fps=base * f, model_seconds=10.0, device=dev, dtype="fp32", setup_seconds=1.0))
    rows.append(dict(label="a", dataset="d", corruption="none", severity=0, seed=0, miou=0.5, status="ok",
                     fps=99.0, model_seconds=10.0, device="cpu+cuda:0", dtype="fp32", setup_seconds=1.0))
    sp = tables.speed_table(pd.DataFrame(rows), "r").set_index(["label", "device"])
    assert set(sp.index) == {("a", "cpu"), ("r", "cpu"), ("a", "cuda:0"), ("r", "cuda:0")}
    assert sp.loc[("a", "cpu"), "images_per_s"] == pytest.approx(2.0)
    assert sp.loc[("a", "cuda:0"), "images_per_s"] == pytest.approx(20.0)
    assert sp.loc[("a", "cpu"), "speedup"] == pytest.approx(2.0)
    assert sp.loc[("a", "cuda:0"), "speedup"] == pytest.approx(2.0)
    assert len(tables.mixed_device_rows(pd.DataFrame(rows))) == 1


def test_speed_reference_on_other_device_is_na():
    rows = [dict(label="a", dataset="d", corruption="none", severity=0, seed=0, miou=0.5, status="ok", fps=2.0,
                 model_seconds=5.0, device="cuda:0"),
            dict(label="r", dataset="d", corruption="none", severity=0, seed=0, miou=0.5, status="ok", fps=1.0,
                 model_seconds=5.0, device="cpu")]
    sp = tables.speed_table(pd.DataFrame(rows), "r").set_index("label")
    assert np.isnan(sp.loc["a", "speedup"])
    assert "cuda:0" in sp.loc["a", "speedup_note"]


def test_bootstrap_interval_agrees_with_scipy_and_closed_forms():
    from scipy import stats

    x = np.random.default_rng(3).beta(2, 3, size=60)
    lo, hi = tables.bootstrap_mean_ci(x, n_boot=20000, seed=1)
    ref = stats.bootstrap((x,), np.mean, n_resamples=20000, method="percentile", confidence_level=0.95,
                          random_state=np.random.default_rng(2)).confidence_interval
    assert lo == pytest.approx(ref.low, abs=0.004) and hi == pytest.approx(ref.high, abs=0.004)
    # 0/1 data: a resampled mean is Binomial(n, p) / n, so the percentiles are binomial quantiles
    n, k = 80, 20
    y = np.r_[np.ones(k), np.zeros(n - k)]
    lo, hi = tables.bootstrap_mean_ci(y, n_boot=20000, seed=0)
    assert lo == pytest.approx(stats.binom.ppf(0.025, n, k / n) / n, abs=1.5 / n)
    assert hi == pytest.approx(stats.binom.ppf(0.975, n, k / n) / n, abs=1.5 / n)
    assert tables.bootstrap_mean_ci(np.full(7, 0.3)) == pytest.approx((0.3, 0.3))  # no spread, no interval width
    assert all(np.isnan(tables.bootstrap_mean_ci(np.array([np.nan]))))


def test_clean_image_ci_per_method_and_dataset(data):
    ci = tables.clean_image_ci(data.per_image, data.results).set_index(["label", "dataset"])
    pi = data.per_image[data.per_image["corruption"] == "none"]
    for (lab, d), g in pi.groupby(["label", "dataset"]):
        x = g["miou"].to_numpy(float)
        row = ci.loc[(lab, d)]
        assert row["n_images"] == len(x) == 12
        assert row["mean"] == pytest.approx(x.mean(), rel=1e-12)
        assert row["ci_low"] <= row["mean"] <= row["ci_high"] and row["note"] == ""
    few = tables.clean_image_ci(pi.groupby(["label", "dataset"]).head(3), data.results)
    assert few["ci_low"].isna().all() and few["note"].str.contains("at least 10").all()


def test_class_drops_equal_direct_pandas(data):
    drops = tables.class_drops(data.per_class, data.results, top_k=3)
    ok_keys = set(data.results.loc[data.results["status"] == "ok", "unit_key"])
    pc = data.per_class[data.per_class["unit_key"].isin(ok_keys)]
    for (d, lab), g in drops.groupby(["dataset", "label"]):
        assert len(g) == 3
        sub = pc[(pc["dataset"] == d) & (pc["label"] == lab)]
        clean = sub[sub["corruption"] == "none"].groupby("class_id")["iou"].mean()
        corr = sub[sub["corruption"] != "none"].groupby("class_id")["iou"].mean()
        exp = (clean - corr).sort_values(ascending=False)
        assert list(g["class_id"]) == list(exp.index[:3])
        assert list(g["drop"]) == pytest.approx(list(exp.iloc[:3]), rel=1e-12)


def test_active_set_table_equals_direct_pandas(data):
    act = tables.active_set_table(data.results)
    assert set(act["label"]) == {"activesam"}
    ok = data.results[(data.results["status"] == "ok") & (data.results["label"] == "activesam")]
    exp = ok.groupby(["dataset", "corruption", "severity"])[["active_size", "active_recall"]].mean()
    got = act.set_index(["dataset", "corruption", "severity"])
    for k, row in exp.iterrows():
        assert got.loc[k, "active_size"] == pytest.approx(row["active_size"], rel=1e-12)
        assert got.loc[k, "active_recall"] == pytest.approx(row["active_recall"], rel=1e-12)
    assert got.loc[("voc21", "none", 0), "units"] == 1
    assert got.loc[("voc21", "fog", 5), "units"] == 2


def test_missing_units_from_config_grid(data):
    miss, notes = missing_units(data)
    assert notes == []
    assert list(miss[["label", "dataset", "corruption", "severity", "seed"]].itertuples(index=False, name=None)) == [DROPPED]


def test_missing_units_from_plan_json(tmp_path):
    import json

    run = make_synthetic_run(tmp_path / "run", methods=("activesam",), datasets=("voc21",), corruptions=("fog",),
                             severities=(1,), seeds=(0,))
    res = pd.read_csv(run / "results.csv")
    units = [{"unit_key": k, "label": "activesam", "dataset": "voc21", "corruption": c, "severity": s, "seed": 0}
             for k, c, s in zip(res["unit_key"], res["corruption"], res["severity"])]
    units.append({"unit_key": "zzz", "label": "activesam", "dataset": "voc21", "corruption": "fog", "severity": 5, "seed": 0})
    (run / "plan.json").write_text(json.dumps({"units": units}))
    miss, _ = missing_units(load_run(run))
    assert list(miss[["corruption", "severity"]].itertuples(index=False, name=None)) == [("fog", 5)]


def test_status_complete_means_ok_and_label_defaults_to_method():
    df = normalize(pd.DataFrame({"method": ["m"], "dataset": ["d"], "miou": [0.5], "n_images": [3],
                                 "status": ["complete"]}))
    assert df.loc[0, "status"] == "ok"
    assert df.loc[0, "label"] == "m"
    assert (df.loc[0, "corruption"], df.loc[0, "severity"], df.loc[0, "seed"]) == ("none", 0, 0)


def test_dedupe_identical_and_conflicting(tmp_path):
    a = make_synthetic_run(tmp_path / "a", methods=("activesam",), datasets=("voc21",), tag="x")
    b = make_synthetic_run(tmp_path / "b", methods=("activesam",), datasets=("voc21",), tag="x")
    merged = load_runs([a, b])
    single = load_run(a)
    assert len(merged.results) == len(single.results)
    assert len(merged.per_class) == len(single.per_class)
    assert any("identical results; counted once" in n for n in merged.notes)
    res = pd.read_csv(b / "results.csv")
    res.loc[3, "miou"] += 0.01
    res.to_csv(b / "results.csv", index=False)
    with pytest.raises(ReportError) as exc:
        load_runs([a, b])
    assert str(a) in str(exc.value) and str(b) in str(exc.value)


def test_dedupe_prefers_finished_over_failed():
    res = pd.DataFrame({"unit_key": ["k", "k"], "label": ["a", "a"], "method": ["a", "a"], "dataset": ["d", "d"],
                        "corruption": ["none", "none"], "severity": [0, 0], "seed": [0, 0], "status": ["failed", "ok"],
                        "miou": [np.nan, 0.5], "run_dir": ["r1", "r2"]})
    kept, notes = dedupe_results(res)
    assert list(kept["run_dir"]) == ["r2"]
    assert "replaces failed" in notes[0]


def test_unreadable_run_dir_is_a_user_error(tmp_path):
    with pytest.raises(ReportError, match="not a directory"):
        load_run(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportError, match="results.csv not found"):
        load_run(tmp_path / "empty")
