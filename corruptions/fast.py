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
import math
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


def njit_cached(fn: Any) -> Any:
    """``numba.njit(cache=True, nogil=True)``, or without the on-disk cache where no cache dir is writable."""
    from numba import njit

    try:
        return njit(cache=True, nogil=True)(fn)
    except RuntimeError:  # "no locator available": read-only install and no writable user cache
        return njit(nogil=True)(fn)


@functools.cache
def _kernels() -> Any:
    """Compile (or load from numba's on-disk cache) the loops; imported lazily."""
    @njit_cached
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


@functools.cache
def _hsv_kernel() -> Any:
    """Per-pixel RGB -> HSV -> adjust -> RGB with skimage's float64 operations, in skimage's order."""
    @njit_cached
    def hsv_adjust(img, channel, scale, offset, out):  # pragma: no cover - jitted
        h_, w_, _ = img.shape
        for i in range(h_):
            for j in range(w_):
                r = img[i, j, 0] / 255.0
                g = img[i, j, 1] / 255.0
                b = img[i, j, 2] / 255.0
                # skimage.color.rgb2hsv: V = max, S = ptp / V, H from the max channel (blue > green > red
                # when tied, as later assignments win there), (H / 6) % 1, zero where ptp == 0
                v = max(r, g, b)
                delta = v - min(r, g, b)
                if delta == 0.0:
                    hue = 0.0
                    sat = 0.0
                else:
                    sat = delta / v
                    if b == v:
                        hh = 4.0 + (r - g) / delta
                    elif g == v:
                        hh = 2.0 + (b - r) / delta
                    else:
                        hh = (g - b) / delta
                    hue = (hh / 6.0) % 1.0
                # the corruption: clip(x * scale + offset, 0, 1) on S (channel 1) or V (channel 2)
                if channel == 1:
                    sat = min(max(sat * scale + offset, 0.0), 1.0)
                else:
                    v = min(max(v * scale + offset, 0.0), 1.0)
                # skimage.color.hsv2rgb
                h6 = hue * 6
                hi = np.floor(h6)
                f = h6 - hi
                p = v * (1 - sat)
                q = v * (1 - f * sat)
                t = v * (1 - (1 - f) * sat)
                k = np.uint8(hi) % 6
                if k == 0:
                    rr, gg, bb = v, t, p
                elif k == 1:
                    rr, gg, bb = q, v, p
                elif k == 2:
                    rr, gg, bb = p, v, t
                elif k == 3:
                    rr, gg, bb = p, q, v
                elif k == 4:
                    rr, gg, bb = t, p, v
                else:
                    rr, gg, bb = v, p, q
                out[i, j, 0] = np.uint8(min(max(rr, 0.0), 1.0) * 255)
                out[i, j, 1] = np.uint8(min(max(gg, 0.0), 1.0) * 255)
                out[i, j, 2] = np.uint8(min(max(bb, 0.0), 1.0) * 255)

    return hsv_adjust


# (scale, offset) per severity, as imagecorruptions: brightness adds to V, saturate scales S
BRIGHTNESS = (0.1, 0.2, 0.3, 0.4, 0.5)
SATURATE = ((0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2))


def brightness(image: np.ndarray, severity: int) -> np.ndarray:
    """imagecorruptions' brightness (V += c in skimage's HSV), bit for bit, without the HSV arrays."""
    out = np.empty_like(image)
    _hsv_kernel()(np.ascontiguousarray(image), 2, 1.0, BRIGHTNESS[severity - 1], out)
    return out


def saturate(image: np.ndarray, severity: int) -> np.ndarray:
    """imagecorruptions' saturate (S = S * a + b in skimage's HSV), bit for bit."""
    scale, offset = SATURATE[severity - 1]
    out = np.empty_like(image)
    _hsv_kernel()(np.ascontiguousarray(image), 1, float(scale), float(offset), out)
    return out


@functools.cache
def _motion_kernel() -> Any:
    @njit_cached
    def motion(x, dys, dxs, weights, out):  # pragma: no cover - jitted
        # out[i, j] = sum_k weights[k] * x[clamp(i - dy_k), clamp(j - dx_k)], added in tap order k as the
        # reference adds its shifted images; rows are independent, the tap loop runs over a row buffer
        h_, w_, nc = x.shape
        n = dys.shape[0]
        for i in range(h_):
            acc = out[i]
            for k in range(n):
                si = min(max(i - dys[k], 0), h_ - 1)
                dx = dxs[k]
                wk = weights[k]
                row = x[si]
                lo = min(max(dx, 0), w_)  # first column whose source j - dx is inside
                hi = max(min(w_ + dx, w_), lo)  # one past the last such column
                for j in range(0, lo):
                    for c in range(nc):
                        acc[j, c] = acc[j, c] + wk * row[0, c]
                flat_acc = acc.reshape(w_ * nc)
                flat_row = row.reshape(w_ * nc)
                shift = dx * nc
                for jj in range(lo * nc, hi * nc):
                    flat_acc[jj] = flat_acc[jj] + wk * flat_row[jj - shift]
                for j in range(hi, w_):
                    for c in range(nc):
                        acc[j, c] = acc[j, c] + wk * row[w_ - 1, c]

    return motion


MOTION_BLUR = ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15))


def motion_taps(height: int, width: int, radius: int, sigma: float, angle: float) -> tuple[np.ndarray, ...]:
    """The reference's motion-blur taps: shifts (dy, dx) and Gaussian weights, stopping where it stops."""
    n = radius * 2 + 1
    k = np.exp(-((np.arange(n) - 0) ** 2) / (2 * (sigma**2))) / (np.sqrt(2 * np.pi) * sigma)
    k = k / np.sum(k)
    point = (n * np.sin(np.deg2rad(angle)), n * np.cos(np.deg2rad(angle)))
    hyp = math.hypot(point[0], point[1])
    dys, dxs = [], []
    for i in range(n):
        dy = -math.ceil(((i * point[0]) / hyp) - 0.5)
        dx = -math.ceil(((i * point[1]) / hyp) - 0.5)
        if abs(dy) >= height or abs(dx) >= width:
            break
        dys.append(dy)
        dxs.append(dx)
    m = len(dys)
    return np.array(dys, np.int64), np.array(dxs, np.int64), np.ascontiguousarray(k[:m])


def motion_blur(image: np.ndarray, severity: int, angle: float) -> np.ndarray:
    """imagecorruptions' motion_blur for a given angle (the caller draws it from the seeded global RNG)."""
    radius, sigma = MOTION_BLUR[severity - 1]
    h, w = image.shape[:2]
    dys, dxs, weights = motion_taps(h, w, radius, sigma, angle)
    out = np.zeros(image.shape, np.float64)
    _motion_kernel()(image.astype(np.float64), dys, dxs, weights, out)
    return np.uint8(np.clip(out, 0, 255))


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


__all__ = ["zoom_blur", "brightness", "saturate", "motion_blur", "glass_blur_fast", "zoom_factors", "GLASS_BLUR_PARAMS"]
