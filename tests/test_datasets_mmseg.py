"""The eight mmseg-layout loaders on tiny fake trees: discovery, order, label rules, errors, fingerprint."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from robustbench_ovss.datasets.mmseg import reduce_zero_label
from robustbench_ovss.testing.fake_datasets import fake_ids, write_fake_dataset, write_label
from robustbench_ovss.errors import ConfigError, DataError
from robustbench_ovss.registry import DATASETS

ALL = ["voc21", "voc20", "context60", "context59", "coco_object", "coco_stuff", "cityscapes", "ade20k"]
EXPECTED = {  # name: (root, num classes, bg_idx, prob_thd, split size)
    "voc21": ("VOC2012", 21, 0, 0.4, 1449),
    "voc20": ("VOC2012", 20, None, 0.0, 1449),
    "context60": ("VOC2010", 60, 0, 0.1, 5105),
    "context59": ("VOC2010", 59, None, 0.0, 5105),
    "coco_object": ("COCOObject", 81, 0, 0.4, 5000),
    "coco_stuff": ("COCOStuff", 171, None, 0.0, 5000),
    "cityscapes": ("CityScapes", 19, None, 0.0, 500),
    "ade20k": ("ADE20K", 150, None, 0.0, 2000),
}


def make(name: str, tmp_path: Path, **kw):
    root = write_fake_dataset(name, tmp_path, **kw)
    return DATASETS.get(name)(root=root), root


@pytest.mark.parametrize("name", ALL)
def test_contract_and_defaults(name: str, tmp_path: Path) -> None:
    ds, root = make(name, tmp_path, n_images=3, size=(20, 28))
    droot, ncls, bg, thd, size = EXPECTED[name]
    cls = DATASETS.get(name)
    assert cls.name == name and cls.default_root == droot and cls.split_size == size
    assert root == tmp_path / droot
    assert len(ds) == 3 and ds.num_classes == ncls and len(ds.classes) == ncls
    assert ds.bg_idx == bg and ds.prob_thd == thd and ds.ignore_index == 255
    image_id, image, label = ds[0]
    assert isinstance(image_id, str)
    assert image.dtype == np.uint8 and image.shape == (20, 28, 3)
    assert label.dtype == np.uint8 and label.shape == (20, 28)
    vals = set(np.unique(label).tolist())
    assert vals <= set(range(ncls)) | {255}
    assert ds[-1][0] == ds[2][0]
    with pytest.raises(IndexError):
        ds[3]


@pytest.mark.parametrize("name", ["voc21", "context60"])
def test_split_list_order_is_kept(name: str, tmp_path: Path) -> None:
    ds, _ = make(name, tmp_path, n_images=4)
    assert [ds[k][0] for k in range(4)] == sorted(fake_ids(name, 4), reverse=True)  # the list's order


def test_scanned_layouts_sorted_recursive_and_suffix_exact(tmp_path: Path) -> None:
    ds, root = make("cityscapes", tmp_path, n_images=5)
    ids = [s[0] for s in ds.samples]
    assert ids == sorted(fake_ids("cityscapes", 5)) and "/" in ids[0]
    # other gtFine products and hidden files next to the real ones are not picked up
    city = root / "gtFine/val/frankfurt"
    write_label(city / "frankfurt_000000_000019_gtFine_labelIds.png", np.full((24, 32), 33, np.uint8))
    (root / "leftImg8bit/val/frankfurt/._frankfurt_000000_000019_leftImg8bit.png").write_bytes(b"junk")
    ds2 = DATASETS.get("cityscapes")(root=root)
    assert [s[0] for s in ds2.samples] == ids


def test_coco_ids_sorted(tmp_path: Path) -> None:
    ds, _ = make("coco_stuff", tmp_path, n_images=3)
    assert [s[0] for s in ds.samples] == ["000000000000", "000000000001", "000000000002"]
    assert ds.samples[0][2].name == "000000000000_labelTrainIds.png"


def _one_label(name: str, tmp_path: Path, raw: np.ndarray) -> np.ndarray:
    """Build a 1-image tree of ``name`` whose label holds ``raw``; return the loaded label."""
    root = write_fake_dataset(name, tmp_path, n_images=1, size=raw.shape)
    cls = DATASETS.get(name)
    image_id = fake_ids(name, 1)[0]
    write_label(root / cls.layout.ann_dir / f"{image_id}{cls.layout.seg_suffix}", raw, palette=name.startswith("voc"))
    return cls(root=root)[0][2]


def test_ade20k_reduce_zero_label(tmp_path: Path) -> None:
    raw = np.array([[0, 1, 2, 150], [255, 75, 1, 0]], np.uint8)
    out = _one_label("ade20k", tmp_path, raw)
    assert out.tolist() == [[255, 0, 1, 149], [255, 74, 0, 255]]


def test_reduce_zero_label_function() -> None:
    raw = np.arange(256, dtype=np.uint8)
    out = reduce_zero_label(raw)
    assert out[0] == 255 and out[1] == 0 and out[254] == 253 and out[255] == 255
    assert out.dtype == np.uint8


def test_voc21_palette_png_read_as_indices(tmp_path: Path) -> None:
    raw = np.array([[0, 15, 20], [255, 1, 0]], np.uint8)
    root = write_fake_dataset("voc21", tmp_path, n_images=1, size=(2, 3))
    path = root / "SegmentationClass" / f"{fake_ids('voc21', 1)[0]}.png"
    write_label(path, raw, palette=True)
    assert Image.open(path).mode == "P"
    assert DATASETS.get("voc21")(root=root)[0][2].tolist() == raw.tolist()


def test_voc20_drops_background(tmp_path: Path) -> None:
    raw = np.array([[0, 1, 20], [255, 15, 0]], np.uint8)
    assert _one_label("voc20", tmp_path, raw).tolist() == [[255, 0, 19], [255, 14, 255]]


def test_context59_and_context60(tmp_path: Path) -> None:
    raw = np.array([[0, 1, 59], [255, 30, 0]], np.uint8)
    assert _one_label("context59", tmp_path / "a", raw).tolist() == [[255, 0, 58], [255, 29, 255]]
    assert _one_label("context60", tmp_path / "b", raw).tolist() == raw.tolist()


def test_cityscapes_label_train_ids_unchanged(tmp_path: Path) -> None:
    raw = np.array([[0, 18, 255], [7, 13, 255]], np.uint8)
    assert _one_label("cityscapes", tmp_path, raw).tolist() == raw.tolist()


def test_coco_object_instance_train_ids_unchanged(tmp_path: Path) -> None:
    raw = np.array([[0, 1, 80], [255, 40, 0]], np.uint8)
    assert _one_label("coco_object", tmp_path, raw).tolist() == raw.tolist()


@pytest.mark.parametrize(
    "name,bad", [("cityscapes", 19), ("coco_object", 81), ("voc21", 21), ("ade20k", 151), ("context60", 60)]
)
def test_values_outside_the_classes_are_errors(name: str, bad: int, tmp_path: Path) -> None:
    raw = np.array([[0, 1], [bad, 255]], np.uint8)
    with pytest.raises(DataError, match=rf"label values {bad - (1 if name == 'ade20k' else 0)} are outside"):
        _one_label(name, tmp_path, raw)


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"NoSuchDir: dataset root of voc21 not found"):
        DATASETS.get("voc21")(root=tmp_path / "NoSuchDir")


def test_missing_annotation_dir(tmp_path: Path) -> None:
    (tmp_path / "ADE20K/images/validation").mkdir(parents=True)
    with pytest.raises(DataError, match=r"annotations/validation: directory missing in the ade20k layout"):
        DATASETS.get("ade20k")(root=tmp_path / "ADE20K")


def test_missing_split_list(tmp_path: Path) -> None:
    root = write_fake_dataset("context59", tmp_path)
    (root / "ImageSets/SegmentationContext/val.txt").unlink()
    with pytest.raises(DataError, match=r"SegmentationContext/val.txt: split list of context59 not found"):
        DATASETS.get("context59")(root=root)


def test_empty_split_list_and_duplicates(tmp_path: Path) -> None:
    root = write_fake_dataset("voc21", tmp_path)
    split = root / "ImageSets/Segmentation/val.txt"
    split.write_text("\n\n")
    with pytest.raises(DataError, match="split list is empty"):
        DATASETS.get("voc21")(root=root)
    split.write_text("2007_000000\n2007_000000\n")
    with pytest.raises(DataError, match="listed twice"):
        DATASETS.get("voc21")(root=root)


def test_listed_image_missing(tmp_path: Path) -> None:
    root = write_fake_dataset("voc21", tmp_path)
    (root / "JPEGImages/2007_000001.jpg").unlink()
    with pytest.raises(DataError, match=r"2007_000001.jpg: image of '2007_000001' listed in .* is missing"):
        DATASETS.get("voc21")(root=root)


@pytest.mark.parametrize("name", ["voc21", "ade20k", "cityscapes"])
def test_image_without_label(name: str, tmp_path: Path) -> None:
    root = write_fake_dataset(name, tmp_path, n_images=3)
    cls = DATASETS.get(name)
    victim = root / cls.layout.ann_dir / f"{fake_ids(name, 3)[1]}{cls.layout.seg_suffix}"
    victim.unlink()
    with pytest.raises(DataError, match=rf"{victim.name}: label of image .* is missing"):
        cls(root=root)


def test_no_images_found(tmp_path: Path) -> None:
    (tmp_path / "COCOStuff/images/val2017").mkdir(parents=True)
    (tmp_path / "COCOStuff/annotations/val2017").mkdir(parents=True)
    with pytest.raises(DataError, match=r"no \*.jpg images found for coco_stuff"):
        DATASETS.get("coco_stuff")(root=tmp_path / "COCOStuff")


def test_label_of_another_size(tmp_path: Path) -> None:
    root = write_fake_dataset("ade20k", tmp_path, n_images=2, size=(20, 30))
    write_label(root / "annotations/validation/ADE_val_00000002.png", np.ones((20, 31), np.uint8))
    ds = DATASETS.get("ade20k")(root=root)
    ds[0]
    with pytest.raises(DataError, match=r"ADE_val_00000002.png: label is 31x20 but its image .* is 30x20"):
        ds[1]


def test_truncated_and_unreadable_files(tmp_path: Path) -> None:
    root = write_fake_dataset("voc21", tmp_path, n_images=2, size=(64, 64))
    img = root / "JPEGImages/2007_000001.jpg"
    img.write_bytes(img.read_bytes()[: len(img.read_bytes()) // 2])
    ann = root / "SegmentationClass/2007_000000.png"
    ann.write_bytes(b"not a png at all")
    ds = DATASETS.get("voc21")(root=root)
    with pytest.raises(DataError, match=r"2007_000001.jpg: unreadable or truncated image"):
        ds[0]  # list order: 2007_000001 first
    with pytest.raises(DataError, match=r"2007_000000.png: unreadable or truncated label map"):
        ds[1]


def test_colour_label_is_an_error(tmp_path: Path) -> None:
    root = write_fake_dataset("voc21", tmp_path, n_images=1, size=(4, 4))
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(root / "SegmentationClass/2007_000000.png")
    with pytest.raises(DataError, match=r"2007_000000.png: label map has mode RGB .* single-channel"):
        DATASETS.get("voc21")(root=root)[0]


def test_grayscale_and_cmyk_images_become_rgb(tmp_path: Path) -> None:
    root = write_fake_dataset("voc21", tmp_path, n_images=1, size=(6, 5))
    Image.fromarray(np.full((6, 5), 77, np.uint8)).save(root / "JPEGImages/2007_000000.jpg")
    image = DATASETS.get("voc21")(root=root)[0][1]
    assert image.shape == (6, 5, 3) and image.dtype == np.uint8


def test_fingerprint_tracks_files(tmp_path: Path) -> None:
    root = write_fake_dataset("coco_object", tmp_path, n_images=3)
    cls = DATASETS.get("coco_object")
    fp = cls(root=root).fingerprint
    assert len(fp) == 64 and fp == cls(root=root).fingerprint
    write_label(root / "annotations/val2017/000000000001_instanceTrainIds.png", np.zeros((24, 32), np.uint8))
    fp2 = cls(root=root).fingerprint
    assert fp2 != fp
    (root / "images/val2017/000000000002.jpg").unlink()
    (root / "annotations/val2017/000000000002_instanceTrainIds.png").unlink()
    assert cls(root=root).fingerprint not in (fp, fp2)


def test_voc21_and_voc20_fingerprints_differ_on_same_files(tmp_path: Path) -> None:
    root = write_fake_dataset("voc21", tmp_path)
    assert DATASETS.get("voc21")(root=root).fingerprint != DATASETS.get("voc20")(root=root).fingerprint


def test_vocab_override(tmp_path: Path) -> None:
    root = write_fake_dataset("cityscapes", tmp_path)
    v = tmp_path / "v.txt"
    v.write_text("".join(f"c{i}, alias{i}\n" for i in range(19)))
    ds = DATASETS.get("cityscapes")(root=root, vocab=str(v))
    assert ds.classes[18] == ["c18", "alias18"]
    v.write_text("".join(f"c{i}\n" for i in range(18)))
    with pytest.raises(DataError, match="18 lines but dataset 'cityscapes' has 19"):
        DATASETS.get("cityscapes")(root=root, vocab=str(v))


def test_unknown_option(tmp_path: Path) -> None:
    root = write_fake_dataset("voc21", tmp_path)
    with pytest.raises(ConfigError, match=r"voc21\] unknown option\(s\) split"):
        DATASETS.get("voc21")(root=root, split="train")


def test_incomplete_split_warns(tmp_path: Path, caplog) -> None:
    root = write_fake_dataset("voc21", tmp_path)
    with caplog.at_level(logging.WARNING):
        DATASETS.get("voc21")(root=root)
    assert "3 images under" in caplog.text and "1449" in caplog.text


def test_dataset_modules_do_not_import_torch(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys; import robustbench_ovss.datasets.mmseg, robustbench_ovss.datasets.synthetic, "
        "robustbench_ovss.datasets.voc_sample, robustbench_ovss.datasets.check; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("name", ALL)
def test_instances_pickle_for_worker_processes(name: str, tmp_path: Path) -> None:
    import pickle

    ds, _ = make(name, tmp_path, n_images=2)
    clone = pickle.loads(pickle.dumps(ds))
    assert type(clone) is type(ds) and clone.fingerprint == ds.fingerprint
    assert np.array_equal(clone[1][2], ds[1][2])
