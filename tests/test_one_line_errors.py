"""Bad data, bad plugins and bad places give one line naming the file and what to do - in the main
process and in DataLoader workers alike; and what a run without a config means."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tomli_w
from PIL import Image

from harness_plugins.helpers import PLUGIN, write_config
from robustbench_ovss.cli import main
from robustbench_ovss.testing.fake_datasets import write_fake_dataset


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(lines) == 1, err
    assert all("Original Traceback" not in ln and "DataLoader worker" not in ln for ln in err.splitlines()), err
    return lines[0]


def voc_config(tmp_path: Path, data: Path, workers: int, cache: str = "", corruptions=()) -> Path:
    cfg = {
        "run": {"out": str(tmp_path / f"out{workers}"), "workers": workers, "warmup_calls": 0, "chunk_size": 10},
        "data": {"root": str(data)},
        "datasets": {"names": ["voc21"]},
        "corruptions": {"names": list(corruptions), "severities": [1], "cache": cache},
        "methods": [{"name": "toy-color"}],
        "report": {"reference": "toy-color", "auto": False},
    }
    p = tmp_path / f"voc{workers}.toml"
    p.write_text(tomli_w.dumps(cfg))
    return p


def both_worker_modes(tmp_path, capsys, data, **kw) -> str:
    lines = []
    for workers in (2, 0):
        assert main(["run", str(voc_config(tmp_path, data, workers, **kw)), "--plugins", PLUGIN]) == 2
        lines.append(error_line(capsys))
    assert lines[0] == lines[1].replace("out0", "out2")  # the same line whether a worker or the main process loaded it
    return lines[0]


def _first(root: Path, pattern: str) -> Path:
    return sorted(root.rglob(pattern))[0]


def test_truncated_jpeg(tmp_path, capsys):
    data = tmp_path / "data"
    root = write_fake_dataset("voc21", data, n_images=3)
    jpg = _first(root, "*.jpg")
    jpg.write_bytes(jpg.read_bytes()[: jpg.stat().st_size // 2])
    line = both_worker_modes(tmp_path, capsys, data)
    assert str(jpg) in line and "truncated" in line


def test_label_out_of_range_and_size_mismatch(tmp_path, capsys):
    data = tmp_path / "data"
    root = write_fake_dataset("voc21", data, n_images=3)
    lab = _first(root, "SegmentationClass/*.png")
    arr = np.asarray(Image.open(lab)).copy()
    arr[2, 2] = 50  # voc21 has 21 classes and ignore 255
    Image.fromarray(arr.astype(np.uint8), mode="L").save(lab)
    line = both_worker_modes(tmp_path, capsys, data)
    assert "50" in line and "voc21" in line
    Image.fromarray(np.zeros((5, 7), np.uint8), mode="L").save(lab)
    for out in tmp_path.glob("out*"):  # the data changed: a new run directory (the old one refuses, rightly)
        shutil.rmtree(out)
    line = both_worker_modes(tmp_path, capsys, data)
    assert "label is 7x5 but its image" in line and str(lab) in line


def test_tampered_cache_png_names_a_complete_regeneration_command(tmp_path, capsys):
    data = tmp_path / "data"
    write_fake_dataset("voc21", data, n_images=2)
    cache = tmp_path / "cache"
    assert main(["corrupt", "--dataset", "voc21", "--corruptions", "gaussian_noise", "--severities", "1",
                 "--data-root", str(data), "--out", str(cache)]) == 0  # fmt: skip
    png = _first(cache, "*.png")
    raw = bytearray(png.read_bytes())
    raw[-20] ^= 0xFF  # damaged in place: same size, other bytes
    png.write_bytes(bytes(raw))
    capsys.readouterr()
    line = both_worker_modes(tmp_path, capsys, data, cache=str(cache), corruptions=["gaussian_noise"])
    assert "sha256 differs" in line and "--data-root" in line and str(cache) in line
    # the command it suggests repairs the cache: the damaged file is written again, not counted as cached
    assert main(["corrupt", "--dataset", "voc21", "--corruptions", "gaussian_noise", "--severities", "1",
                 "--data-root", str(data / "VOC2012"), "--out", str(cache)]) == 0  # fmt: skip
    assert "1 images written, 1 already cached" in capsys.readouterr().err
    assert main(["run", str(voc_config(tmp_path, data, 0, cache=str(cache), corruptions=["gaussian_noise"])),
                 "--plugins", PLUGIN]) == 0  # fmt: skip


def test_plugin_that_raises_on_import_names_module_and_line(tmp_path, capsys, monkeypatch):
    (tmp_path / "bad_plugin_xyz.py").write_text("import os\n\nraise RuntimeError('half-written plugin')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["run", str(write_config(tmp_path / "c.toml", tmp_path / "o")), "--plugins", "bad_plugin_xyz"]) == 2
    line = error_line(capsys)
    assert "bad_plugin_xyz" in line and "RuntimeError: half-written plugin" in line
    assert f"{tmp_path / 'bad_plugin_xyz.py'}:3" in line


def test_unwritable_corrupt_out_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["corrupt", "--dataset", "voc-sample", "--corruptions", "fog", "--severities", "1",
                 "--out", str(blocker / "cache")]) == 2  # fmt: skip
    assert str(blocker) in error_line(capsys)


def test_data_root_may_be_the_dataset_folder_itself(tmp_path):
    data = tmp_path / "data"
    root = write_fake_dataset("voc21", data, n_images=2)
    for where in (data, root):  # /data and /data/VOC2012, as `data check --root` accepts both
        cfg = voc_config(tmp_path, where, 0)
        assert main(["run", str(cfg), "--plugins", PLUGIN, "--out", str(tmp_path / where.name)]) == 0


def test_run_without_config_says_which_config_and_limit_apply(tmp_path, caplog, monkeypatch):
    import logging

    from robustbench_ovss.runner import command

    seen = {}
    monkeypatch.setattr(command, "run", lambda cfg, **kw: seen.setdefault("cfg", cfg) and pytest.skip("not run"))
    caplog.set_level(logging.INFO)
    with pytest.raises(pytest.skip.Exception):
        main(["run", "--datasets", "voc-sample", "--out", str(tmp_path / "o")])
    text = caplog.text
    assert "the packaged demo" in text and "at most 2 image(s) per dataset" in text
    assert "pass --limit 0 to evaluate the whole split" in text
    assert seen["cfg"].run.limit == 2
