"""Fast implementations of the slowest ImageNet-C corruptions.

``zoom_blur`` reproduces imagecorruptions-imaug 1.1.5 bit for bit (and is tested to within 1 LSB): the
reference zooms a centre crop of the image with ``scipy.ndimage.zoom(order=1)`` once per zoom factor,
then keeps the top-left ``H x W`` of each zoomed layer. Here every layer is computed directly at those
kept output pixels, with scipy's own coordinate rule (``grid_mode=False``: output ``k`` samples input
``k * (n_in - 1) / (n_out - 1)``), its linear weights (``w0 = 1 - t``, ``w1 = 1 - w0``), its summation
order in double precision, and its ``mode="constant"`` rule (a coordinate past the last input pixel, by
rounding, gives 0). One compiled loop accumulates all layers in float32 as the reference does.

``glass_blur_fast`` is NOT the reference: imagecorruptions' glass blur swaps pixels one after another
with numba's sequential RNG, which no vectorised code can reproduce. The fast mode keeps the recipe
(Gaussian blur, local pixel displacement of up to ``max_delta`` pixels, ``iterations`` times, blur again)
but displaces every pixel at once by an independent random offset drawn from ``np.random.default_rng``,
and blurs with OpenCV. It is a separate corruption name so results never mix with the reference.

numba (a dependency of imagecorruptions-imaug itself) and OpenCV are imported on first use.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

# The reference's zoom factors per severity (np.arange with float steps, exactly as imagecorruptions).
_ZOOMS = (
    (1, 1.11, 0.01),
    (1, 1.16, 0.01),
    (1, 1.21, 0.02),
    (1, 1.26, 0.02),
    (1, 1.31, 0.03),
)

# (sigma, max_delta, iterations) per severity, as imagecorruptions' glass_blur.
GLASS_BLUR_PARAMS = ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2))


def zoom_factors(severity: int) -> np.ndarray:
    """The zoom factors imagecorruptions averages at ``severity`` (1.0 first)."""
    start, stop, step = _ZOOMS[severity - 1]
    return np.arange(start, stop, step)


def _axis_table(n: int, zoom: float) -> tuple[np.ndarray, ...]:
    """Source indices and weights along one axis for output pixels ``0..n-1`` of one zoomed layer.

    The reference crops ``ch = ceil(n / zoom)`` pixels from ``top = (n - ch) // 2``, zooms them to
    ``round(ch * zoom)`` pixels and keeps the first ``n``.
    """
    ch = int(np.ceil(n / float(zoom)))
    top = (n - ch) // 2
    n_out = int(round(ch * zoom))
    if n_out < n:  # cannot happen for zoom >= 1; the reference would fail its own crop too
        raise ValueError(f"zoom {zoom} gives {n_out} < {n} pixels")
    ratio = (ch - 1) / (n_out - 1) if n_out > 1 else 1.0
    cc = np.arange(n, dtype=np.float64) * ratio
    start = np.floor(cc)
    t = cc - start
    w0 = 1.0 - t
    w1 = 1.0 - w0
    inside = cc <= ch - 1  # scipy's mode="constant": past the last pixel -> 0
    s = start.astype(np.int64)
    i0 = np.clip(s, 0, ch - 1) + top
    i1 = np.clip(s + 1, 0, ch - 1) + top
    return i0, i1, w0, w1, inside


@functools.cache
def _kernels() -> Any:
    """Compile (or load from numba's on-disk cache) the loops; imported lazily."""
    from numba import njit

    @njit(cache=True, nogil=True)
    def accumulate_layer(x, out, r0, r1, rw0, rw1, rin, c0, c1, cw0, cw1, cin):  # pragma: no cover - jitted
        h, w, nc = out.shape
        for i in range(h):
            if not rin[i]:
                continue
            a0 = r0[i]
            a1 = r1[i]
            p0 = rw0[i]
            p1 = rw1[i]
            for j in range(w):
                if not cin[j]:
                    continue
                b0 = c0[j]
                b1 = c1[j]
                q0 = cw0[j]
                q1 = cw1[j]
                for c in range(nc):
                    # scipy's order: sum over (row, col) neighbours of (value * w_row) * w_col, in double
                    t = (np.float64(x[a0, b0, c]) * p0) * q0
                    t += (np.float64(x[a0, b1, c]) * p0) * q1
                    t += (np.float64(x[a1, b0, c]) * p1) * q0
                    t += (np.float64(x[a1, b1, c]) * p1) * q1
                    out[i, j, c] += np.float32(t)

    return accumulate_layer


def zoom_blur(image: np.ndarray, severity: int) -> np.ndarray:
    """imagecorruptions' zoom_blur (uint8 out, as ``imagecorruptions.corrupt``), computed directly.

    Args:
        image: uint8 [H, W, 3].
        severity: 1..5.
    """
    accumulate = _kernels()
    zooms = zoom_factors(severity)
    x = (np.asarray(image) / 255.0).astype(np.float32)
    out = np.zeros_like(x)
    h, w = x.shape[:2]
    for z in zooms:
        rows = _axis_table(h, z)
        cols = _axis_table(w, z)
        accumulate(x, out, *rows, *cols)
    x = (x + out) / (len(zooms) + 1)
    return np.uint8(np.clip(x, 0, 1) * 255)


def _gaussian_cv2(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur like skimage's (truncate 4, edge mode 'nearest'), in OpenCV float32."""
    import cv2

    radius = int(4.0 * sigma + 0.5)
    k = 2 * radius + 1
    return cv2.GaussianBlur(x, (k, k), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REPLICATE)


def glass_blur_fast(image: np.ndarray, severity: int, seed: int) -> np.ndarray:
    """Approximate glass blur (opt-in, does not equal the reference; see the module docstring).

    Args:
        image: uint8 [H, W, 3].
        severity: 1..5.
        seed: any non-negative int; seeds a private ``np.random.default_rng``.
    """
    import cv2

    sigma, delta, iterations = GLASS_BLUR_PARAMS[severity - 1]
    h, w = image.shape[:2]
    x = np.uint8(_gaussian_cv2(image.astype(np.float32) / 255.0, sigma) * 255)
    rng = np.random.default_rng(seed)
    # the reference only moves pixels at rows/cols delta+1 .. size-delta, by offsets in [-delta, delta)
    y0, y1, x0, x1 = delta + 1, h - delta + 1, delta + 1, w - delta + 1
    if y1 > y0 and x1 > x0:
        grid_y, grid_x = np.indices((h, w), dtype=np.float32)
        span = 2 * delta
        for _ in range(iterations):
            off = rng.integers(0, span * span, size=(y1 - y0, x1 - x0), dtype=np.int32)
            map_y = grid_y.copy()
            map_x = grid_x.copy()
            map_y[y0:y1, x0:x1] += off // span - delta
            map_x[y0:y1, x0:x1] += off % span - delta
            x = cv2.remap(x, map_x, map_y, interpolation=cv2.INTER_NEAREST)
    x = _gaussian_cv2(x.astype(np.float32) / 255.0, sigma)
    return np.uint8(np.clip(x, 0, 1) * 255)


__all__ = ["zoom_blur", "glass_blur_fast", "zoom_factors", "GLASS_BLUR_PARAMS"]
