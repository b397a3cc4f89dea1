"""The eight natural-image benchmarks in their mmsegmentation-prepared layouts (DESIGN §7).

Each dataset reads the validation split exactly as mmseg's dataset class does:

* with a split list (VOC, Pascal Context): the list's order, one image id per line,
  ``<img_dir>/<id><img_suffix>`` and ``<ann_dir>/<id><seg_suffix>``;
* without one (COCO, Cityscapes, ADE20K): every ``*<img_suffix>`` under ``img_dir`` (recursively,
  hidden files skipped), sorted by path; the image id is the relative path without the suffix.

Label rules: ``reduce_zero_label`` (voc20, context59, ade20k) maps 0 -> 255 and k -> k-1 and keeps 255;
every value must then be a class id or 255. Nothing is dropped: a missing label, a label of another
size or an out-of-range value is a :class:`~robustbench_ovss.errors.DataError` naming the file.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import ConfigError, DataError
from ..registry import DATASETS
from .base import Dataset
from .io import read_image, read_label, sizes_fingerprint
from .vocabulary import packaged_vocabulary, resolve_vocabulary

log = logging.getLogger(__name__)

__all__ = ["LAYOUTS", "Layout", "MMSegDataset", "reduce_zero_label"]


@dataclass(frozen=True)
class Layout:
    """Where a benchmark's files live under its root (paths relative to the root)."""

    img_dir: str
    ann_dir: str
    img_suffix: str
    seg_suffix: str
    split_file: str | None  # None = scan a directory recursively (see list_from)
    reduce_zero_label: bool
    ignore_index: int = 255  # 65535 in the detectron2-prepared large-vocabulary sets (uint16 TIFs)
    list_from: str = "images"  # without a split file: scan img_dir ("images") or ann_dir ("labels")

    def scan(self, root: Path) -> list[tuple[str, Path, Path]]:
        """``(image_id, image path, label path)`` of a layout without a split file: every file of the
        listed side (``list_from``) under ``root``, sorted as mmseg sorts; the other side's paths are
        derived and may not exist."""
        img_dir, ann_dir = root / self.img_dir, root / self.ann_dir
        if self.list_from == "labels":
            ids = [r[: -len(self.seg_suffix)] for r in scan_suffix(ann_dir, self.seg_suffix)]
        else:
            ids = [r[: -len(self.img_suffix)] for r in scan_suffix(img_dir, self.img_suffix)]
        return [(i, img_dir / f"{i}{self.img_suffix}", ann_dir / f"{i}{self.seg_suffix}") for i in ids]

    @property
    def label_max(self) -> int:
        """Largest raw label value a file may hold (the dtype follows: uint8 up to 255, else uint16)."""
        return max(255, self.ignore_index)


VOC = Layout("JPEGImages", "SegmentationClass", ".jpg", ".png", "ImageSets/Segmentation/val.txt", False)
CONTEXT = Layout(
    "JPEGImages", "SegmentationClassContext", ".jpg", ".png", "ImageSets/SegmentationContext/val.txt", False
)
COCO_OBJECT = Layout("images/val2017", "annotations/val2017", ".jpg", "_instanceTrainIds.png", None, False)
COCO_STUFF = Layout("images/val2017", "annotations/val2017", ".jpg", "_labelTrainIds.png", None, False)
CITYSCAPES = Layout("leftImg8bit/val", "gtFine/val", "_leftImg8bit.png", "_gtFine_labelTrainIds.png", None, False)
ADE20K = Layout("images/validation", "annotations/validation", ".jpg", ".png", None, True)

LAYOUTS: dict[str, Layout] = {}


def reduce_zero_label(label: np.ndarray) -> np.ndarray:
    """mmseg's ``reduce_zero_label``: 0 -> 255, k -> k-1 for 1 <= k <= 254, 255 stays 255.

    Args:
        label: ``uint8 [H, W]`` raw label.

    Returns:
        A new ``uint8 [H, W]`` array.
    """
    out = label.astype(np.int16) - 1
    out[label == 0] = 255
    out[label == 255] = 255
    return out.astype(np.uint8)


class MMSegDataset(Dataset):
    """A benchmark in an mmseg layout. Subclasses set the class attributes below and register.

    Constructor: ``cls(root=None, vocab=None)``; ``root`` is the dataset's own directory
    (default ``data/<default_root>``), ``vocab`` an optional vocabulary file replacing the packaged one.
    The split is listed (and every image's label checked for existence) at construction; pixels are
    read and validated per item.
    """

    layout: ClassVar[Layout]
    vocab_name: ClassVar[str] = ""
    split_size: ClassVar[int | None] = None
    default_bg_idx: ClassVar[int | None] = None
    default_prob_thd: ClassVar[float] = 0.0
    OPTION_DEFAULTS: ClassVar[dict[str, Any] | None] = {}  # the mmseg layouts take no options

    def __init__(self, root: str | Path | None = None, vocab: str | Path | None = None, **options: Any):
        if options:
            raise ConfigError(
                f"[datasets.options.{self.name}] unknown option(s) {', '.join(sorted(options))}; {self.name} takes none"
            )
        self.root = Path(root) if root is not None else Path("data") / self.default_root
        self.classes = resolve_vocabulary(self.name, packaged_vocabulary(self.vocab_name or self.name), vocab)
        self.bg_idx = self.default_bg_idx
        self.prob_thd = self.default_prob_thd
        self._fingerprint: str | None = None
        self.samples: list[tuple[str, Path, Path]] = self._list_samples()
        if self.split_size is not None and len(self.samples) != self.split_size:
            log.warning(
                "%s: %d images under %s, the standard val split has %d; results are not comparable to published ones "
                "(run `ovss-bench data check %s --root %s`)",
                self.name, len(self.samples), self.root, self.split_size, self.name, self.root,
            )  # fmt: skip

    # -- listing ------------------------------------------------------------------------------
    @classmethod
    def check_root(cls, root: Path) -> None:
        """Raise DataError unless ``root`` and its image and annotation directories exist."""
        lay = cls.layout
        if not root.is_dir():
            raise DataError(
                f"{root}: dataset root of {cls.name} not found; prepare it as in mmsegmentation's dataset guide and "
                f"set [data] root (holding {cls.default_root}/) or [datasets] roots.{cls.name}"
            )
        for sub in (lay.img_dir, lay.ann_dir):
            if not (root / sub).is_dir():
                raise DataError(
                    f"{root / sub}: directory missing in the {cls.name} layout (expected {lay.img_dir}/ and "
                    f"{lay.ann_dir}/ under {root}); run `ovss-bench data check {cls.name} --root {root} --fix-hint`"
                )

    def _list_samples(self) -> list[tuple[str, Path, Path]]:
        lay = self.layout
        self.check_root(self.root)
        img_dir, ann_dir = self.root / lay.img_dir, self.root / lay.ann_dir
        if lay.split_file is not None:
            ids = read_split_file(self.root / lay.split_file, self.name)
            samples = [(i, img_dir / f"{i}{lay.img_suffix}", ann_dir / f"{i}{lay.seg_suffix}") for i in ids]
            for image_id, img, _ in samples:
                if not img.is_file():
                    raise DataError(
                        f"{img}: image of {image_id!r} listed in {self.root / lay.split_file} is missing; "
                        f"restore it or use the split list that matches your files"
                    )
        else:  # scan the listed side (labels where the image folder holds more than the split: pc459)
            samples = lay.scan(self.root)
            by_labels = lay.list_from == "labels"
            if not samples:
                where, what = (ann_dir, f"*{lay.seg_suffix} label maps") if by_labels else (img_dir, f"*{lay.img_suffix} images")
                raise DataError(
                    f"{where}: no {what} found for {self.name}; check the layout "
                    f"(`ovss-bench data check {self.name} --root {self.root} --fix-hint`)"
                )
            for _, img, ann in samples if by_labels else ():
                if not img.is_file():
                    raise DataError(f"{img}: image of label {ann} is missing; restore it from the dataset archive")
        for image_id, img, ann in samples:
            if not ann.is_file():
                raise DataError(
                    f"{ann}: label of image {img.name} is missing; every image needs its label map "
                    f"(run `ovss-bench data check {self.name} --root {self.root} --fix-hint`)"
                )
        return samples

    # -- contract -----------------------------------------------------------------------------
    @property
    def ignore_index(self) -> int:  # type: ignore[override]
        return self.layout.ignore_index

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            lay = self.layout
            tag = f"{self.name}|{lay}"
            self._fingerprint = sizes_fingerprint(tag, ((i, (img, ann)) for i, img, ann in self.samples))
        return self._fingerprint

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, k: int) -> tuple[str, np.ndarray, np.ndarray]:
        if not -len(self.samples) <= k < len(self.samples):
            raise IndexError(f"{self.name}: index {k} out of range 0..{len(self.samples) - 1}")
        image_id, img_path, ann_path = self.samples[k]
        image = read_image(img_path)
        label = self.convert_label(read_label(ann_path, self.layout.label_max), ann_path)
        if label.shape != image.shape[:2]:
            raise DataError(
                f"{ann_path}: label is {label.shape[1]}x{label.shape[0]} but its image {img_path.name} is "
                f"{image.shape[1]}x{image.shape[0]} (WxH); re-convert the label or restore the original image"
            )
        return image_id, image, label

    def convert_label(self, raw: np.ndarray, path: Path | str = "<label>") -> np.ndarray:
        """Raw label map -> evaluated label space (``uint8`` or ``uint16 [H, W]``: class ids and the
        dataset's ``ignore_index``).

        Raises:
            DataError: a value that is neither a class id nor the ignore index after the conversion.
        """
        label = reduce_zero_label(raw) if self.layout.reduce_zero_label else raw
        check_label_values(label, self.num_classes, path, self.name, self.layout.ignore_index)
        return label


def bad_label_values(label: np.ndarray, num_classes: int, ignore_index: int = 255) -> list[int]:
    """Sorted values of an integer label map that are neither class ids (``< num_classes``) nor ``ignore_index``."""
    flat = label.ravel()
    if label.dtype in (np.uint8, np.uint16):
        present = np.flatnonzero(np.bincount(flat))
    else:
        present = np.unique(flat)
    return [int(v) for v in present if (v >= num_classes or v < 0) and v != ignore_index]


def check_label_values(label: np.ndarray, num_classes: int, path: Path | str, name: str, ignore_index: int = 255) -> None:
    """Raise DataError if ``label`` holds a value outside ``0..num_classes-1`` and ``ignore_index``."""
    bad = bad_label_values(label, num_classes, ignore_index)
    if bad:
        shown = ", ".join(map(str, bad[:8])) + (" ..." if len(bad) > 8 else "")
        raise DataError(
            f"{path}: label values {shown} are outside {name}'s {num_classes} classes and {ignore_index}; the label was "
            f"not converted for this benchmark (run `ovss-bench data check {name} --root ... --fix-hint`)"
        )


def read_split_file(path: Path, name: str) -> list[str]:
    """Image ids of an mmseg split list, in file order (blank lines skipped, whitespace stripped).

    Raises:
        DataError: the list is missing, unreadable, empty or repeats an id.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(
            f"{path}: split list of {name} not found; it ships with the dataset (restore it, or run "
            f"`ovss-bench data check {name} --root ... --fix-hint`)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read split list ({exc}); restore it from the dataset archive") from None
    ids = [line.strip() for line in text.splitlines() if line.strip()]
    if not ids:
        raise DataError(f"{path}: split list is empty; restore it from the dataset archive")
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            raise DataError(f"{path}: image id {i!r} is listed twice; remove the duplicate line")
        seen.add(i)
    return ids


def scan_suffix(directory: Path, suffix: str) -> list[str]:
    """Relative POSIX paths of files ending in ``suffix`` under ``directory`` (recursive, symlinks
    followed, hidden entries skipped), sorted as mmseg sorts its scanned data list."""
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(directory, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel_dir = os.path.relpath(dirpath, directory)
        for f in filenames:
            if f.endswith(suffix) and not f.startswith("."):
                out.append(f if rel_dir == "." else f"{Path(rel_dir).as_posix()}/{f}")
    return sorted(out)


def _register(
    cls_name: str,
    name: str,
    root: str,
    layout: Layout,
    split_size: int | None,
    bg_idx: int | None = None,
    prob_thd: float = 0.0,
) -> type[MMSegDataset]:
    """Create, register and return the class ``cls_name`` (bind it to the same module-level name so
    that instances pickle into data-loading worker processes)."""
    cls = type(
        cls_name,
        (MMSegDataset,),
        {
            "name": name,
            "default_root": root,
            "layout": layout,
            "vocab_name": name,
            "split_size": split_size,
            "default_bg_idx": bg_idx,
            "default_prob_thd": prob_thd,
            "__module__": __name__,
            "__qualname__": cls_name,
            "__doc__": f"{name}: {root}/ in the mmseg layout ({layout.img_dir}, {layout.ann_dir}).",
        },
    )
    LAYOUTS[name] = layout
    DATASETS.register(name)(cls)
    return cls


# class, name, default root, layout, val size, bg_idx, prob_thd (DESIGN §6/§7)
Voc21Dataset = _register("Voc21Dataset", "voc21", "VOC2012", VOC, 1449, bg_idx=0, prob_thd=0.4)
Voc20Dataset = _register("Voc20Dataset", "voc20", "VOC2012", replace(VOC, reduce_zero_label=True), 1449)
Context60Dataset = _register("Context60Dataset", "context60", "VOC2010", CONTEXT, 5105, bg_idx=0, prob_thd=0.1)
Context59Dataset = _register("Context59Dataset", "context59", "VOC2010", replace(CONTEXT, reduce_zero_label=True), 5105)
CocoObjectDataset = _register("CocoObjectDataset", "coco_object", "COCOObject", COCO_OBJECT, 5000, bg_idx=0, prob_thd=0.4)
CocoStuffDataset = _register("CocoStuffDataset", "coco_stuff", "COCOStuff", COCO_STUFF, 5000)
CityscapesDataset = _register("CityscapesDataset", "cityscapes", "CityScapes", CITYSCAPES, 500)
ADE20KDataset = _register("ADE20KDataset", "ade20k", "ADE20K", ADE20K, 2000)
