"""Extra distribution shifts for driving / embodied use, through albumentations 2.0.8.

albumentations has no severity scale of its own; the parameters below are ours. Every random range of
the underlying transform is collapsed to one value per severity (so severity alone sets the strength)
except the placement of drops, flares and shadows, which is random. Each call builds
``A.Compose([...], p=1, seed=seed)`` with the per-image seed (any non-negative int), so the output is a
pure function of (image, severity, seed) and the global numpy / ``random`` states are never touched.

=========  ===========================================  =====  =====  =====  =====  =====
name       parameter (albumentations transform)           1      2      3      4      5
=========  ===========================================  =====  =====  =====  =====  =====
rain       ``rain_type`` (RandomRain; drops per image:    drz    dflt   heavy  heavy  torr
           drizzle H/4, default H/3, heavy H, torr. 2H)
           ``drop_width`` (px at 1024 px height*)         1      1      1      2      2
           ``blur_value`` (box blur of the streaks)       3      3      5      5      7
           ``brightness_coefficient``                     0.95   0.9    0.85   0.8    0.7
           ``slant_range`` (deg)                          +-10   +-10   +-10   +-15   +-20
sun_flare  ``src_radius`` (fraction of the diagonal)      0.10   0.15   0.20   0.25   0.30
           ``num_flare_circles_range``                    (3,4)  (4,6)  (6,8)  (8,10) (10,12)
           (RandomSunFlare, physics_based; centre in the top half)
shadow     ``num_shadows_limit`` (RandomShadow)           (1,1)  (1,2)  (2,2)  (2,3)  (3,3)
           ``shadow_intensity_range`` (fixed value)       0.3    0.4    0.5    0.6    0.7
           (polygons of 5 vertices anywhere in the image)
iso_noise  ``color_shift`` (ISONoise, fixed value)        0.01   0.02   0.03   0.04   0.05
           ``intensity`` (fixed value)                    0.1    0.2    0.3    0.4    0.5
low_light  exposure: pixel values x ``gain``              0.65   0.5    0.38   0.28   0.2
           (RandomBrightnessContrast, contrast = gain-1)
           photon noise ``scale`` (ShotNoise, Poisson     0.002  0.004  0.006  0.01   0.015
           in linear light, fixed value)
=========  ===========================================  =====  =====  =====  =====  =====

\\* ``drop_width`` is scaled with the image height (rounded, at least 1); the drop length is
albumentations' default, 1/8 of the height. ``low_light`` is our own composition (albumentations 2.0.8
has no low-light transform): a global exposure cut in sRGB values followed by Poisson photon noise in
linear light, the two effects a dark scene has on a camera.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from ..registry import CORRUPTIONS, EXTRA_CORRUPTION_NAMES
from . import Corruption

REFERENCE = "albumentations 2.0.8 (our severity table)"

RAIN = (
    # rain_type, drop_width at 1024 px, blur_value, brightness_coefficient, slant
    ("drizzle", 1, 3, 0.95, 10),
    ("default", 1, 3, 0.9, 10),
    ("heavy", 1, 5, 0.85, 10),
    ("heavy", 2, 5, 0.8, 15),
    ("torrential", 2, 7, 0.7, 20),
)
SUN_FLARE = ((0.10, (3, 4)), (0.15, (4, 6)), (0.20, (6, 8)), (0.25, (8, 10)), (0.30, (10, 12)))
SHADOW = (((1, 1), 0.3), ((1, 2), 0.4), ((2, 2), 0.5), ((2, 3), 0.6), ((3, 3), 0.7))
ISO_NOISE = ((0.01, 0.1), (0.02, 0.2), (0.03, 0.3), (0.04, 0.4), (0.05, 0.5))
LOW_LIGHT = ((0.65, 0.002), (0.5, 0.004), (0.38, 0.006), (0.28, 0.01), (0.2, 0.015))


@functools.cache
def _albumentations() -> Any:
    # albumentations asks PyPI for a newer version at import unless told not to; never do that here
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import albumentations

    return albumentations


def _rain(A: Any, h: int, w: int, s: int) -> list[Any]:
    rain_type, width, blur, bright, slant = RAIN[s - 1]
    return [
        A.RandomRain(
            slant_range=(-slant, slant),
            drop_width=max(1, round(width * h / 1024)),
            blur_value=blur,
            brightness_coefficient=bright,
            rain_type=rain_type,
            p=1.0,
        )
    ]


def _sun_flare(A: Any, h: int, w: int, s: int) -> list[Any]:
    frac, circles = SUN_FLARE[s - 1]
    return [
        A.RandomSunFlare(
            flare_roi=(0.0, 0.0, 1.0, 0.5),
            src_radius=max(10, round(frac * math.hypot(h, w))),
            angle_range=(0.0, 1.0),
            num_flare_circles_range=circles,
            method="physics_based",
            p=1.0,
        )
    ]


def _shadow(A: Any, h: int, w: int, s: int) -> list[Any]:
    count, intensity = SHADOW[s - 1]
    return [
        A.RandomShadow(
            shadow_roi=(0.0, 0.0, 1.0, 1.0),
            num_shadows_limit=count,
            shadow_dimension=5,
            shadow_intensity_range=(intensity, intensity),
            p=1.0,
        )
    ]


def _iso_noise(A: Any, h: int, w: int, s: int) -> list[Any]:
    shift, intensity = ISO_NOISE[s - 1]
    return [A.ISONoise(color_shift=(shift, shift), intensity=(intensity, intensity), p=1.0)]


def _low_light(A: Any, h: int, w: int, s: int) -> list[Any]:
    gain, scale = LOW_LIGHT[s - 1]
    return [
        A.RandomBrightnessContrast(brightness_limit=(0.0, 0.0), contrast_limit=(gain - 1, gain - 1), p=1.0),
        A.ShotNoise(scale_range=(scale, scale), p=1.0),
    ]


_BUILDERS: dict[str, Callable[[Any, int, int, int], list[Any]]] = {
    "rain": _rain,
    "sun_flare": _sun_flare,
    "shadow": _shadow,
    "iso_noise": _iso_noise,
    "low_light": _low_light,
}


def pipeline(name: str, height: int, width: int, severity: int, seed: int) -> Any:
    """The seeded ``A.Compose`` that ``name`` applies to an image of ``height x width``."""
    A = _albumentations()
    return A.Compose(_BUILDERS[name](A, height, width, severity), p=1.0, seed=int(seed))


def _make(name: str) -> Callable[[np.ndarray, int, int], np.ndarray]:
    def apply(image: np.ndarray, severity: int, seed: int) -> np.ndarray:
        h, w = image.shape[:2]
        out = pipeline(name, h, w, severity, seed)(image=np.ascontiguousarray(image))["image"]
        return np.asarray(out, dtype=np.uint8)

    apply.__name__ = name
    apply.__doc__ = f"{name} through albumentations 2.0.8 at our severity table (see module docstring)."
    return apply


for _name in EXTRA_CORRUPTION_NAMES:
    CORRUPTIONS.register(_name, Corruption(name=_name, apply=_make(_name), family="extra", reference=REFERENCE))
