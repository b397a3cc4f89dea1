"""``--save-preds K``: the inputs the methods saw and their predictions, for the first K images of a unit.

Per image and unit, two files under ``RUN_DIR/preds/<unit_key>/``: ``<image_id>.png``, the raw label
map (class ids; uint8, or uint16 beyond 255 classes) for tools, and ``<image_id>.overlay.png``, the
image | prediction | ground truth side by side, coloured by class with the class names written on
(imgviz's ``label2rgb``), for people. The corrupted input goes to
``RUN_DIR/samples/<dataset>/<condition>/<image_id>.png``.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from ..files import atomic_write_bytes
from ..plan import Chunk

OVERLAY_SUFFIX = ".overlay.png"


def safe_name(name: str) -> str:
    """``name`` as a file name: letters, digits, ``-_.`` kept, anything else ``_`` (at most 200 chars)."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)[:200]


def png_bytes(arr: np.ndarray) -> bytes:
    """PNG of an RGB image (uint8 HxWx3) or a label map (HxW; uint8, or uint16 beyond 255)."""
    from PIL import Image

    a = np.asarray(arr)
    if a.ndim == 2:
        a = a.astype(np.uint8 if a.max(initial=0) < 256 else np.uint16)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def overlay(image: np.ndarray, pred: np.ndarray, label: np.ndarray, class_names: list[str], ignore_index: int) -> np.ndarray:
    """image | prediction | ground truth, side by side (uint8 H x 3W x 3); ignored pixels stay uncoloured."""
    import imgviz

    names = {i: n for i, n in enumerate(class_names)}
    shown = label.astype(np.int64)
    shown = np.where(shown == ignore_index, -1, shown)  # label2rgb leaves negative labels uncoloured
    pred_rgb = imgviz.label2rgb(pred.astype(np.int64), image=image, label_names=names, font_size=12, loc="rb")
    gt_rgb = imgviz.label2rgb(shown, image=image, label_names=names, font_size=12, loc="rb")
    return imgviz.tile([image, pred_rgb, gt_rgb], row=1, col=3, border=(255, 255, 255))


class PredictionSaver:
    """Writes samples, raw predictions and overlays of the first ``k`` images of each unit (0 = none)."""

    def __init__(self, root: Path, k: int):
        self.root = Path(root)
        self.k = k

    def sample(self, chunk: Chunk, idx: int, image_id: str, image: np.ndarray) -> None:
        if self.k and idx < self.k:
            path = self.root / "samples" / chunk.dataset / chunk.condition.tag / f"{safe_name(image_id)}.png"
            atomic_write_bytes(path, png_bytes(image), durable=False)

    def prediction(self, unit_key: str, idx: int, image_id: str, image: np.ndarray, pred: Any, label: np.ndarray,
                   ds: Any) -> None:  # fmt: skip
        if not (self.k and idx < self.k):
            return
        p = np.asarray(pred.cpu() if hasattr(pred, "cpu") else pred)
        folder = self.root / "preds" / unit_key
        atomic_write_bytes(folder / f"{safe_name(image_id)}.png", png_bytes(p), durable=False)
        ov = overlay(image, p, label, list(ds.class_names), int(ds.ignore_index))
        atomic_write_bytes(folder / f"{safe_name(image_id)}{OVERLAY_SUFFIX}", png_bytes(ov), durable=False)
