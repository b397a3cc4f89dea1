"""In-process runs of the harness on the toy plugins: run directory, resume, force, failures, shards,
worker counts, corruption cache, saved predictions."""

from __future__ import annotations

import json
import sys
import tomllib
import types

import numpy as np
import pandas as pd
import pytest

from harness_plugins import toy
from harness_plugins.helpers import PLUGIN, assert_same_results, unit_records, write_config
from robustbench_ovss.cli import main

DESIGN_COLUMNS = [
    "method", "method_version", "params_hash", "backend", "checkpoint", "dataset", "corruption", "severity",
    "seed", "n_images", "limit", "status", "miou", "aacc", "macc", "fps", "model_seconds", "setup_seconds",
    "peak_mem_mb", "device", "dtype", "versions", "git_sha", "config_hash", "unit_key", "started_at", "finished_at",
    "label", "active_size", "active_recall", "prompts_decoded",
]  # fmt: skip
N_UNITS = 2 * (1 + 2 * 2)  # methods x (clean + 2 corruptions x 2 severities)


@pytest.fixture(autouse=True)
def _reset_toy():
    toy.ToyColour.calls = toy.ToyConst.calls = 0
    toy.ToyColour.fail_enabled, toy.ToyColour.interrupt_at, toy.ToyColour.sigint_at = True, 0, 0
    yield
    toy.ToyColour.fail_enabled, toy.ToyColour.interrupt_at, toy.ToyColour.sigint_at = True, 0, 0


def run(cfg, *flags):
    return main(["run", str(cfg), "--plugins", PLUGIN, *flags])


def test_run_directory_contents(tmp_path):
    out = tmp_path / "run"
    assert run(write_config(tmp_path / "c.toml", out)) == 0
    res = pd.read_csv(out / "results.csv")
    assert set(DESIGN_COLUMNS) <= set(res.columns)
    assert len(res) == N_UNITS and (res["status"] == "complete").all()
    assert (res["n_images"] == 7).all() and res["unit_key"].is_unique
    clean = res[res["corruption"] == "none"]
    assert len(clean) == 2 and (clean["severity"] == 0).all() and (clean["seed"] == 0).all()
    colour = res[res["label"] == "toy-color"].set_index(["corruption", "severity"])
    assert colour.loc[("none", 0), "miou"] == 1.0  # colours separate the toy classes exactly
    assert colour.loc[("toy_noise", 3), "miou"] < colour.loc[("toy_noise", 1), "miou"] <= 1.0
    assert (colour["prompts_decoded"] == 4).all() and colour["active_recall"].between(0, 1).all()
    assert res[res["label"] == "toy-const"]["prompts_decoded"].isna().all()
    assert res["fps"].gt(0).all()
    assert (res["timed_images"] == res["n_images"]).all()  # every image timed; warm-up calls are extra
    assert res["pipeline_fps"].gt(0).all() and (res["pipeline_fps"] < res["fps"]).all()
    assert (res["pipeline_seconds"] >= res["model_seconds"] + res["data_seconds"]).all() and res["data_seconds"].gt(0).all()
    assert (res["device"] == "cpu").all() and (res["dtype"] == "fp32").all()
    assert res["peak_mem_mb"].isna().all() and res["peak_rss_mb"].gt(0).all()
    assert res["torch_version"].str.len().gt(0).all()

    pc = pd.read_csv(out / "per_class.csv")
    assert len(pc) == N_UNITS * 4 and set(pc["class_name"]) == {"background", "red", "green", "blue"}
    pi = pd.read_csv(out / "per_image.csv")
    assert len(pi) == N_UNITS * 7 and {"image_id", "pixel_acc", "miou", "active_size", "active_recall"} <= set(pi.columns)
    assert json.loads(pi[pi["label"] == "toy-color"]["active"].iloc[0])  # lists are JSON strings

    rec = json.loads(next((out / "units").glob("*.json")).read_text())
    conf = np.zeros(rec["conf"]["shape"], np.int64)
    for r, c, v in rec["conf"]["nz"]:
        conf[r, c] = v
    assert conf.sum() > 0 and len(rec["rows"]) == 7
    cfg = tomllib.loads((out / "config.toml").read_text())
    assert cfg["datasets"]["names"] == ["toy"] and cfg["run"]["chunk_size"] == 3
    man = json.loads((out / "manifest.json").read_text())
    assert man["datasets"]["toy"]["fingerprint"] and man["versions"]["torch"] and "git_sha" in man
    plan = json.loads((out / "plan.json").read_text())
    assert len(plan["units"]) == N_UNITS
    assert main(["collect", str(out)]) == 0


def test_resume_skips_finished_units_and_force_recomputes(tmp_path):
    out = tmp_path / "run"
    cfg = write_config(tmp_path / "c.toml", out)
    assert run(cfg) == 0
    first = unit_records(out)
    assert toy.ToyColour.calls == 5 * 7
    toy.ToyColour.calls = toy.ToyConst.calls = 0
    assert run(cfg) == 0
    assert toy.ToyColour.calls == 0 and toy.ToyConst.calls == 0
    assert run(cfg, "--force") == 0
    assert toy.ToyColour.calls == 5 * 7 and toy.ToyConst.calls == 5 * 7
    assert unit_records(out) == first


def test_failed_unit_then_rerun_retries_it(tmp_path, caplog):
    methods = [{"name": "toy-color", "params": {"fail_on": 4}}, {"name": "toy-const"}]
    out = tmp_path / "run"
    cfg = write_config(tmp_path / "c.toml", out, methods=methods, corruptions=[])
    assert run(cfg) == 1  # non-zero at the end, but the run went on
    res = pd.read_csv(out / "results.csv").set_index("label")
    assert res.loc["toy-color", "status"] == "failed" and res.loc["toy-const", "status"] == "complete"
    assert res.loc["toy-color", "failed_image"] == "toy_004"
    assert "RuntimeError: boom on image 4" in res.loc["toy-color", "error"]
    assert np.isnan(res.loc["toy-color", "miou"]) and res.loc["toy-color", "n_images"] == 4
    assert toy.ToyConst.calls == 7

    toy.ToyColour.fail_enabled = False
    toy.ToyColour.calls = toy.ToyConst.calls = 0
    assert run(cfg) == 0
    assert toy.ToyColour.calls == 3 and toy.ToyConst.calls == 0  # resumed at the failed image, images 4..6
    ref = tmp_path / "ref"
    assert run(write_config(tmp_path / "r.toml", ref, methods=methods, corruptions=[])) == 0
    assert_same_results(out, ref)


def test_contract_violation_fails_the_unit_naming_the_method(tmp_path):
    out = tmp_path / "run"
    cfg = write_config(tmp_path / "c.toml", out, methods=[{"name": "toy-color", "params": {"bad_output": True}}], corruptions=[])
    assert run(cfg) == 1
    res = pd.read_csv(out / "results.csv")
    assert res["status"].tolist() == ["failed"]
    assert "MethodOutputError" in res["error"][0] and "'toy-color'" in res["error"][0]


def test_interrupt_inside_a_chunk_resumes_to_identical_numbers(tmp_path):
    # toy-const runs first, so the Ctrl-C on toy-color's 5th call leaves the two units at different images
    methods = [{"name": "toy-const", "params": {"value": 1}}, {"name": "toy-color"}]
    out = tmp_path / "run"
    cfg = write_config(tmp_path / "c.toml", out, methods=methods, run={"checkpoint_images": 100})
    toy.ToyColour.interrupt_at = 5
    assert run(cfg) == 130
    assert not list((out / "units").glob("*.json"))
    toy.ToyColour.interrupt_at = 0
    toy.ToyColour.calls = toy.ToyConst.calls = 0
    assert run(cfg) == 0
    assert toy.ToyColour.calls == 5 * 7 - 4 and toy.ToyConst.calls == 5 * 7 - 5
    ref = tmp_path / "ref"
    assert run(write_config(tmp_path / "r.toml", ref, methods=methods)) == 0
    assert_same_results(out, ref)


def test_ctrl_c_finishes_the_prediction_and_resumes_at_a_chunk_end(tmp_path):
    # SIGINT during the last image of the first chunk: the prediction completes, the checkpoint holds
    # all 3 images with the chunk still open, and the rerun closes it without predicting again
    methods = [{"name": "toy-color"}]
    out = tmp_path / "run"
    cfg = write_config(tmp_path / "c.toml", out, methods=methods, corruptions=[], n=6)
    toy.ToyColour.sigint_at = 3
    assert run(cfg) == 130
    (state_file,) = (out / "chunks").glob("*/000000-000003.json")
    state = json.loads(state_file.read_text())
    assert state["status"] == "partial" and state["next"] == 3 and len(state["rows"]) == 3
    toy.ToyColour.sigint_at = 0
    toy.ToyColour.calls = 0
    assert run(cfg) == 0
    assert toy.ToyColour.calls == 3
    ref = tmp_path / "ref"
    assert run(write_config(tmp_path / "r.toml", ref, methods=methods, corruptions=[], n=6)) == 0
    assert_same_results(out, ref)


def test_two_shards_equal_the_unsharded_run(tmp_path):
    sharded, whole = tmp_path / "sharded", tmp_path / "whole"
    two = ["toy", "toy-b"]  # 7 + 4 images, 4 and 3 classes
    assert run(write_config(tmp_path / "a.toml", sharded, datasets=two), "--shard", "1/2") == 0
    assert len(list((sharded / "units").glob("*.json"))) < 2 * N_UNITS  # shard 2's chunks are still missing
    calls_1 = toy.ToyColour.calls
    assert 0 < calls_1 < 5 * 11
    assert run(write_config(tmp_path / "a.toml", sharded, datasets=two), "--shard", "2/2") == 0
    assert toy.ToyColour.calls == 5 * 11  # the shards split the images without overlap
    assert run(write_config(tmp_path / "b.toml", whole, datasets=two)) == 0
    assert_same_results(sharded, whole)
    res = pd.read_csv(whole / "results.csv")
    assert len(res) == 2 * N_UNITS and (res["status"] == "complete").all()
    pc = pd.read_csv(whole / "per_class.csv")
    assert set(pc.groupby("dataset")["class_id"].nunique().items()) == {("toy", 4), ("toy-b", 3)}


def test_worker_count_does_not_change_numbers(tmp_path):
    a, b = tmp_path / "w0", tmp_path / "w2"
    assert run(write_config(tmp_path / "a.toml", a, n=5, datasets=["toy", "toy-b"])) == 0
    assert run(write_config(tmp_path / "b.toml", b, n=5, datasets=["toy", "toy-b"]), "--workers", "2") == 0
    assert_same_results(a, b)


def test_warm_up_calls_are_extra_untimed_and_change_no_number(tmp_path):
    cold, warm = tmp_path / "cold", tmp_path / "warm"
    two = ["toy", "toy-b"]  # 7 + 4 images
    assert run(write_config(tmp_path / "a.toml", cold, datasets=two)) == 0
    toy.ToyColour.calls = 0
    assert run(write_config(tmp_path / "b.toml", warm, datasets=two, run={"warmup_calls": 2})) == 0
    assert toy.ToyColour.calls == 5 * 11 + 2 * 2  # every image once + 2 warm-up calls per dataset
    res = pd.read_csv(warm / "results.csv")
    assert (res["timed_images"] == res["n_images"]).all() and res["fps"].notna().all()
    a = pd.read_csv(cold / "results.csv").set_index(["label", "dataset", "corruption", "severity"]).sort_index()
    b = res.set_index(["label", "dataset", "corruption", "severity"]).sort_index()
    for col in ("miou", "aacc", "macc", "n_images", "unit_key"):
        pd.testing.assert_series_equal(a[col], b[col], check_exact=True)


def test_methods_take_turns_going_first(tmp_path):
    toy.ORDER.clear()
    assert run(write_config(tmp_path / "a.toml", tmp_path / "o", corruptions=[], n=6)) == 0
    pairs = [tuple(toy.ORDER[i:i + 2]) for i in range(0, len(toy.ORDER), 2)]
    assert pairs == [("toy-color", "toy-const"), ("toy-const", "toy-color")] * 3  # image k starts at method k mod 2


def test_corruption_cache_is_used_when_it_holds_the_image(tmp_path, monkeypatch):
    calls = []

    class FakeCache:
        def __init__(self, root, data_roots=None):
            self.root = root

        def get(self, dataset, image_id, corruption, severity, seed, fingerprint=None):
            calls.append((dataset, image_id, corruption, severity, seed))
            assert fingerprint == toy.ToyDataset(n=2).fingerprint
            if image_id == "toy_000":
                return np.zeros((32, 48, 3), np.uint8), None  # None: the label is unchanged
            return None

    mod = types.ModuleType("robustbench_ovss.corruptions.cache")
    mod.CorruptionCache = FakeCache
    monkeypatch.setitem(sys.modules, "robustbench_ovss.corruptions.cache", mod)
    out = tmp_path / "run"
    path = write_config(tmp_path / "c.toml", out, n=2, corruptions=["toy_noise"], severities=[1], clean=False)
    path.write_text(path.read_text().replace('clean = false', 'clean = false\ncache = "somewhere"'))
    assert run(path) == 0
    assert ("toy", "toy_000", "toy_noise", 1, 0) in calls
    pi = pd.read_csv(out / "per_image.csv")
    colour = pi[(pi["label"] == "toy-color")].set_index("image_id")
    assert colour.loc["toy_000", "active_size"] == 1  # the black cached image: background only
    assert colour.loc["toy_001", "active_size"] > 1  # corrupted on the fly


def test_save_preds(tmp_path):
    out = tmp_path / "run"
    assert run(write_config(tmp_path / "c.toml", out, corruptions=["toy_roll"], severities=[1]), "--save-preds", "2") == 0
    files = sorted(p.name for p in (out / "preds").glob("*/*.png"))
    raw = [f for f in files if not f.endswith(".overlay.png")]
    assert raw.count("toy_000.png") == 4 and raw.count("toy_001.png") == 4 and len(raw) == 8
    assert len(files) == 16  # and an overlay beside each raw label map
    from PIL import Image

    key = pd.read_csv(out / "results.csv").query("label == 'toy-const' and corruption == 'none'")["unit_key"].iloc[0]
    assert (np.asarray(Image.open(out / "preds" / key / "toy_000.png")) == 1).all()
    sample = np.asarray(Image.open(out / "samples" / "toy" / "toy_roll-s1-seed0" / "toy_001.png"))
    ov = np.asarray(Image.open(out / "preds" / key / "toy_000.overlay.png"))
    _, image, label = toy.ToyDataset(n=7)[0]
    h, w = label.shape
    # image | prediction | ground truth: the left panel is the image, the others are coloured over it
    assert ov.shape[0] == h and ov.shape[1] >= 3 * w and ov.ndim == 3
    assert (ov[:, :w] == image).all()
    pred_panel = ov[:, ov.shape[1] // 2 - w // 2: ov.shape[1] // 2 + w // 2]
    assert not (pred_panel == image[:, : pred_panel.shape[1]]).all()
    assert sample.shape == image.shape


def test_progress_modes(capsys):
    from robustbench_ovss.progress import Progress

    for tty in (True, False):
        p = Progress(3, prefix="[x] ", interval_s=0.0, tty=tty)
        p.advance(1, "toy none")
        p.line("chunk 0 done")
        p.advance(2)
        p.close()
        assert p.done == 3
    assert "chunk 0 done" in capsys.readouterr().err  # the rich bar's console writes to stderr


def test_device_accumulation_path_gives_the_same_counts(tmp_path, monkeypatch):
    """The accelerator code path (running sums as torch tensors on the device), exercised on the CPU."""
    from robustbench_ovss.runner.evaluate import Evaluator

    methods = [{"name": "toy-linear"}, {"name": "toy-color"}]
    host = tmp_path / "host"
    assert run(write_config(tmp_path / "a.toml", host, n=4, methods=methods, corruptions=["toy_noise"], severities=[2])) == 0
    orig = Evaluator.__init__

    def on_device(self, *a, **kw):
        orig(self, *a, **kw)
        self.on_host = False

    monkeypatch.setattr(Evaluator, "__init__", on_device)
    dev = tmp_path / "dev"
    assert run(write_config(tmp_path / "b.toml", dev, n=4, methods=methods, corruptions=["toy_noise"], severities=[2])) == 0
    assert_same_results(host, dev)


def test_bf16_runs_the_methods_under_autocast(tmp_path):
    """dtype = "bf16": the method's float maths runs in bf16, and the counts are those of that
    arithmetic, computed here directly on the dataset's images."""
    import torch

    from robustbench_ovss.metrics import confusion_matrix

    runs = {}
    for dtype in ("fp32", "bf16"):
        out = tmp_path / dtype
        cfg = write_config(tmp_path / f"{dtype}.toml", out, n=5, methods=[{"name": "toy-linear"}], corruptions=[],
                           run={"dtype": dtype})  # fmt: skip
        assert run(cfg) == 0
        (rec,) = [json.loads(p.read_text()) for p in (out / "units").glob("*.json")]
        runs[dtype] = rec
    assert {r["score_dtype"] for r in runs["bf16"]["rows"]} == {"torch.bfloat16"}
    assert {r["score_dtype"] for r in runs["fp32"]["rows"]} == {"torch.float32"}
    ds = toy.ToyDataset(n=5)
    w = toy.ToyLinear.weights(ds.num_classes)
    expected = {"fp32": np.zeros((4, 4), np.int64), "bf16": np.zeros((4, 4), np.int64)}
    for k in range(5):
        _, image, label = ds[k]
        x = torch.from_numpy(image).float().reshape(-1, 3) / 255.0
        for dtype in expected:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
                pred = torch.matmul(x, w).argmax(dim=1).reshape(label.shape)
            expected[dtype] += confusion_matrix(pred.numpy(), label, 4)
    from robustbench_ovss.state import decode_conf

    for dtype, rec in runs.items():
        assert (decode_conf(rec["conf"]) == expected[dtype]).all(), dtype
    assert not (expected["fp32"] == expected["bf16"]).all()  # the two arithmetics really differ here
