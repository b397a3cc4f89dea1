"""Corruptions (installed as ``robustbench_ovss.corruptions``).

Each corruption is registered in ``robustbench_ovss.registry.CORRUPTIONS`` as a :class:`Corruption`.
The public API is ``corrupt``, ``corrupt_pair`` and ``moves_pixels``; inputs are never modified.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import CorruptionError
from ..registry import CORRUPTIONS
from .seeding import image_seed, numpy_seed

__all__ = ["Corruption", "corrupt", "corrupt_pair", "moves_pixels", "image_seed", "numpy_seed"]


@dataclass(frozen=True)
class Corruption:
    """A registered corruption.

    Attributes:
        name: registry name.
        apply: ``(image uint8 [H, W, 3], severity 1..5, seed int) -> uint8 [H, W, 3]``; must not modify
            its input and must be a pure function of its arguments.
        apply_pair: for corruptions that move pixels, ``(image, label, severity, seed) -> (image, label)``
            warping the label with the same field (nearest); None otherwise.
        family: "imagenet-c" or "extra".
        reference: where the output is defined ("imagecorruptions-imaug 1.1.5", "albumentations 2.0.8", ...).
        matches_reference: False for opt-in fast modes whose output only approximates ``reference``
            (e.g. ``glass_blur_fast``); their numbers are not comparable with the reference's.
    """

    name: str
    apply: Callable[[np.ndarray, int, int], np.ndarray]
    apply_pair: Callable[[np.ndarray, np.ndarray, int, int], tuple[np.ndarray, np.ndarray]] | None = None
    family: str = "imagenet-c"
    reference: str = ""
    matches_reference: bool = True

    @property
    def moves_pixels(self) -> bool:
        return self.apply_pair is not None


def _lookup(name: str, severity: int) -> Corruption:
    if not isinstance(severity, (int, np.integer)) or isinstance(severity, bool) or not 1 <= int(severity) <= 5:
        raise CorruptionError(f"corruption {name!r}: severity must be an integer in 1..5, got {severity!r}")
    try:
        return CORRUPTIONS.get(name)
    except KeyError as exc:  # UnknownNameError carries the "did you mean" text
        raise CorruptionError(str(exc)) from exc


def _check_image(image: np.ndarray, name: str) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = f"{getattr(image, 'dtype', type(image).__name__)} {getattr(image, 'shape', '')}"
        raise CorruptionError(f"corruption {name!r}: expected a uint8 HxWx3 RGB image, got {got}")


def corrupt(image: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    """Corrupt ``image`` (uint8 [H, W, 3] RGB) at ``severity`` 1..5; same shape and dtype out."""
    c = _lookup(name, severity)
    _check_image(image, name)
    out = c.apply(image, int(severity), int(seed))
    return _finish(out, image, name)


def corrupt_pair(
    image: np.ndarray, label: np.ndarray, name: str, severity: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Corrupt image and label together: geometric corruptions warp the label (nearest), others keep it."""
    c = _lookup(name, severity)
    _check_image(image, name)
    if c.apply_pair is None:
        return _finish(c.apply(image, int(severity), int(seed)), image, name), label
    out, lab = c.apply_pair(image, label, int(severity), int(seed))
    return _finish(out, image, name), lab


def moves_pixels(name: str) -> bool:
    """True when ``name`` displaces pixels, so the label must be warped with the image."""
    return CORRUPTIONS.get(name).moves_pixels


def _finish(out: np.ndarray, image: np.ndarray, name: str) -> np.ndarray:
    out = np.asarray(out)
    if out.shape != image.shape:
        raise RuntimeError(f"corruption {name!r} changed the shape {image.shape} -> {out.shape}")
    if out.dtype != np.uint8:
        out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out
