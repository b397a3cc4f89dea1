"""Tiny fake benchmark trees in the exact mmseg layouts, for tests and smoke runs without real data.

``write_fake_dataset("voc21", "data")`` writes ``data/VOC2012/`` with a few small JPEG images, palette
PNG labels and the split list; the other benchmarks likewise (Cityscapes with its city sub-folders and
PNG images, COCO with ``*_labelTrainIds.png`` / ``*_instanceTrainIds.png``, ADE20K with raw 0..150
labels). Label maps hold raw values as the prepared dataset stores them (before any reduce-zero rule).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["fake_ids", "raw_label_range", "write_fake_dataset"]


def raw_label_range(name: str) -> int:
    """Number of raw label values a benchmark stores besides 255 (e.g. 151 for ADE20K: 0..150)."""
    from ..registry import DATASETS
    from ..datasets.vocabulary import packaged_vocabulary

    cls = DATASETS.get(name)
    n = len(packaged_vocabulary(cls.vocab_name))
    return n + 1 if cls.layout.reduce_zero_label else n


def fake_ids(name: str, n: int) -> list[str]:
    """Image ids a fake tree of ``name`` uses (relative paths without suffix for scanned layouts)."""
    if name in ("voc21", "voc20"):
        return [f"2007_{i:06d}" for i in range(n)]
    if name in ("context60", "context59"):
        return [f"2008_{i:06d}" for i in range(n)]
    if name in ("coco_object", "coco_stuff"):
        return [f"{i:012d}" for i in range(n)]
    if name == "cityscapes":
        cities = ("frankfurt", "lindau", "munster")
        return [f"{cities[i % 3]}/{cities[i % 3]}_{i:06d}_000019" for i in range(n)]
    if name == "pc459":
        return [f"2008_{i:06d}" for i in range(n)]
    if name == "ade847":
        return [f"ADE_frame_{i + 1:08d}" for i in range(n)]
    if name.startswith("acdc-") or name == "dark-zurich":
        seqs = ("GOPR0475", "GOPR0476")
        return [f"{seqs[i % 2]}/{seqs[i % 2]}_frame_{i:06d}" for i in range(n)]
    return [f"ADE_val_{i + 1:08d}" for i in range(n)]


def write_fake_dataset(
    name: str,
    data_root: str | Path,
    n_images: int = 3,
    size: tuple[int, int] = (24, 32),
    seed: int = 0,
    ignore_fraction: float = 0.05,
) -> Path:
    """Write a fake ``name`` tree under ``data_root/<default_root>`` and return that directory.

    Args:
        name: one of the mmseg benchmarks, the detectron2-prepared large-vocabulary sets (uint16 TIF
            labels with 65535 = ignore and ids above 255) or an ACDC condition.
        data_root: directory that will hold ``VOC2012/``, ``ADE20K/``, ...
        n_images: images (split list in reverse-sorted order for split-list datasets, so that tests can
            tell list order from sorted order).
        size: ``(height, width)`` of every image.
        seed: numpy seed of the pixel values.
        ignore_fraction: share of label pixels set to the dataset's ignore index.
    """
    from ..registry import DATASETS

    cls = DATASETS.get(name)
    lay = cls.layout
    root = Path(data_root) / cls.default_root
    rng = np.random.default_rng(seed)
    h, w = size
    ids = fake_ids(name, n_images)
    nvals = raw_label_range(name)
    for image_id in ids:
        img_path = root / lay.img_dir / f"{image_id}{lay.img_suffix}"
        ann_path = root / lay.ann_dir / f"{image_id}{lay.seg_suffix}"
        img_path.parent.mkdir(parents=True, exist_ok=True)
        ann_path.parent.mkdir(parents=True, exist_ok=True)
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(image).save(img_path, **({"quality": 95} if img_path.suffix == ".jpg" else {}))
        dtype = np.uint8 if lay.label_max <= 255 else np.uint16
        label = rng.integers(0, nvals, (h, w)).astype(dtype)
        label[rng.random((h, w)) < ignore_fraction] = lay.ignore_index
        write_label(ann_path, label, palette=name in ("voc21", "voc20"))
    if lay.list_from == "labels":  # the image folder holds more than the split (all of VOC2010)
        extra = root / lay.img_dir / f"2099_{0:06d}{lay.img_suffix}"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(extra)
    if lay.split_file is not None:
        split = root / lay.split_file
        split.parent.mkdir(parents=True, exist_ok=True)
        split.write_text("".join(f"{i}\n" for i in sorted(ids, reverse=True)))
    return root


def write_label(path: str | Path, label: np.ndarray, palette: bool = False) -> None:
    """Save ``uint8 [H, W]`` label values as a PNG: palette ("P", VOC style, colours differ from the
    indices) or grayscale ("L"); ``uint16`` labels as a 16-bit TIFF or PNG (by the path's suffix)."""
    if np.asarray(label).dtype == np.uint16:
        Image.fromarray(np.ascontiguousarray(label)).save(path)
        return
    im = Image.fromarray(np.ascontiguousarray(label, dtype=np.uint8))  # mode "L"
    if palette:
        pal: list[int] = []
        for i in range(256):  # VOC's bit-interleaved colour map
            r = g = b = 0
            c = i
            for j in range(8):
                r |= (c & 1) << (7 - j)
                g |= ((c >> 1) & 1) << (7 - j)
                b |= ((c >> 2) & 1) << (7 - j)
                c >>= 3
            pal += [r, g, b]
        im.putpalette(pal)  # "L" -> "P", indices unchanged
    im.save(path)
