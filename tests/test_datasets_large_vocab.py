"""Large-vocabulary (ade847, pc459) and real adverse-condition (ACDC) benchmarks on fake trees (issue #15).

The label contract widens: a dataset's own ignore index (65535 for the detectron2-prepared uint16
TIFs) and class ids above 255, through loading, corruption of the pair, the confusion matrix and
per_class.csv.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from harness_plugins.helpers import PLUGIN, write_config
from robustbench_ovss.cli import main
from robustbench_ovss.corruptions import corrupt_pair
from robustbench_ovss.datasets.check import check_dataset
from robustbench_ovss.testing.fake_datasets import write_fake_dataset
from robustbench_ovss.datasets.vocabulary import packaged_vocabulary
from robustbench_ovss.errors import ConfigError, DataError
from robustbench_ovss.methods.defaults import reference_confidence
from robustbench_ovss.registry import DATASETS


def test_ade847_reads_uint16_tifs_with_65535_ignore_and_first_names(tmp_path: Path) -> None:
    root = write_fake_dataset("ade847", tmp_path, n_images=2, size=(20, 30))
    label = np.full((20, 30), 800, np.uint16)
    label[:5] = 65535
    label[5:8] = 3
    Image.fromarray(label).save(root / "annotations_detectron2/validation/ADE_frame_00000001.tif")
    ds = DATASETS.get("ade847")(root=root)
    assert ds.num_classes == 847 and ds.ignore_index == 65535 and len(ds) == 2
    assert ds.classes[4] == ["road"] and ds.classes[1] == ["building"]  # first names: one prompt per class
    _, image, lab = ds[0]
    assert lab.dtype == np.uint16 and np.array_equal(lab, label)
    full = DATASETS.get("ade847")(root=root, synonyms=True)
    assert full.classes[4] == ["road", "route"] and len(full.classes) == 847
    with pytest.raises(ConfigError, match="synonyms"):
        DATASETS.get("ade847")(root=root, synonyms="yes")
    Image.fromarray(np.full((20, 30), 900, np.uint16)).save(root / "annotations_detectron2/validation/ADE_frame_00000002.tif")
    with pytest.raises(DataError, match="900"):
        ds[1]


def test_pc459_lists_the_labelled_images_only(tmp_path: Path) -> None:
    root = write_fake_dataset("pc459", tmp_path, n_images=3)
    assert len(list((root / "JPEGImages").glob("*.jpg"))) == 4  # VOC2010 holds more than the split
    ds = DATASETS.get("pc459")(root=root)
    assert [s[0] for s in ds.samples] == ["2008_000000", "2008_000001", "2008_000002"]
    assert ds.num_classes == 459 and ds.ignore_index == 65535


def test_acdc_conditions_use_cityscapes_prompts_and_defaults(tmp_path: Path) -> None:
    for cond in ("fog", "night", "rain", "snow"):
        root = write_fake_dataset(f"acdc-{cond}", tmp_path, n_images=2)
        ds = DATASETS.get(f"acdc-{cond}")(root=root)
        assert ds.classes == packaged_vocabulary("cityscapes") and ds.num_classes == 19
        assert ds.samples[0][1].name.endswith("_rgb_anon.png") and ds.samples[0][2].name.endswith("_gt_labelTrainIds.png")
        assert reference_confidence(f"acdc-{cond}") == reference_confidence("cityscapes")
    assert reference_confidence("ade847") == reference_confidence("ade20k")
    assert reference_confidence("pc459") == reference_confidence("context59")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert reference_confidence("my-own-set") == 0.5
        reference_confidence("synthetic")
    assert len(seen) == 1 and "my-own-set" in str(seen[0].message) and "0.5" in str(seen[0].message)


def test_data_check_names_the_preparation_step(tmp_path: Path, capsys) -> None:
    root = write_fake_dataset("ade847", tmp_path, n_images=2)
    rep = check_dataset("ade847", tmp_path)
    assert rep.labels_ok == 2 and {k for k, _ in rep.problems} == {"count"}
    assert rep.ignored_pixels > 0 and rep.class_pixels.size == 847
    (root / "annotations_detectron2/validation/ADE_frame_00000002.tif").unlink()
    assert main(["data", "check", "ade847", "--root", str(tmp_path), "--fix-hint"]) == 1
    out = capsys.readouterr().out
    assert "missing" in out and "prepare_ade20k_full.py" in out and "65535" in out
    write_fake_dataset("acdc-fog", tmp_path, n_images=2)
    assert main(["data", "check", "acdc-fog", "--root", str(tmp_path), "--fix-hint"]) == 1  # 2 of 100 images
    assert "gt_trainval.zip" in capsys.readouterr().out


def test_class_800_survives_corruption_confusion_and_per_class(tmp_path: Path) -> None:
    """A constant predictor of class 800 on ade847: its IoU per unit equals a direct count."""
    root = write_fake_dataset("ade847", tmp_path / "data", n_images=2, size=(40, 48), ignore_fraction=0.2)
    for i, f in enumerate(sorted((root / "annotations_detectron2/validation").glob("*.tif"))):
        lab = np.asarray(Image.open(f)).copy()
        lab[10:30, 5 + 10 * i:40] = 800
        Image.fromarray(lab).save(f)
    img0 = np.asarray(Image.open(next((root / "images_detectron2/validation").glob("*.jpg"))))
    lab0 = np.asarray(Image.open(sorted((root / "annotations_detectron2/validation").glob("*.tif"))[0]))
    _, warped = corrupt_pair(img0, lab0, "elastic_transform", 2, 7)
    assert warped.dtype == np.uint16 and set(np.unique(warped)) <= set(np.unique(lab0))  # nearest: no new ids
    out = tmp_path / "run"
    cfg = write_config(tmp_path / "c.toml", out, datasets=["ade847"], corruptions=["elastic_transform"], severities=[2],
                       methods=[{"name": "toy-const", "params": {"value": 800}}])
    text = cfg.read_text().replace('reference = "toy-color"', 'reference = "toy-const"')
    cfg.write_text(text + f'\n[data]\nroot = "{tmp_path / "data"}"\n')
    assert main(["run", str(cfg), "--plugins", PLUGIN]) == 0
    pc = pd.read_csv(out / "per_class.csv")
    clean = pc[(pc["corruption"] == "none") & (pc["class_id"] == 800)].iloc[0]
    labels = [np.asarray(Image.open(f)) for f in sorted((root / "annotations_detectron2/validation").glob("*.tif"))]
    valid = sum(int((lab != 65535).sum()) for lab in labels)
    hits = sum(int((lab == 800).sum()) for lab in labels)
    assert clean["iou"] == pytest.approx(hits / valid)  # prediction 800 on every evaluated pixel
    assert len(pc[pc["corruption"] == "none"]) == 847
    res = pd.read_csv(out / "results.csv")
    assert (res["status"] == "complete").all() and len(res) == 2


def test_clean_only_datasets_get_no_corrupted_units(tmp_path: Path) -> None:
    from robustbench_ovss.config import load_config

    cfg = load_config("acdc")
    assert set(cfg.corruptions.clean_only) == {"acdc-fog", "acdc-night", "acdc-rain", "acdc-snow"}
    write_fake_dataset("cityscapes", tmp_path, n_images=1)
    write_fake_dataset("acdc-fog", tmp_path, n_images=1)
    out = tmp_path / "run"
    path = write_config(tmp_path / "c.toml", out, datasets=["toy", "acdc-fog"], corruptions=["toy_noise"], severities=[1],
                        methods=[{"name": "toy-const", "params": {"value": 0}}])
    text = path.read_text().replace('reference = "toy-color"', 'reference = "toy-const"')
    text = text.replace("[corruptions]\n", '[corruptions]\nclean_only = ["acdc-fog"]\n')
    path.write_text(text + f'\n[data]\nroot = "{tmp_path}"\n')
    assert main(["run", str(path), "--plugins", PLUGIN]) == 0
    res = pd.read_csv(out / "results.csv")
    assert sorted(map(tuple, res[["dataset", "corruption"]].to_numpy())) == [
        ("acdc-fog", "none"), ("toy", "none"), ("toy", "toy_noise")]


def test_dark_zurich_layout(tmp_path: Path) -> None:
    root = write_fake_dataset("dark-zurich", tmp_path, n_images=2)
    ds = DATASETS.get("dark-zurich")(root=root)
    assert len(ds) == 2 and ds.num_classes == 19 and ds.samples[0][1].parent.parent.name == "night"
    assert reference_confidence("dark-zurich") == reference_confidence("cityscapes")


def test_corruption_cache_keeps_uint16_labels_above_255(tmp_path: Path) -> None:
    from robustbench_ovss.corruptions.cache import CorruptionCache

    root = write_fake_dataset("ade847", tmp_path / "data", n_images=2, size=(30, 40))
    f = sorted((root / "annotations_detectron2/validation").glob("*.tif"))[0]
    lab = np.asarray(Image.open(f)).copy()
    lab[5:25, 5:35] = 800
    Image.fromarray(lab).save(f)
    assert main(["corrupt", "--dataset", "ade847", "--corruptions", "elastic_transform", "--severities", "2",
                 "--data-root", str(tmp_path / "data"), "--out", str(tmp_path / "cache")]) == 0
    ds = DATASETS.get("ade847")(root=root)
    image_id, image, label = ds[0]
    from robustbench_ovss.corruptions import image_seed

    hit = CorruptionCache(tmp_path / "cache").get("ade847", image_id, "elastic_transform", 2, 0, fingerprint=ds.fingerprint)
    assert hit is not None and hit[1] is not None
    want_img, want_lab = corrupt_pair(image, label, "elastic_transform", 2, image_seed(0, "ade847", image_id, "elastic_transform", 2))
    assert hit[1].dtype == np.uint16 and np.array_equal(hit[1], want_lab) and 800 in hit[1]
    assert np.array_equal(hit[0], want_img)
