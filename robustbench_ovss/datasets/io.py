"""Reading images and label maps with PIL, with one-line errors that name the file.

Images are decoded to RGB in their stored pixel order: EXIF orientation is *not* applied, because the
label maps of every benchmark are drawn on the stored pixel grid. Label maps are read "unchanged" (as
mmseg's ``LoadAnnotations`` does with the pillow backend): a palette PNG gives its indices, never its
colours.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DataError

__all__ = ["image_size", "read_image", "read_label", "sizes_fingerprint"]

# Errors PIL raises for missing, unreadable, truncated or non-image files.
_READ_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file to ``uint8 [H, W, 3]`` RGB (grayscale, CMYK, palette converted to RGB).

    Raises:
        DataError: missing, unreadable or truncated file.
    """
    p = Path(path)
    try:
        with Image.open(p) as im:
            im.load()
            rgb = im if im.mode == "RGB" else im.convert("RGB")
            arr = np.asarray(rgb, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"{p}: image file not found; restore it or regenerate the split list") from None
    except _READ_ERRORS as exc:
        raise DataError(f"{p}: unreadable or truncated image ({exc}); re-download or re-extract this file") from None
    return np.ascontiguousarray(arr)


def read_label(path: str | Path, max_value: int = 255) -> np.ndarray:
    """Decode a label map to its raw integer values: ``uint8 [H, W]``, or ``uint16`` when ``max_value`` > 255.

    Palette ("P") and grayscale ("L") PNGs are read as indices; 16/32-bit single-channel maps (PNG,
    TIFF) are accepted when every value fits in ``0..max_value`` (255 for the mmseg benchmarks, 65535
    for the detectron2-prepared large-vocabulary sets, whose uint16 TIFs use 65535 = ignore). A colour
    (RGB) label is an error: it was saved as a visualisation instead of class indices.

    Raises:
        DataError: missing, unreadable or truncated file, colour label, or values above ``max_value``.
    """
    p = Path(path)
    try:
        with Image.open(p) as im:
            im.load()
            mode = im.mode
            arr = np.asarray(im)
    except FileNotFoundError:
        raise DataError(f"{p}: label file not found; every image needs its label map") from None
    except _READ_ERRORS as exc:
        raise DataError(f"{p}: unreadable or truncated label map ({exc}); re-download or re-convert this file") from None
    if arr.ndim != 2:
        raise DataError(
            f"{p}: label map has mode {mode} with {arr.shape[-1] if arr.ndim == 3 else '?'} channels; "
            f"labels must be single-channel class indices (palette or grayscale PNG) - rerun the dataset's conversion step"
        )
    dtype = np.uint8 if max_value <= 255 else np.uint16
    if arr.dtype != dtype:
        if arr.dtype.kind not in "iub":
            raise DataError(f"{p}: label map holds {arr.dtype} values, not class indices; rerun the conversion step")
        if arr.size and (int(arr.max()) > max_value or int(arr.min()) < 0):
            raise DataError(f"{p}: label values {int(arr.min())}..{int(arr.max())} do not fit 0..{max_value}; rerun the conversion step")
        arr = arr.astype(dtype)
    return np.ascontiguousarray(arr)


def image_size(path: str | Path) -> tuple[int, int]:
    """``(height, width)`` of an image file from its header (no full decode).

    Raises:
        DataError: missing or unreadable file.
    """
    p = Path(path)
    try:
        with Image.open(p) as im:
            w, h = im.size
    except FileNotFoundError:
        raise DataError(f"{p}: file not found") from None
    except _READ_ERRORS as exc:
        raise DataError(f"{p}: unreadable image ({exc}); re-download or re-extract this file") from None
    return h, w


def sizes_fingerprint(tag: str, entries: Iterable[tuple[str, Iterable[Path]]]) -> str:
    """sha256 (hex) over ``tag`` and, per entry, its id and the relative name and byte size of its files.

    Args:
        tag: what is hashed (dataset name and layout), so two datasets never share a fingerprint.
        entries: ``(image_id, files)`` in split order.

    Raises:
        DataError: a file disappeared since the split was listed.
    """
    h = hashlib.sha256(tag.encode())
    for image_id, files in entries:
        h.update(b"\0" + image_id.encode())
        for f in files:
            try:
                size = os.stat(f).st_size
            except FileNotFoundError:
                raise DataError(f"{f}: file listed in the split is missing; restore it") from None
            h.update(f"\0{Path(f).name}\0{size}".encode())
    return h.hexdigest()
