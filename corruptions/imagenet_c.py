"""The 19 ImageNet-C corruptions at severities 1-5, defined by imagecorruptions-imaug 1.1.5.

Output contract (DESIGN §4): for image ``x`` (uint8 [H, W, 3] RGB), severity ``s`` and per-image seed
``seed`` the output equals::

    np.random.seed(numpy_seed(seed))
    imagecorruptions.corrupt(x, s, name)                              # most corruptions
    imagecorruptions.corrupt(x, s, name, seed=numpy_seed(seed))       # glass_blur, impulse_noise

including its final ``np.uint8`` cast (truncation of the clipped float result). numpy's global RNG is
restored afterwards and the input array is never modified. ``glass_blur`` and ``impulse_noise`` draw from
their own RNGs (numba's, and ``np.random.default_rng``), seeded with the same 32-bit ``numpy_seed``.

Where the output is computed by our own code, it is still the reference output:

- ``zoom_blur``: :mod:`.fast` (bit-identical, ~10x faster);
- ``brightness``, ``saturate``: :mod:`.fast`, skimage's HSV round trip per pixel in one compiled pass
  (bit-identical, ~40x faster);
- ``motion_blur``: :mod:`.fast`, the same angle draw and the same taps added in the same order over a row
  buffer instead of whole shifted images (bit-identical, ~2.5x faster);
- ``elastic_transform``: :mod:`.elastic` (bit-identical image; the label is warped with the same field,
  nearest neighbour, through ``corrupt_pair``);
- ``glass_blur``: the reference's steps, with its own pixel-swap loop compiled by numba with
  ``cache=True`` (the library's ``@njit()`` recompiles it for seconds in every new process).

Deviations, all outside the reference's own domain:

- Images smaller than the reference's 32 x 32 minimum work, down to 4 x 4 (``pixelate`` needs at least
  4 pixels a side at severity 5); smaller ones raise ``CorruptionError``.
- ``spatter`` at severities 1-3 divides 0 by 0 when no "liquid" survives its threshold (only seen on
  images of a few dozen pixels); the reference then casts NaN to uint8, which is undefined. Here that
  case is defined as "no spatter": the image passes through the reference's float path unchanged.

``glass_blur_fast`` (opt-in, registered beside the 19) does NOT match the reference; see :mod:`.fast`.

Heavy libraries (imagecorruptions, numba, scipy, skimage, cv2) are imported on first use.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import CorruptionError
from ..registry import CORRUPTIONS, IMAGENET_C_NAMES
from . import Corruption
from .fast import GLASS_BLUR_PARAMS
from .seeding import numpy_seed, seeded_global_numpy

REFERENCE = "imagecorruptions-imaug 1.1.5"
MIN_SIDE = 4

# corruptions that take the reference library's explicit seed= argument
_EXPLICIT_SEED = ("glass_blur", "impulse_noise")


@functools.cache
def _library() -> Any:
    import imagecorruptions

    return imagecorruptions


def _check_size(name: str, image: np.ndarray) -> None:
    h, w = image.shape[:2]
    if h < MIN_SIDE or w < MIN_SIDE:
        raise CorruptionError(
            f"corruption {name!r}: image {h}x{w} is too small; the ImageNet-C family needs at least "
            f"{MIN_SIDE}x{MIN_SIDE} pixels"
        )


def _reference_float(name: str, image: np.ndarray, severity: int, seed: int) -> Any:
    """The reference function's raw result (float array or PIL image), seeded as the contract says."""
    from PIL import Image

    fn = _library().corruption_dict[name]
    kwargs = {"seed": numpy_seed(seed)} if name in _EXPLICIT_SEED else {}
    pil = Image.fromarray(np.ascontiguousarray(image))  # PIL holds its own copy of the pixels
    with seeded_global_numpy(seed), np.errstate(invalid="ignore", divide="ignore"):
        return fn(pil, severity, **kwargs)


def _reference(name: str) -> Callable[[np.ndarray, int, int], np.ndarray]:
    def apply(image: np.ndarray, severity: int, seed: int) -> np.ndarray:
        _check_size(name, image)
        return np.uint8(_reference_float(name, image, severity, seed))

    apply.__name__ = name
    apply.__doc__ = f"{REFERENCE} {name}, seeded per DESIGN §4."
    return apply


def _spatter(image: np.ndarray, severity: int, seed: int) -> np.ndarray:
    _check_size("spatter", image)
    out = np.asarray(_reference_float("spatter", image, severity, seed))
    if not np.isfinite(out).all():  # 0/0 in the reference: no liquid at all -> no spatter
        x = np.asarray(image, dtype=np.float32) / 255.0
        out = np.clip(x, 0, 1) * 255
    return np.uint8(out)


@functools.cache
def _shuffle_pixels() -> Any:
    """The reference's own pixel-swap loop, compiled with numba's on-disk cache.

    imagecorruptions compiles it with ``@njit()`` (no cache), which costs seconds in every new process
    (every data worker). Compiling the same Python function with ``cache=True`` gives the same machine
    code and the same numba RNG stream, once per machine.
    """
    from .fast import njit_cached

    return njit_cached(_library().corruptions._shuffle_pixels_njit_glass_blur.py_func)


def _glass_blur(image: np.ndarray, severity: int, seed: int) -> np.ndarray:
    """imagecorruptions' glass_blur with its pixel-swap loop compiled once per machine (same output)."""
    from skimage.filters import gaussian

    _check_size("glass_blur", image)
    sigma, delta, iterations = GLASS_BLUR_PARAMS[severity - 1]
    c = (sigma, delta, iterations)
    x = np.uint8(gaussian(np.asarray(image) / 255.0, sigma=sigma, channel_axis=-1) * 255)
    x = _shuffle_pixels()(x.shape[0], x.shape[1], x, c, numpy_seed(seed))
    return np.uint8(np.clip(gaussian(x / 255.0, sigma=sigma, channel_axis=-1), 0, 1) * 255)


def _brightness(image: np.ndarray, severity: int, seed: int) -> np.ndarray:
    """Brightness equal to the reference, one compiled pass instead of skimage's HSV arrays (no randomness)."""
    from .fast import brightness

    _check_size("brightness", image)
    return brightness(image, severity)


def _saturate(image: np.ndarray, severity: int, seed: int) -> np.ndarray:
    """Saturate equal to the reference, one compiled pass (no randomness)."""
    from .fast import saturate

    _check_size("saturate", image)
    return saturate(image, severity)


def _motion_blur(image: np.ndarray, severity: int, seed: int) -> np.ndarray:
    """Motion blur equal to the reference: the same angle draw, the taps summed in the same order."""
    from .fast import motion_blur

    _check_size("motion_blur", image)
    with seeded_global_numpy(seed):
        angle = np.random.uniform(-45, 45)  # the reference's only draw
    return motion_blur(image, severity, angle)


def _zoom_blur(image: np.ndarray, severity: int, seed: int) -> np.ndarray:
    """Fast zoom blur, equal to the reference (no randomness, the seed is unused)."""
    from .fast import zoom_blur

    _check_size("zoom_blur", image)
    return zoom_blur(image, severity)


def _elastic_pair(image: np.ndarray, label: np.ndarray, severity: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from . import elastic

    _check_size("elastic_transform", image)
    h, w = image.shape[:2]
    lab = np.asarray(label)
    if lab.shape != (h, w):
        raise CorruptionError(f"corruption 'elastic_transform': label shape {lab.shape} differs from the image's {(h, w)}")
    with seeded_global_numpy(seed):
        dy, dx = elastic.displacement(h, w, severity)
    return elastic.warp_image(image, dy, dx), elastic.warp_label(lab, dy, dx)


def _elastic(image: np.ndarray, severity: int, seed: int) -> np.ndarray:
    from . import elastic

    _check_size("elastic_transform", image)
    h, w = image.shape[:2]
    with seeded_global_numpy(seed):
        dy, dx = elastic.displacement(h, w, severity)
    return elastic.warp_image(image, dy, dx)


def _glass_blur_fast(image: np.ndarray, severity: int, seed: int) -> np.ndarray:
    from .fast import glass_blur_fast

    _check_size("glass_blur_fast", image)
    return glass_blur_fast(image, severity, seed)


def reference_corrupt(image: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    """The reference library's output through its public ``corrupt`` (for tests and benchmarks).

    Requires images of at least 32 x 32 (the reference's own check).
    """
    lib = _library()
    kwargs = {"seed": numpy_seed(seed)} if name in _EXPLICIT_SEED else {}
    with seeded_global_numpy(seed):
        return lib.corrupt(np.ascontiguousarray(image), severity=severity, corruption_name=name, **kwargs)


_CUSTOM: dict[str, dict[str, Any]] = {
    "zoom_blur": {"apply": _zoom_blur},
    "elastic_transform": {"apply": _elastic, "apply_pair": _elastic_pair},
    "spatter": {"apply": _spatter},
    "glass_blur": {"apply": _glass_blur},
    "brightness": {"apply": _brightness},
    "saturate": {"apply": _saturate},
    "motion_blur": {"apply": _motion_blur},
}

for _name in IMAGENET_C_NAMES:
    _kw = _CUSTOM.get(_name, {"apply": _reference(_name)})
    CORRUPTIONS.register(_name, Corruption(name=_name, family="imagenet-c", reference=REFERENCE, **_kw))

CORRUPTIONS.register(
    "glass_blur_fast",
    Corruption(
        name="glass_blur_fast",
        apply=_glass_blur_fast,
        family="imagenet-c",
        reference=f"approximates {REFERENCE} glass_blur (not equal; opt-in fast mode)",
        matches_reference=False,
    ),
)
