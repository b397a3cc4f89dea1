"""`ovss-bench report` end to end on synthetic run directories: sections, numbers, plots, edge cases."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from robustbench_ovss.cli import main
from robustbench_ovss.report import ReportError, build_report
from robustbench_ovss.testing.fake_runs import make_synthetic_run

REF = "segearth-ov3"
FAILED = ("sam3", "ade20k", "fog", 3, 1)
DROPPED = ("sam3", "voc21", "gaussian_noise", 5, 1)
SECTIONS = ["## Provenance", "## Accuracy and robustness", "## Clean mIoU per image: bootstrap confidence intervals",
            "## Speed", "## ActiveSAM active set", "## Largest per-class IoU drops under corruption",
            "## Published numbers (ActiveSAM paper)", "## Failures", "## Missing units", "## Figures", "## Gallery"]


def md_tables(md: str, heading: str) -> list[pd.DataFrame]:
    """The markdown tables between ``heading`` (an exact line) and the next heading of its level or higher."""
    lines = md.splitlines()
    start = lines.index(heading)
    level = len(heading) - len(heading.lstrip("#"))
    out, block = [], []
    for line in lines[start + 1:]:
        if line.startswith("#") and len(line) - len(line.lstrip("#")) <= level:
            break
        if line.startswith("|"):
            block.append(line)
        elif block:
            out.append(block)
            block = []
    if block:
        out.append(block)
    frames = []
    for b in out:
        cells = [[c.strip() for c in row.strip("|").split(" | ")] for row in b]
        frames.append(pd.DataFrame(cells[2:], columns=cells[0]))
    return frames


def pm(mean: float, std: float) -> str:
    return f"{100 * mean:.2f} ± {100 * std:.2f}"


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """One synthetic run (3 methods, 2 datasets, 2 corruptions x 3 severities, 2 seeds, a failed and a
    dropped unit, sample PNGs) and its report with figures."""
    run = make_synthetic_run(tmp_path_factory.mktemp("rb") / "run", failed=[FAILED], drop=[DROPPED], gallery=True)
    path = build_report([run])
    return run, path, path.read_text()


def test_all_sections_present(full):
    _, path, md = full
    assert path.name == "report.md" and path.parent == full[0] / "report"
    pos = [md.index(s + "\n") for s in SECTIONS]
    assert pos == sorted(pos)
    for ds in ("voc21", "ade20k"):
        assert f"### {ds}\n" in md
    assert "`sam3` is vanilla SAM 3" in md
    for key in ("config hash", "git sha", "versions", "device", "backend / checkpoint", "datasets (root, fingerprint)",
                "seeds", "--limit"):
        assert f"| {key} |" in md


def test_robustness_numbers_equal_direct_pandas(full):
    run, _, md = full
    res = pd.read_csv(run / "results.csv")
    ok = res[res["status"] == "ok"]
    clean = ok[ok["corruption"] == "none"].set_index(["label", "dataset"])["miou"]
    corr = ok[ok["corruption"] != "none"]
    mpc = corr.groupby(["label", "dataset", "seed"])["miou"].mean()
    rpc = pd.Series([v / clean[(lab, d)] for (lab, d, _), v in mpc.items()], index=mpc.index)
    ref = corr[corr["label"] == REF][["dataset", "corruption", "severity", "seed", "miou"]]
    j = corr.merge(ref, on=["dataset", "corruption", "severity", "seed"], suffixes=("", "_ref"))
    j = j.assign(e=1 - j["miou"], er=1 - j["miou_ref"])
    ce = j.groupby(["label", "dataset", "seed", "corruption"])[["e", "er"]].sum()
    ce = ce["e"] / ce["er"]
    mce = ce.groupby(["label", "dataset", "seed"]).mean()
    for ds in ("voc21", "ade20k"):
        main_t, ce_t = md_tables(md, f"### {ds}")[:2]
        main_t = main_t.set_index("method")
        ce_t = ce_t.set_index("method")
        for lab in ("activesam", "sam3", "segearth-ov3"):
            row = main_t.loc[lab]
            assert row["clean mIoU"] == f"{100 * clean[(lab, ds)]:.2f}"
            for name, s in (("mPC", mpc), ("rPC", rpc), ("mCE", mce)):
                v = s.loc[(lab, ds)]
                assert row[name].rstrip("†") == pm(v.mean(), v.std()), (ds, lab, name)
            fog = corr[(corr["label"] == lab) & (corr["dataset"] == ds) & (corr["corruption"] == "fog")]
            fog_seed = fog.groupby("seed")["miou"].mean()
            assert row["fog"] == pm(fog_seed.mean(), fog_seed.std())
            for c in ("fog", "gaussian_noise"):
                v = ce.loc[(lab, ds)].xs(c, level="corruption")
                assert ce_t.loc[lab, c] == pm(v.mean(), v.std())
        # sam3 misses a cell on both datasets (one failed, one dropped): flagged
        assert main_t.loc["sam3", "mPC"].endswith("†")
        assert not main_t.loc["activesam", "mPC"].endswith("†")


def test_speed_numbers_equal_direct_pandas(full):
    run, _, md = full
    res = pd.read_csv(run / "results.csv")
    c = res[(res["status"] == "ok") & (res["corruption"] == "none")]
    ips = (c["fps"] * c["model_seconds"]).groupby([c["label"], c["dataset"]]).sum() / c.groupby(["label", "dataset"])["model_seconds"].sum()
    pipe = c.groupby(["label", "dataset"])["timed_images"].sum() / c.groupby(["label", "dataset"])["pipeline_seconds"].sum()
    t = md_tables(md, "## Speed")[0].set_index(["dataset", "method"])
    for (lab, ds), v in ips.items():
        row = t.loc[(ds, lab)]
        assert row["device"] == "cpu" and row["scope"] == "clean"
        assert row["images/s (model)"] == f"{v:.4g}"
        assert row["model s/image"] == f"{1 / v:.4g}"
        assert row[f"speed-up vs {REF}"] == f"{v / ips[(REF, ds)]:.2f}×"
        assert row["pipeline images/s"] == f"{pipe[(lab, ds)]:.4g}" and row["text"] == "cached"
        assert row["pipeline speed-up"] == f"{pipe[(lab, ds)] / pipe[(REF, ds)]:.2f}×"


def test_bootstrap_ci_in_report(full):
    run, _, md = full
    pi = pd.read_csv(run / "per_image.csv")
    t = md_tables(md, "## Clean mIoU per image: bootstrap confidence intervals")[0].set_index(["dataset", "method"])
    g = pi[(pi["corruption"] == "none") & (pi["label"] == "activesam") & (pi["dataset"] == "voc21")]["miou"].to_numpy()
    idx = np.random.default_rng(0).integers(0, g.size, size=(1000, g.size))
    lo, hi = np.percentile(g[idx].mean(axis=1), [2.5, 97.5])
    row = t.loc[("voc21", "activesam")]
    assert row["mean per-image mIoU (%)"] == f"{100 * g.mean():.2f}"
    assert row["95% CI (%)"] == f"[{100 * lo:.2f}, {100 * hi:.2f}]"


def test_active_set_failures_missing_and_drops(full):
    run, _, md = full
    act = md_tables(md, "### activesam")[0]
    assert set(act["corruption"]) == {"none", "fog", "gaussian_noise"}
    res = pd.read_csv(run / "results.csv")
    a = res[(res["label"] == "activesam") & (res["dataset"] == "ade20k") & (res["corruption"] == "fog") & (res["severity"] == 5)]
    row = act[(act["dataset"] == "ade20k") & (act["corruption"] == "fog") & (act["severity"] == "5")].iloc[0]
    assert row["active-set size"] == f"{a['active_size'].mean():.2f}"
    assert row["recall (%)"] == f"{100 * a['active_recall'].mean():.2f}"
    fail = md_tables(md, "## Failures")[0]
    assert fail.iloc[0][["method", "dataset", "corruption", "severity", "seed"]].tolist() == [str(x) for x in FAILED]
    assert "synthetic failure" in fail.iloc[0]["error"]
    miss = md_tables(md, "## Missing units")[0]
    assert miss[["method", "dataset", "corruption", "severity", "seed"]].values.tolist() == [[str(x) for x in DROPPED]]
    drops = md_tables(md, "### voc21 / activesam")[0]
    assert len(drops) == 5 and drops["drop (pts)"].astype(float).is_monotonic_decreasing


def test_plots_written_and_valid(full):
    run, _, md = full
    plots = run / "report" / "plots"
    for name in ("miou_vs_severity.png", "rpc_heatmap.png", "speed_accuracy.png", "active_set.png"):
        p = plots / name
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert p.stat().st_size > 20_000, name
        with Image.open(p) as im:
            assert min(im.size) > 300
        assert f"](plots/{name})" in md
    assert '<img src="../samples/voc21_fog_s1_img_000.png" width="160"' in md
    assert (run / "report" / "tables" / "speed.csv").is_file()


def test_no_gallery_and_partial_run(tmp_path):
    run = make_synthetic_run(tmp_path / "run", methods=("activesam", "segearth-ov3"), datasets=("voc21",),
                             seeds=(0,), drop=[("activesam", "voc21", "fog", 5, 0), ("activesam", "voc21", "fog", 3, 0)])
    md = build_report([run], plots=False).read_text()
    assert "Skipped: no `samples/` or `preds/` PNGs" in md
    miss = md_tables(md, "## Missing units")[0]
    assert miss[["corruption", "severity"]].values.tolist() == [["fog", "3"], ["fog", "5"]]
    t = md_tables(md, "### voc21")[0].set_index("method")
    res = pd.read_csv(run / "results.csv")
    got = res[(res["label"] == "activesam") & (res["corruption"] != "none")]["miou"].mean()
    assert t.loc["activesam", "mPC"] == f"{100 * got:.2f}†"  # what finished is still reported


def test_merged_runs_and_duplicates(tmp_path):
    a = make_synthetic_run(tmp_path / "a", methods=("activesam",), datasets=("voc21",), tag="a")
    b = make_synthetic_run(tmp_path / "b", methods=("segearth-ov3",), datasets=("voc21",), tag="b", rng_seed=1)
    shutil.copytree(b, tmp_path / "b_copy")
    out = tmp_path / "merged"
    md = build_report([a, b, tmp_path / "b_copy"], out_dir=out, plots=False).read_text()
    assert out / "report.md"
    t = md_tables(md, "### voc21")[0].set_index("method")
    assert set(t.index) == {"activesam", "segearth-ov3"}
    assert t.loc["segearth-ov3", "mCE"] == "100.00 ± 0.00"
    assert "identical results; counted once" in md
    assert "## Missing units\n\nNone" in md
    for d in (a, b):
        assert f"### {d}" in md
    res = pd.read_csv(tmp_path / "b_copy" / "results.csv")
    res.loc[res["corruption"] == "fog", "miou"] += 0.05
    res.to_csv(tmp_path / "b_copy" / "results.csv", index=False)
    with pytest.raises(ReportError, match="different results in"):
        build_report([a, b, tmp_path / "b_copy"], out_dir=out, plots=False)


def test_missing_reference_na_and_strict(tmp_path, capsys):
    run = make_synthetic_run(tmp_path / "run", methods=("activesam", "sam3"), datasets=("voc21",), seeds=(0,))
    md = build_report([run], plots=False).read_text()
    t = md_tables(md, "### voc21")[0].set_index("method")
    assert t.loc["activesam", "mCE"] == "n/a"
    assert f"CE n/a for activesam: reference method '{REF}' has no results in this run" in md
    assert "speed-up n/a for activesam" in md
    rc = main(["report", str(run), "--strict", "-o", str(tmp_path / "strict")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "--strict" in err and REF in err and str(run) in err
    assert not (tmp_path / "strict" / "report.md").exists()


def test_reference_missing_on_one_dataset(tmp_path):
    drop = [("segearth-ov3", "ade20k", c, s, 0) for c, s in (("none", 0), ("fog", 1), ("fog", 3), ("fog", 5))]
    run = make_synthetic_run(tmp_path / "run", methods=("activesam", "segearth-ov3"), corruptions=("fog",), seeds=(0,),
                             drop=drop)
    md = build_report([run], plots=False).read_text()
    assert md_tables(md, "### ade20k")[0].set_index("method").loc["activesam", "mCE"] == "n/a"
    assert md_tables(md, "### voc21")[0].set_index("method").loc["activesam", "mCE"] != "n/a"
    assert "CE n/a for activesam: reference 'segearth-ov3' has no finished fog unit on ade20k" in md
    with pytest.raises(ReportError, match="CE n/a for activesam on ade20k"):
        build_report([run], strict=True, plots=False)


def test_strict_rejects_missing_units(tmp_path):
    run = make_synthetic_run(tmp_path / "run", datasets=("voc21",), seeds=(0,), drop=[("sam3", "voc21", "fog", 1, 0)])
    with pytest.raises(ReportError, match="missing"):
        build_report([run], strict=True, plots=False)


def test_cli_prints_report_path(tmp_path, capsys):
    run = make_synthetic_run(tmp_path / "run", methods=("activesam", "segearth-ov3"), datasets=("voc21",), seeds=(0,))
    assert main(["report", str(run)]) == 0
    out = capsys.readouterr().out.strip()
    assert out == str(run / "report" / "report.md")


def test_mixed_devices_shown_separately(tmp_path):
    a = make_synthetic_run(tmp_path / "a", methods=("activesam", "segearth-ov3"), datasets=("voc21",), seeds=(0,), tag="a")
    b = make_synthetic_run(tmp_path / "b", methods=("activesam", "segearth-ov3"), datasets=("voc21",), seeds=(0,), tag="b",
                           device="cuda:0 (NVIDIA H100)", rng_seed=3)
    md = build_report([a, b], out_dir=tmp_path / "out", plots=False).read_text()
    t = md_tables(md, "## Speed")[0]
    assert sorted(set(t["device"])) == ["cpu", "cuda:0 (NVIDIA H100)"]
    assert (t["units"] == "1").all()  # one clean unit per method and device: nothing pooled
    for dev, run in (("cpu", a), ("cuda:0 (NVIDIA H100)", b)):
        res = pd.read_csv(run / "results.csv")
        c = res[res["corruption"] == "none"].set_index("label")
        row = t[(t["device"] == dev) & (t["method"] == "activesam")].iloc[0]
        ips = c.loc["activesam", "fps"] * c.loc["activesam", "model_seconds"] / c.loc["activesam", "model_seconds"]
        ref = c.loc[REF, "fps"]
        assert row["images/s (model)"] == f"{ips:.4g}"
        assert row[f"speed-up vs {REF}"] == f"{ips / ref:.2f}×"


def test_published_numbers_beside_measured(full):
    run, _, md = full
    res = pd.read_csv(run / "results.csv")
    t1 = md_tables(md, "### Table 1: clean mIoU (%)")[0].set_index(["dataset", "method"])
    assert t1.loc[("voc21", "activesam"), "published"] == "83.8"
    assert t1.loc[("ade20k", "segearth-ov3"), "published"] == "37.6"
    assert t1.loc[("ade20k", "sam3"), "published"] == "31.8"
    m = res[(res["label"] == "activesam") & (res["dataset"] == "voc21") & (res["corruption"] == "none")]["miou"].iloc[0]
    assert t1.loc[("voc21", "activesam"), "measured"] == f"{100 * m:.2f}"
    t2 = md_tables(md, "### Table 2: mIoU (%) at severity 5")[0].set_index(["dataset", "corruption", "method"])
    assert set(t2.index.get_level_values("method")) == {"activesam", "segearth-ov3"}  # the paper has no SAM 3 row there
    assert t2.loc[("ade20k", "fog", "activesam"), "published"] == "36.63"
    assert t2.loc[("voc21", "gaussian_noise", "segearth-ov3"), "published"] == "60.25"
    t3 = md_tables(md, "### Table 3: speed")[0].set_index(["dataset", "method"])
    assert t3.loc[("ade20k", "activesam"), "published FPS (RTX 5090; whole test loop)"] == "1.92"
    assert t3.loc[("ade20k", "segearth-ov3"), "protocol (measured)"].startswith("model-only predict, text cached")
    assert t3.loc[("ade20k", "activesam"), "published speed-up"] == f"{1.92 / 0.35:.2f}×"
    assert "voc21" not in set(t3.index.get_level_values("dataset"))  # Table 3 has no VOC column


@pytest.mark.parametrize("kind", ["limit", "other_dataset"])
def test_published_numbers_only_when_protocol_matches(tmp_path, kind):
    kw = {"limit": 10} if kind == "limit" else {"datasets": ("voc-sample",)}
    run = make_synthetic_run(tmp_path / "run", seeds=(0,), **kw)
    md = build_report([run], plots=False).read_text()
    assert "No unit of this run matches a published protocol" in md
    assert "### Table 1" not in md and "### Table 2" not in md and "### Table 3" not in md
    assert ("--limit" in md.split("## Published numbers")[1].split("##")[0]) == (kind == "limit")


TOY_CONFIG = """
[run]
seeds = [0, 1]
chunk_size = 3
workers = 0
warmup_calls = 1
[datasets]
names = ["toy"]
[corruptions]
names = ["toy_noise"]
severities = [1, 3]
[[methods]]
name = "toy-color"
[[methods]]
name = "toy-const"
[report]
reference = "toy-const"
"""


@pytest.mark.slow
def test_harness_shards_into_one_run_dir(tmp_path, monkeypatch, repo_root):
    """Two shards of the real runner write one run directory; the report re-collects it from units/."""
    monkeypatch.syspath_prepend(str(repo_root / "tests"))
    cfg = tmp_path / "toy.toml"
    cfg.write_text(TOY_CONFIG)
    run = tmp_path / "run"
    args = ["run", str(cfg), "--plugins", "harness_plugins.toy", "--out", str(run)]
    assert main([*args, "--shard", "1/2"]) == 0
    (run / "results.csv").unlink()  # the report must rebuild it from the unit files
    md = build_report([run], plots=False).read_text()
    miss = md_tables(md, "## Missing units")[0]
    assert 0 < len(miss) <= 10  # units whose chunks are split between the shards wait for shard 2
    assert main([*args, "--shard", "2/2"]) == 0
    md = build_report([run], plots=False).read_text()
    assert "## Missing units\n\nNone" in md
    res = pd.read_csv(run / "results.csv")
    assert set(res["status"]) == {"complete"}
    t = md_tables(md, "### toy")[0].set_index("method")
    c = res[res["corruption"] != "none"]
    v = c[c["label"] == "toy-color"].groupby("seed")["miou"].mean()
    assert t.loc["toy-color", "mPC"] == pm(v.mean(), v.std())
    assert t.loc["toy-const", "mCE"] == "100.00 ± 0.00"
