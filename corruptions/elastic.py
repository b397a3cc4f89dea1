"""elastic_transform with its displacement field exposed, so the label can be warped with the image.

The field and the image warp follow imagecorruptions-imaug 1.1.5's ``elastic_transform`` step for step
(same draws from numpy's global RNG, same skimage Gaussian, same ``map_coordinates`` arithmetic), so the
image output equals the reference bit for bit (tested). Differences in form, not in result: the image is
warped one channel at a time in 2-D instead of one 3-D call (the 3-D call's channel weights are exactly
1 and 0, so every sum is the same), which is about twice as fast.

The label is warped with the same coordinates by nearest-neighbour sampling (``order=0``, scipy's
rounding ``floor(c + 0.5)``) and the same ``mode="reflect"`` edge rule.

Callers must hold :func:`robustbench_ovss.corruptions.seeding.seeded_global_numpy` around
:func:`displacement`, which draws from numpy's global RNG as the reference does.
"""

from __future__ import annotations

import numpy as np

# alpha per severity: the reference's 250 * (.05, .065, .085, .1, .12), written the same way
_ALPHA = (250 * 0.05, 250 * 0.065, 250 * 0.085, 250 * 0.1, 250 * 0.12)


def displacement(height: int, width: int, severity: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw the displacement field ``(dy, dx)``, float32 [H, W] each, from numpy's global RNG.

    sigma = 1% of each side, both maximum displacements 0.5% of the height (as the reference), Gaussian
    smoothing with ``truncate=3`` and reflect edges, scaled by alpha.
    """
    from skimage.filters import gaussian

    sigma = np.array((height, width)) * 0.01
    alpha = _ALPHA[severity - 1]
    max_d = height * 0.005
    dx = (gaussian(np.random.uniform(-max_d, max_d, size=(height, width)), sigma, mode="reflect", truncate=3)
          * alpha).astype(np.float32)  # fmt: skip
    dy = (gaussian(np.random.uniform(-max_d, max_d, size=(height, width)), sigma, mode="reflect", truncate=3)
          * alpha).astype(np.float32)  # fmt: skip
    return dy, dx


def _coordinates(dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """Sampling coordinates [2, H, W] (float64): row + dy, col + dx, as the reference computes them."""
    h, w = dy.shape
    coords = np.empty((2, h, w), np.float64)
    # int64 grid + float32 field -> float64, the values the reference's meshgrid arithmetic gives
    np.add(np.arange(h)[:, None], dy, out=coords[0])
    np.add(np.arange(w)[None, :], dx, out=coords[1])
    return coords


def warp_image(image: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """Warp uint8 [H, W, 3] bilinearly with the field; uint8 out, truncated like the reference."""
    from scipy.ndimage import map_coordinates

    x = np.array(image, dtype=np.float32) / 255.0
    coords = _coordinates(dy, dx)
    out = np.empty_like(x)
    for c in range(x.shape[2]):
        map_coordinates(x[..., c], coords, output=out[..., c], order=1, mode="reflect")
    return np.uint8(np.clip(out, 0, 1) * 255)


def warp_label(label: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """Warp an integer label [H, W] with the same field, nearest neighbour; dtype kept."""
    from scipy.ndimage import map_coordinates

    lab = np.asarray(label)
    if lab.shape != dy.shape:
        raise ValueError(f"label shape {lab.shape} differs from the image's {dy.shape}")
    return map_coordinates(lab, _coordinates(dy, dx), order=0, mode="reflect")
