"""``ovss-bench data check NAME --root DIR [--fix-hint]``: validate a prepared benchmark.

Checks the layout, the split list, that every image decodes and has a label map of the same size with
values within the classes or 255 (after the dataset's label rule), and the image count against the
standard val split. Every problem is collected (nothing stops at the first), a summary is printed, and
the exit status is 0 when the dataset is usable as the published benchmark, 1 otherwise. With
``--fix-hint`` the preparation step that produces the missing or wrong files is printed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from ..errors import DataError
from ..registry import DATASETS

__all__ = ["FIX_HINTS", "CheckReport", "check_dataset", "cli_data", "resolve_root"]

MAX_LISTED = 20

# Preparation steps (mmsegmentation 1.x; in mmseg 0.x the converters live in tools/convert_datasets/).
_VOC = (
    "Pascal VOC 2012: extract VOCtrainval_11-May-2012.tar and use VOCdevkit/VOC2012 as the root (JPEGImages/, "
    "SegmentationClass/ palette PNGs, ImageSets/Segmentation/val.txt). No conversion is needed; use the "
    "original palette PNGs (not colour re-saves, not SegmentationClassAug)."
)
_CONTEXT = (
    "Pascal Context: extract VOCtrainval_03-May-2010.tar, put trainval_merged.json in VOCdevkit/VOC2010, install "
    "the Detail API (github.com/zhanghang1989/detail-api, PythonAPI), then run mmsegmentation's "
    "`python tools/dataset_converters/pascal_context.py data/VOCdevkit data/VOCdevkit/VOC2010/trainval_merged.json`; "
    "it writes SegmentationClassContext/ (0 = background, 1..59) and ImageSets/SegmentationContext/{train,val}.txt."
)
_COCO_STUFF = (
    "COCO-Stuff 164k: unzip val2017.zip into images/ and stuffthingmaps_trainval2017.zip into annotations/, then run "
    "mmsegmentation's `python tools/dataset_converters/coco_stuff164k.py /path/to/coco_stuff164k --nproc 8`; it "
    "writes annotations/val2017/*_labelTrainIds.png (0..170, 255 = unlabelled)."
)
_COCO_OBJECT = (
    "COCO-Object: prepare COCO-Stuff 164k first (images/val2017 and the raw stuffthingmaps in annotations/val2017), "
    "then convert it with the COCO-Object script of SCLIP / ClearCLIP / SegEarth-OV "
    "(`python datasets/cvt_coco_object.py PATH_TO_COCO_STUFF164K -o PATH_TO_COCO_OBJECT`): the 80 thing classes "
    "become 1..80, stuff becomes 0 (background), unlabelled 255, written as annotations/val2017/*_instanceTrainIds.png "
    "next to images/val2017/*.jpg."
)
_CITYSCAPES = (
    "Cityscapes: extract leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip, `pip install cityscapesscripts`, "
    "then run mmsegmentation's `python tools/dataset_converters/cityscapes.py data/cityscapes --nproc 8` (it runs "
    "cityscapesscripts' json2labelImg, the createTrainIdLabelImgs step) to write gtFine/val/*/*_gtFine_labelTrainIds.png "
    "(0..18, 255 = ignore)."
)
_ADE20K = (
    "ADE20K: extract ADEChallengeData2016.zip and use ADEChallengeData2016 as the root (images/validation/*.jpg, "
    "annotations/validation/*.png with 0 = other, 1..150). No conversion is needed; the loader maps 0 -> 255 and "
    "k -> k-1 itself, so do not pre-reduce the labels."
)
_ADE847 = (
    "ADE20K-Full (ade847): download ADE20K_2021_17_01 from the ADE20K site, then run CAT-Seg's "
    "`python datasets/prepare_ade20k_full.py` (github KU-CVLAB/CAT-Seg) with DETECTRON2_DATASETS pointing at its "
    "parent: it writes images_detectron2/validation/*.jpg (short side 512) and annotations_detectron2/validation/*.tif "
    "(uint16 class ids 0..846, 65535 = ignore); use ADE20K_2021_17_01 as the root."
)
_PC459 = (
    "Pascal Context 459 (pc459): extract VOC2010 (VOCtrainval_03-May-2010.tar) and the full Pascal Context labels "
    "(trainval.tar.gz with the per-image .mat files), then run CAT-Seg's `python datasets/prepare_pascal_context_459.py` "
    "(github KU-CVLAB/CAT-Seg): it writes VOC2010/annotations_detectron2/pc459_val/*.tif (uint16 class ids 0..458, "
    "65535 = ignore) for the 5104 validation ids of its pascalcontext_val.txt; use VOC2010 as the root."
)
_ACDC = (
    "ACDC: download rgb_anon_trainvaltest.zip and gt_trainval.zip from the ACDC site (acdc.vision.ee.ethz.ch, "
    "registration needed) and extract both into one directory used as the root: rgb_anon/<condition>/val/<sequence>/"
    "*_rgb_anon.png and gt/<condition>/val/<sequence>/*_gt_labelTrainIds.png (Cityscapes train ids 0..18, 255 = "
    "ignore) ship ready; no conversion is needed."
)
_DARK_ZURICH = (
    "Dark Zurich: download Dark_Zurich_val_anon.zip from the Dark Zurich page (trace.ethz.ch, GCMA_UIoU) and "
    "extract it into DarkZurich/ used as the root: rgb_anon/val/night/<sequence>/*_rgb_anon.png and "
    "gt/val/night/<sequence>/*_gt_labelTrainIds.png (Cityscapes train ids, 255 = ignore); no conversion is needed."
)
FIX_HINTS: dict[str, str] = {
    "voc21": _VOC,
    "voc20": _VOC,
    "context60": _CONTEXT,
    "context59": _CONTEXT,
    "coco_object": _COCO_OBJECT,
    "coco_stuff": _COCO_STUFF,
    "cityscapes": _CITYSCAPES,
    "ade20k": _ADE20K,
    "ade847": _ADE847,
    "pc459": _PC459,
    **{f"acdc-{c}": _ACDC for c in ("fog", "night", "rain", "snow")},
    "dark-zurich": _DARK_ZURICH,
}


@dataclass
class CheckReport:
    """What ``check_dataset`` found. ``problems`` are ``(kind, message)``; kinds: root, layout, split,
    missing-image, missing-label, unreadable, size, values, count."""

    name: str
    root: Path | None
    images: int = 0
    labels_ok: int = 0
    num_classes: int = 0
    ignore_index: int = 255
    class_pixels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # [num_classes]
    ignored_pixels: int = 0
    problems: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, kind: str, message: str) -> None:
        self.problems.append((kind, message))

    def count(self, label: np.ndarray) -> None:
        """Add a checked label map's pixels per class id and its ignored pixels."""
        flat = np.asarray(label).ravel().astype(np.int64)
        ignored = flat == self.ignore_index
        self.ignored_pixels += int(ignored.sum())
        counts = np.bincount(flat[~ignored], minlength=self.num_classes)
        if self.class_pixels.size < counts.size:
            self.class_pixels = np.pad(self.class_pixels, (0, counts.size - self.class_pixels.size))
        self.class_pixels[: counts.size] += counts


def resolve_root(cls: Any, root: str | Path) -> Path | None:
    """The dataset's own directory: ``root/<default_root>`` if that exists, else ``root`` itself when
    it holds the dataset's image or annotation directory; None when neither does."""
    root = Path(root)
    lay = cls.layout
    if (root / cls.default_root).is_dir():
        return root / cls.default_root
    if (root / lay.img_dir).is_dir() or (root / lay.ann_dir).is_dir() or (
        lay.split_file and (root / lay.split_file).is_file()
    ):
        return root
    return None


def check_dataset(name: str, root: str | Path, progress: Callable[[int, int], None] | None = None) -> CheckReport:
    """Validate dataset ``name`` under ``root`` (data root or the dataset's own directory)."""
    from .io import read_image, read_label
    from .mmseg import (
        MMSegDataset,
        bad_label_values,
        read_split_file,
        reduce_zero_label,
        scan_suffix,
    )
    from .vocabulary import packaged_vocabulary

    cls = DATASETS.get(name)
    if not (isinstance(cls, type) and issubclass(cls, MMSegDataset)):
        return _check_generic(name, cls, root)
    lay = cls.layout
    num_classes = len(packaged_vocabulary(cls.vocab_name))
    droot = resolve_root(cls, root)
    rep = CheckReport(name=name, root=droot, num_classes=num_classes, ignore_index=lay.ignore_index)
    if droot is None:
        rep.add("root", f"{Path(root)}: neither {Path(root) / cls.default_root}/ nor a {name} layout "
                        f"({lay.img_dir}/, {lay.ann_dir}/) is there")  # fmt: skip
        return rep
    img_dir, ann_dir = droot / lay.img_dir, droot / lay.ann_dir
    for d in (img_dir, ann_dir):
        if not d.is_dir():
            rep.add("layout", f"{d}: directory missing")
    samples: list[tuple[str, Path, Path]] = []
    if lay.split_file is not None:
        try:
            ids = read_split_file(droot / lay.split_file, name)
        except DataError as exc:
            rep.add("split", str(exc))
            ids = []
        samples = [(i, img_dir / f"{i}{lay.img_suffix}", ann_dir / f"{i}{lay.seg_suffix}") for i in ids]
    elif (ann_dir if lay.list_from == "labels" else img_dir).is_dir():
        samples = lay.scan(droot)
        if not samples:
            listed = f"{ann_dir}: no *{lay.seg_suffix} label maps" if lay.list_from == "labels" else f"{img_dir}: no *{lay.img_suffix} images"
            rep.add("layout", listed)
        if lay.list_from == "images" and ann_dir.is_dir():
            ids = {s[0] for s in samples}
            orphans = [r for r in scan_suffix(ann_dir, lay.seg_suffix) if r[: -len(lay.seg_suffix)] not in ids]
            if orphans:
                rep.notes.append(f"{len(orphans)} label map(s) in {ann_dir} have no image (not evaluated), e.g. {orphans[0]}")
    rep.images = len(samples)
    for n, (image_id, img_path, ann_path) in enumerate(samples):
        if progress is not None:
            progress(n, len(samples))
        if not img_path.is_file():
            rep.add("missing-image", f"{img_path}: image of {image_id!r} is missing")
            continue
        if not ann_path.is_file():
            rep.add("missing-label", f"{ann_path}: label of {image_id!r} is missing")
            continue
        try:
            image = read_image(img_path)
            raw = read_label(ann_path, lay.label_max)
        except DataError as exc:
            rep.add("unreadable", str(exc))
            continue
        if raw.shape != image.shape[:2]:
            rep.add("size", f"{ann_path}: label is {raw.shape[1]}x{raw.shape[0]}, image is {image.shape[1]}x{image.shape[0]}")
            continue
        label = reduce_zero_label(raw) if lay.reduce_zero_label else raw
        bad = bad_label_values(label, num_classes, lay.ignore_index)
        if bad:
            rep.add("values", f"{ann_path}: values {bad[:8]} outside 0..{num_classes - 1} and {lay.ignore_index}"
                              + (" (after 0 -> 255, k -> k-1)" if lay.reduce_zero_label else ""))  # fmt: skip
            continue
        rep.count(label)
        rep.labels_ok += 1
    if cls.split_size is not None and rep.images != cls.split_size and rep.images:
        rep.add("count", f"{rep.images} images listed, the standard {name} val split has {cls.split_size}")
    return rep


def _check_generic(name: str, cls: Any, root: str | Path) -> CheckReport:
    """Datasets without an mmseg layout (synthetic, voc-sample, plugins): load every item."""
    rep = CheckReport(name=name, root=None, ignore_index=int(getattr(cls, "ignore_index", 255)))
    try:
        ds = cls(root=root if getattr(cls, "default_root", "") else None)
    except DataError as exc:
        rep.add("root", str(exc))
        return rep
    rep.num_classes = len(ds.classes)
    rep.notes.append(f"{name} needs no prepared files" if not getattr(cls, "default_root", "") else "")
    for k in range(len(ds)):
        try:
            _, image, label = ds[k]
        except DataError as exc:
            rep.add("unreadable", str(exc))
            continue
        rep.images += 1
        if label.shape != image.shape[:2]:
            rep.add("size", f"item {k}: label {label.shape} vs image {image.shape}")
            continue
        rep.count(label)
        rep.labels_ok += 1
    rep.notes = [n for n in rep.notes if n]
    return rep


def print_report(rep: CheckReport, fix_hint: bool, out: TextIO | None = None) -> None:
    """Human-readable summary on ``out`` (default stdout), and the preparation step when ``fix_hint``."""
    stream = out if out is not None else sys.stdout

    def p(line: str) -> None:
        print(line, file=stream)

    p(f"dataset   {rep.name}")
    if rep.root is not None:
        p(f"root      {rep.root}")
    else:
        p("root      " + ("(not found)" if any(k == "root" for k, _ in rep.problems) else "(no files needed)"))
    p(f"images    {rep.images}")
    p(f"labels ok {rep.labels_ok}")
    seen = [int(c) for c in np.flatnonzero(rep.class_pixels)]
    ignored = rep.ignored_pixels
    total = int(rep.class_pixels.sum()) + ignored
    if rep.num_classes:
        p(f"classes   {len(seen)} of {rep.num_classes} seen" + (f" (ids {_ranges(seen)})" if seen else ""))
    if total:
        p(f"ignored   {ignored / total:.1%} of labelled pixels are {rep.ignore_index}")
    for n in rep.notes:
        p(f"note      {n}")
    if rep.ok:
        p("status    OK")
    else:
        kinds: dict[str, int] = {}
        for k, _ in rep.problems:
            kinds[k] = kinds.get(k, 0) + 1
        p(f"status    {len(rep.problems)} problem(s): " + ", ".join(f"{v} {k}" for k, v in kinds.items()))
        for _, msg in rep.problems[:MAX_LISTED]:
            p(f"  - {msg}")
        if len(rep.problems) > MAX_LISTED:
            p(f"  ... and {len(rep.problems) - MAX_LISTED} more")
    if fix_hint:
        hint = FIX_HINTS.get(rep.name)
        if rep.ok:
            p("fix-hint  nothing to fix")
        elif hint:
            if any(k == "count" for k, _ in rep.problems) and len({k for k, _ in rep.problems}) == 1:
                p("fix-hint  the split is incomplete: restore the missing files of the standard val split. " + hint)
            else:
                p(f"fix-hint  {hint}")
        else:
            p(f"fix-hint  no preparation recipe is known for {rep.name}")


def _ranges(ids: list[int]) -> str:
    out, start = [], None
    for i, v in enumerate(ids):
        if start is None:
            start = v
        if i + 1 == len(ids) or ids[i + 1] != v + 1:
            out.append(str(start) if start == v else f"{start}-{v}")
            start = None
    return ",".join(out)


def cli_data(args: Any) -> int:
    """Entry point of ``ovss-bench data``; returns 0 when the dataset checks out, 1 on problems."""
    if getattr(args, "data_command", "check") != "check":
        raise DataError(f"unknown data command {args.data_command!r}; use `ovss-bench data check`")
    rep = check_dataset(args.name, args.root)
    print_report(rep, bool(getattr(args, "fix_hint", False)))
    return 0 if rep.ok else 1
