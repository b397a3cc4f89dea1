"""``synthetic``: procedurally generated scenes of named concepts with exact labels (DESIGN §12).

Needs no files. Every image is a pure function of ``(seed, split, index)`` and the options: the random
generator of an image is seeded from ``sha256("ovss-bench synthetic v<VERSION>|<split>|<seed>|<index>")``,
so the same seed gives the same bytes in any process (numpy + OpenCV on the same platform; the label
geometry is integer-exact everywhere).

Scenes
    A cluttered, textured background (two muted colours blended by low-frequency noise, an optional
    ground plane, mid-frequency grain, 5-12 muted clutter strokes and blobs), then 1..``max_concepts``
    distinct concepts with 1-3 instances each (at most 10 objects), drawn large-to-small so that small
    objects occlude large ones; each object casts a hard shadow on what lies under it. Objects cover
    ~2% to ~40% of the image each (log-uniform; further instances of a concept 2-12%), may be cut by
    the image border, and keep at least 30% of their area visible (re-placed otherwise). A slight blur
    and sensor grain finish the image.

Concept appearance (deterministic from the concept's index ``c`` in ``configs/vocab/synthetic.txt``)
    * primary colour ``PALETTE[c % 16]``, group ``g = c // 16``, secondary colour
      ``PALETTE[(c + OFFSETS[g % 15]) % 16]``;
    * texture family ``TEXTURES[(g + c) % 8]`` (mottled, stripes, checker, dots, waves, rings, grid,
      spots; shifted by 4 for the upper half of a group whose offset is 8, see below) drawn in the two
      colours, with a concept-specific period (3.5%..7% of the image side) and random orientation per
      instance;
    * shape family ``SHAPES[(c + 3 g) % 6]`` with per-instance aspect, rotation and wobble.
    Up to 16 concepts differ by primary colour. The offsets of groups 0-7 are 1..8 in some order, so
    the first 120 concepts are exactly the C(16, 2) = 120 unordered colour pairs: every colour appears
    in 15 of them, so a pixel's colour alone cannot name a concept, but the local two-colour pattern
    does (stripes, checker, waves and rings look the same with their colours swapped, so a swapped
    pair with the same texture would be a duplicate; version 1 had such duplicates). Groups 8-14 use
    the complementary offsets: the same pairs again, told apart by texture; up to 240 concepts have
    distinct appearances. Per-instance brightness, tint and shading vary the look.
    Shape is a weak cue by design: a tiny model learns colour + texture in minutes on a CPU, shape not.

Labels
    With ``background=True`` (default) label 0 is the class ``background`` (a prompt, as in VOC21), with
    ``bg_idx = 0`` and ``prob_thd = 0.4`` (the VOC21 / COCO-Object reference default), and concept ``k``
    of the vocabulary has label ``k + 1``. This exercises the background rule of every method (and
    ActiveSAM's margin calibration). With ``background=False`` background pixels are 255 (ignored),
    concepts are labels ``0..vocab_size-1``, ``bg_idx = None`` and ``prob_thd = 0.0``.
    The vocabulary is the first ``vocab_size`` concepts of the packaged list (so vocabularies nest and a
    concept keeps its look at every size).

Training access: :func:`render_scene` / :func:`render_batch` return :class:`Scene` objects with the image,
the label map and per-object instance masks (visible pixels only).
"""

from __future__ import annotations

import colorsys
import hashlib
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np

from ..errors import ConfigError
from ..registry import DATASETS
from .base import Dataset
from .vocabulary import packaged_vocabulary, resolve_vocabulary

__all__ = [
    "GENERATOR_VERSION",
    "PALETTE",
    "SHAPES",
    "TEXTURES",
    "ConceptStyle",
    "Scene",
    "SyntheticDataset",
    "concept_names",
    "concept_style",
    "render_batch",
    "render_scene",
]

GENERATOR_VERSION = 2

#: The 16 concept colours (RGB), chosen >= 16 CIEDE2000 apart from each other.
PALETTE = np.array(
    [
        (215, 35, 35),  # red
        (245, 135, 20),  # orange
        (245, 215, 30),  # yellow
        (140, 210, 40),  # lime
        (25, 130, 45),  # green
        (20, 150, 145),  # teal
        (80, 215, 235),  # cyan
        (60, 110, 225),  # azure
        (30, 30, 140),  # navy
        (125, 55, 195),  # violet
        (215, 45, 185),  # magenta
        (250, 160, 195),  # pink
        (115, 65, 25),  # brown
        (245, 245, 240),  # white
        (20, 20, 25),  # black
        (130, 20, 55),  # maroon
    ],
    dtype=np.float32,
)
COLOUR_NAMES = (
    "red", "orange", "yellow", "lime", "green", "teal", "cyan", "azure",
    "navy", "violet", "magenta", "pink", "brown", "white", "black", "maroon",
)  # fmt: skip
TEXTURES = ("mottled", "stripes", "checker", "dots", "waves", "rings", "grid", "spots")
SHAPES = ("ellipse", "blob", "flower", "rounded-box", "triangle", "egg")
# secondary colour = primary + offset (mod 16); groups 0-7 cover every unordered pair once (module doc)
OFFSETS = (5, 3, 7, 1, 6, 2, 4, 8, 11, 13, 9, 15, 10, 14, 12)

MAX_OBJECTS = 10
MIN_AREA, MAX_AREA, MAX_EXTRA_AREA = 0.02, 0.40, 0.12
MIN_VISIBLE = 0.30  # fraction of an object's in-image area that must stay visible
_SHARP = 4.0  # edge sharpness of the texture patterns


@dataclass(frozen=True)
class ConceptStyle:
    """How concept ``index`` looks: colours (RGB float), texture and shape family, texture period
    as a fraction of the image's shorter side."""

    index: int
    primary: tuple[float, float, float]
    secondary: tuple[float, float, float]
    texture: str
    shape: str
    period: float

    @property
    def description(self) -> str:
        p, s = (COLOUR_NAMES[int(i)] for i in _colour_ids(self.index))
        return f"{p}/{s} {self.texture} {self.shape}"


def _colour_ids(c: int) -> tuple[int, int]:
    g = c // 16
    return c % 16, (c + OFFSETS[g % 15]) % 16


def concept_style(c: int) -> ConceptStyle:
    """The deterministic appearance of concept ``c`` (0-based index into the concept list)."""
    if c < 0:
        raise ValueError(f"concept index must be >= 0, got {c}")
    g = c // 16
    p, s = _colour_ids(c)
    period = 0.035 + 0.035 * ((c * 7) % 11) / 10.0
    return ConceptStyle(
        index=c,
        primary=tuple(float(x) for x in PALETTE[p]),  # type: ignore[arg-type]
        secondary=tuple(float(x) for x in PALETTE[s]),  # type: ignore[arg-type]
        texture=TEXTURES[(g + c + (4 if s == (p + 8) % 16 and p >= 8 else 0)) % len(TEXTURES)],
        shape=SHAPES[(c + 3 * g) % len(SHAPES)],
        period=period,
    )


@lru_cache(maxsize=1)
def concept_names() -> tuple[str, ...]:
    """All concept names of ``configs/vocab/synthetic.txt`` (without the leading ``background`` line)."""
    vocab = packaged_vocabulary("synthetic")
    return tuple(a[0] for a in vocab[1:])


def _background_line() -> list[str]:
    return packaged_vocabulary("synthetic")[0]


# -- scenes -----------------------------------------------------------------------------------------


@dataclass
class Scene:
    """One rendered scene.

    Attributes:
        image: ``uint8 [H, W, 3]`` RGB.
        label: ``uint8 [H, W]`` label ids (see module doc), 255 = ignore (background when
            ``background=False``).
        instance_map: ``uint8 [H, W]``: 0 where no object is visible, ``k`` where object ``k - 1`` is.
        instance_labels: label id of each object (length N, drawing order: large to small).
        instance_concepts: concept index of each object.
        areas: in-image area of each object in pixels, before occlusion.
        visible: visible pixels of each object.
    """

    image: np.ndarray
    label: np.ndarray
    instance_map: np.ndarray
    instance_labels: list[int] = field(default_factory=list)
    instance_concepts: list[int] = field(default_factory=list)
    areas: list[int] = field(default_factory=list)
    visible: list[int] = field(default_factory=list)

    def instance_masks(self) -> np.ndarray:
        """``bool [N, H, W]``: the visible pixels of each object."""
        n = len(self.instance_labels)
        return self.instance_map[None] == np.arange(1, n + 1, dtype=np.uint8)[:, None, None]

    @property
    def concepts(self) -> list[int]:
        """Sorted distinct concept indices present."""
        return sorted(set(self.instance_concepts))


def _rng(seed: int, split: str, index: int) -> np.random.Generator:
    key = f"ovss-bench synthetic v{GENERATOR_VERSION}|{split}|{seed}|{index}".encode()
    return np.random.Generator(np.random.PCG64(int.from_bytes(hashlib.sha256(key).digest()[:8], "little")))


def _size_hw(size: int | Iterable[int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        h = w = int(size)
    else:
        vals = list(size)  # type: ignore[arg-type]
        if len(vals) != 2:
            raise ConfigError(f"synthetic: size must be an integer or [height, width], got {size!r}")
        h, w = (int(v) for v in vals)
    if min(h, w) < 32 or max(h, w) > 4096:
        raise ConfigError(f"synthetic: size must be within 32..4096 pixels, got {h}x{w}")
    return h, w


def render_scene(
    index: int,
    *,
    seed: int = 0,
    split: str = "val",
    size: int | tuple[int, int] = 256,
    vocab_size: int = 120,
    max_concepts: int = 5,
    min_concepts: int = 1,
    background: bool = True,
) -> Scene:
    """Render scene ``index`` of the ``(seed, split)`` stream.

    Args:
        index: scene number (>= 0).
        seed: stream seed; ``split`` ("val", "train", or any name) selects an independent stream.
        size: output side, or ``(height, width)``.
        vocab_size: concepts to draw from (the first ``vocab_size`` of the packaged list).
        max_concepts, min_concepts: range of distinct concepts per scene (uniform).
        background: label background pixels 0 (True) or 255 (False); see the module doc.

    Returns:
        A :class:`Scene` (image ``uint8 [H, W, 3]``, label ``uint8 [H, W]``, instance masks).
    """
    h, w = _size_hw(size)
    _check_counts(vocab_size, max_concepts, min_concepts)
    rng = _rng(seed, split, index)
    n_concepts = int(rng.integers(min_concepts, max_concepts + 1))
    chosen = [int(c) for c in rng.choice(vocab_size, size=n_concepts, replace=False)]
    objects = _sample_objects(rng, chosen, h, w)
    image = _background(rng, h, w)
    inst = _compose(objects, h, w)
    for k, obj in enumerate(objects):
        _draw_object(rng, image, obj, inst, k + 1, h, w)
    image = _finish(rng, image)
    counts = np.bincount(inst.ravel(), minlength=len(objects) + 1)
    offset = 1 if background else 0
    lut = np.full(256, 0 if background else 255, dtype=np.uint8)
    labels = [obj.concept + offset for obj in objects]
    lut[1 : len(objects) + 1] = labels
    return Scene(
        image=image,
        label=lut[inst],
        instance_map=inst,
        instance_labels=labels,
        instance_concepts=[obj.concept for obj in objects],
        areas=[obj.area for obj in objects],
        visible=[int(v) for v in counts[1:]],
    )


def render_batch(indices: Iterable[int], **kwargs: Any) -> list[Scene]:
    """:func:`render_scene` for each index (same keyword arguments), e.g. a training batch."""
    return [render_scene(int(i), **kwargs) for i in indices]


def _check_counts(vocab_size: int, max_concepts: int, min_concepts: int) -> None:
    n = len(concept_names())
    if not 1 <= vocab_size <= n:
        raise ConfigError(f"synthetic: vocab_size must be within 1..{n} (configs/vocab/synthetic.txt), got {vocab_size}")
    if not 1 <= min_concepts <= max_concepts <= min(5, vocab_size):
        raise ConfigError(
            f"synthetic: need 1 <= min_concepts <= max_concepts <= min(5, vocab_size), got {min_concepts}, {max_concepts}"
        )


# -- geometry ---------------------------------------------------------------------------------------


@dataclass
class _Object:
    concept: int
    pts: np.ndarray  # float (n, 2) polygon in image coordinates (x, y)
    cx: float
    cy: float
    radius: float
    box: tuple[int, int, int, int] = (0, 0, 0, 0)  # y0, y1, x0, x1 (clipped to the image)
    mask: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), bool))  # bool, box-sized
    area: int = 0


_THETA = np.linspace(0.0, 2.0 * np.pi, 48, endpoint=False)


def _unit_shape(rng: np.random.Generator, shape: str) -> np.ndarray:
    """A closed polygon ``float (48, 2)`` around the origin, radius ~1, randomly rotated and stretched."""
    t = _THETA
    if shape == "ellipse":
        r = np.ones_like(t)
    elif shape == "blob":
        r = 1.0 + sum(rng.uniform(0.06, 0.14) * np.sin(k * t + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 4))
    elif shape == "flower":
        k = int(rng.integers(5, 8))
        r = 1.0 + rng.uniform(0.18, 0.3) * np.sin(k * t + rng.uniform(0, 2 * np.pi))
    elif shape == "rounded-box":
        p = rng.uniform(3.0, 6.0)
        r = (np.abs(np.cos(t)) ** p + np.abs(np.sin(t)) ** p) ** (-1.0 / p)
    elif shape == "triangle":
        r = 1.0 / (1.0 + rng.uniform(0.25, 0.4) * np.cos(3 * t))
    else:  # egg
        r = 1.0 + rng.uniform(0.18, 0.3) * np.cos(t)
    r = r * (1.0 + 0.04 * np.sin(rng.integers(5, 9) * t + rng.uniform(0, 2 * np.pi)))  # wobble
    aspect = rng.uniform(0.6, 1.0)
    x, y = r * np.cos(t), r * np.sin(t) * aspect
    a = rng.uniform(0, 2 * np.pi)
    ca, sa = math.cos(a), math.sin(a)
    return np.stack([x * ca - y * sa, x * sa + y * ca], axis=1)


def _poly_area(pts: np.ndarray) -> float:
    x, y = pts[:, 0], pts[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _sample_areas(rng: np.random.Generator, n_first: int, n_extra: int) -> tuple[list[float], list[float]]:
    lo, hi, hi2 = math.log(MIN_AREA), math.log(MAX_AREA), math.log(MAX_EXTRA_AREA)
    for _ in range(20):
        first = [math.exp(rng.uniform(lo, hi)) for _ in range(n_first)]
        extra = [math.exp(rng.uniform(lo, hi2)) for _ in range(n_extra)]
        if sum(first) + sum(extra) <= 0.9:
            return first, extra
    scale = 0.9 / (sum(first) + sum(extra))
    return [max(MIN_AREA, a * scale) for a in first], [max(MIN_AREA, a * scale) for a in extra]


def _place(rng: np.random.Generator, obj: _Object, unit: np.ndarray, scale: float, h: int, w: int) -> None:
    """Choose a centre (at most ~40% of the object's half-extent outside the image) and rasterise."""
    pts = unit * scale
    hx, hy = float(np.abs(pts[:, 0]).max()), float(np.abs(pts[:, 1]).max())
    for _ in range(8):
        cx = rng.uniform(min(0.6 * hx, w / 2), max(w - 0.6 * hx, w / 2))
        cy = rng.uniform(min(0.6 * hy, h / 2), max(h - 0.6 * hy, h / 2))
        _rasterise(obj, pts + (cx, cy), cx, cy, h, w)
        if obj.area >= 0.6 * _poly_area(pts):
            break


def _rasterise(obj: _Object, pts: np.ndarray, cx: float, cy: float, h: int, w: int) -> None:
    x0 = max(math.floor(pts[:, 0].min()), 0)
    x1 = min(math.ceil(pts[:, 0].max()) + 1, w)
    y0 = max(math.floor(pts[:, 1].min()), 0)
    y1 = min(math.ceil(pts[:, 1].max()) + 1, h)
    mask = np.zeros((max(y1 - y0, 1), max(x1 - x0, 1)), np.uint8)
    fixed = np.round((pts - (x0, y0)) * 16.0).astype(np.int32)  # 4 fractional bits
    cv2.fillPoly(mask, [fixed], 1, lineType=cv2.LINE_8, shift=4)
    obj.pts, obj.cx, obj.cy = pts, cx, cy
    obj.box = (y0, y1, x0, x1)
    obj.mask = mask[: y1 - y0, : x1 - x0].astype(bool)
    obj.area = int(obj.mask.sum())


def _compose(objects: list[_Object], h: int, w: int) -> np.ndarray:
    inst = np.zeros((h, w), np.uint8)
    for k, obj in enumerate(objects):
        y0, y1, x0, x1 = obj.box
        inst[y0:y1, x0:x1][obj.mask] = k + 1
    return inst


def _sample_objects(rng: np.random.Generator, chosen: list[int], h: int, w: int) -> list[_Object]:
    counts = [1 + int(rng.choice(3, p=(0.6, 0.3, 0.1))) for _ in chosen]
    while sum(counts) > MAX_OBJECTS:
        counts[counts.index(max(counts))] -= 1
    n_extra = sum(counts) - len(chosen)
    first, extra = _sample_areas(rng, len(chosen), n_extra)
    specs: list[tuple[int, float]] = [(c, a) for c, a in zip(chosen, first)]
    it = iter(extra)
    for c, n in zip(chosen, counts):
        specs.extend((c, next(it)) for _ in range(n - 1))
    specs.sort(key=lambda s: -s[1])  # large first: small objects occlude large ones
    total = float(h * w)
    objects: list[_Object] = []
    units: list[tuple[np.ndarray, float]] = []
    for c, frac in specs:
        unit = _unit_shape(rng, concept_style(c).shape)
        scale = math.sqrt(frac * total / _poly_area(unit))
        obj = _Object(concept=c, pts=unit, cx=0.0, cy=0.0, radius=scale)
        _place(rng, obj, unit, scale, h, w)
        objects.append(obj)
        units.append((unit, scale))
    # keep every object at least MIN_VISIBLE visible: re-place occluded ones, then give up on extras
    for _ in range(4):
        bad = _occluded(objects, h, w)
        if not bad:
            break
        for k in bad:
            _place(rng, objects[k], units[k][0], units[k][1], h, w)
    # still occluded: lift the last instance of a concept to the top, drop the other occluded ones
    for _ in range(3):
        bad = set(_occluded(objects, h, w))
        if not bad:
            return objects
        good_concepts = {o.concept for k, o in enumerate(objects) if k not in bad}
        lifted: dict[int, _Object] = {}
        for k in sorted(bad):
            c = objects[k].concept
            if c not in good_concepts and c not in lifted:
                lifted[c] = objects[k]
        objects = [o for k, o in enumerate(objects) if k not in bad] + list(lifted.values())
    # last resort: drop whatever is still occluded (dropping only uncovers the others; the top object stays)
    bad = set(_occluded(objects, h, w))
    return [o for k, o in enumerate(objects) if k not in bad]


def _occluded(objects: list[_Object], h: int, w: int) -> list[int]:
    inst = _compose(objects, h, w)
    vis = np.bincount(inst.ravel(), minlength=len(objects) + 1)[1:]
    min_px = 0.003 * h * w
    return [k for k, o in enumerate(objects) if vis[k] < max(MIN_VISIBLE * o.area, min_px)]


# -- appearance -------------------------------------------------------------------------------------


def _muted(rng: np.random.Generator) -> np.ndarray:
    r, g, b = colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.04, 0.3), rng.uniform(0.3, 0.8))
    return np.array((r * 255, g * 255, b * 255), np.float32)


def _noise(rng: np.random.Generator, h: int, w: int, cells_y: int, cells_x: int) -> np.ndarray:
    """Smooth noise ``float32 [h, w]`` in ~0..1 from a random (cells_y+1, cells_x+1) grid (bicubic)."""
    grid = rng.random((max(cells_y, 1) + 1, max(cells_x, 1) + 1), dtype=np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Muted two-colour field, optional ground plane and grain (computed at 1/4 size), plus clutter."""
    hq, wq = max(h // 4, 8), max(w // 4, 8)
    a, b = _muted(rng), _muted(rng)
    t = _noise(rng, hq, wq, int(rng.integers(2, 5)), int(rng.integers(2, 5)))
    img = a + t[..., None] * (b - a)
    if rng.random() < 0.6:  # a ground plane below a tilted horizon
        ground = _muted(rng)
        y = np.arange(hq, dtype=np.float32)[:, None]
        x = np.arange(wq, dtype=np.float32)[None, :]
        horizon = hq * rng.uniform(0.35, 0.75) + (x - wq / 2) * rng.uniform(-0.3, 0.3)
        g = np.clip(y - horizon, 0.0, 1.0)
        img += g[..., None] * (ground - img)
    grain = _noise(rng, hq, wq, max(hq // 3, 2), max(wq // 3, 2))
    img *= (0.88 + 0.24 * grain)[..., None]
    small = np.clip(img, 0, 255).astype(np.uint8)
    out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    side = min(h, w)
    for _ in range(int(rng.integers(5, 13))):  # clutter
        col = tuple(float(v) for v in _muted(rng))
        kind = int(rng.integers(4))
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        if kind == 0:
            p2 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            cv2.line(out, p1, p2, col, int(rng.integers(1, max(2, side // 64))), cv2.LINE_AA)
        elif kind == 1:
            cv2.circle(out, p1, int(side * rng.uniform(0.01, 0.06)), col, -1, cv2.LINE_AA)
        elif kind == 2:
            axes = (int(side * rng.uniform(0.02, 0.12)), int(side * rng.uniform(0.01, 0.05)))
            cv2.ellipse(out, p1, axes, float(rng.uniform(0, 180)), 0, 360, col, -1, cv2.LINE_AA)
        else:
            p2 = (p1[0] + int(side * rng.uniform(0.03, 0.15)), p1[1] + int(side * rng.uniform(0.03, 0.15)))
            cv2.rectangle(out, p1, p2, col, int(rng.choice([-1, 1, 2])))
    return out


def _sstep(x: np.ndarray) -> np.ndarray:
    return np.clip(x * _SHARP + 0.5, 0.0, 1.0)


def _texture_weight(
    rng: np.random.Generator, texture: str, u: np.ndarray, v: np.ndarray, period: float, where: tuple[np.ndarray, ...],
    box: tuple[int, int],
) -> np.ndarray:
    """Weight of the secondary colour, ``float32`` in 0..1, at pixels with coordinates ``u, v`` (in
    periods, 1-D); ``where`` are the pixels' (row, col) inside the object's box of shape ``box``."""
    two_pi = np.float32(2 * np.pi)
    hh, ww = box
    if texture == "mottled":
        n = _noise(rng, hh, ww, max(int(hh / (2.0 * period)), 1), max(int(ww / (2.0 * period)), 1))[where]
        return np.clip((n - 0.35) * 2.0, 0.0, 0.8)
    if texture == "stripes":
        return _sstep(np.sin(two_pi * u))
    if texture == "checker":
        return _sstep(np.sin(two_pi * u) * np.sin(two_pi * v))
    if texture == "dots":
        fu, fv = u - np.floor(u) - 0.5, v - np.floor(v) - 0.5
        return _sstep((0.09 - (fu * fu + fv * fv)) * 8.0)
    if texture == "waves":
        return _sstep(np.sin(two_pi * (u + 0.3 * np.sin(np.float32(np.pi) * v))))
    if texture == "rings":
        return _sstep(np.sin(two_pi * np.sqrt(u * u + v * v)))
    if texture == "grid":
        du, dv = np.abs(u - np.floor(u) - 0.5), np.abs(v - np.floor(v) - 0.5)
        return _sstep((np.maximum(du, dv) - 0.36) * 6.0)
    # spots: hard-edged blobs of period-sized noise
    n = _noise(rng, hh, ww, max(int(hh / (0.8 * period)), 1), max(int(ww / (0.8 * period)), 1))[where]
    return _sstep((n - 0.58) * 3.0)


def _draw_object(
    rng: np.random.Generator, image: np.ndarray, obj: _Object, inst: np.ndarray, k: int, h: int, w: int
) -> None:
    """Paint the object's shadow under it and its textured, shaded body where it is visible (``inst == k``)."""
    style = concept_style(obj.concept)
    y0, y1, x0, x1 = obj.box
    mask = obj.mask
    # hard shadow, offset away from the light, on whatever lies below (never on this object)
    light = rng.uniform(0, 2 * np.pi)
    lx, ly = math.cos(light), math.sin(light)
    off = max(1, round(0.06 * obj.radius))
    dx, dy = round(-lx * off), round(-ly * off)
    sy0, sy1, sx0, sx1 = max(y0 + dy, 0), min(y1 + dy, h), max(x0 + dx, 0), min(x1 + dx, w)
    if sy1 > sy0 and sx1 > sx0:
        sub = mask[sy0 - y0 - dy : sy1 - y0 - dy, sx0 - x0 - dx : sx1 - x0 - dx]
        region = image[sy0:sy1, sx0:sx1]
        region[sub] = (region[sub] * np.float32(0.62)).astype(np.uint8)
    # body, computed only at the visible pixels
    where = np.nonzero(inst[y0:y1, x0:x1] == k)
    period_px = style.period * min(h, w) * rng.uniform(0.85, 1.15)
    ys = where[0].astype(np.float32) + np.float32(y0 - obj.cy)
    xs = where[1].astype(np.float32) + np.float32(x0 - obj.cx)
    a = rng.uniform(0, 2 * np.pi)
    ca, sa = np.float32(math.cos(a) / period_px), np.float32(math.sin(a) / period_px)
    u = xs * ca + ys * sa
    v = ys * ca - xs * sa
    wgt = _texture_weight(rng, style.texture, u, v, period_px, where, (y1 - y0, x1 - x0))
    bright = rng.uniform(0.85, 1.1)
    tint = rng.uniform(-10, 10, 3).astype(np.float32)
    p = np.asarray(style.primary, np.float32) * np.float32(bright) + tint
    s = np.asarray(style.secondary, np.float32) * np.float32(bright) + tint
    shade = xs * np.float32(lx) + ys * np.float32(ly)
    shade *= np.float32(0.25 / max(obj.radius, 1.0))
    shade += np.float32(1.0)
    np.clip(shade, 0.72, 1.22, out=shade)
    body = p + wgt[:, None] * (s - p)
    body *= shade[:, None]
    np.clip(body, 0, 255, out=body)
    image[y0:y1, x0:x1][where] = body.astype(np.uint8)


def _finish(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Slight blur and +-3 sensor grain (saturating uint8 arithmetic)."""
    out = cv2.GaussianBlur(image, (3, 3), 0.6)
    grain = np.frombuffer(rng.bytes(out.size), np.uint8).reshape(out.shape) % np.uint8(7)
    out = cv2.add(out, grain)
    return cv2.subtract(out, np.full_like(out, 3))


# -- the dataset ------------------------------------------------------------------------------------


@DATASETS.register("synthetic")
class SyntheticDataset(Dataset):
    """Generated scenes of named concepts; options as :func:`render_scene` plus ``n_images``.

    ``root`` is ignored (no files). ``vocab`` may rename the classes (same number of lines as label ids).
    """

    name: ClassVar[str] = "synthetic"
    default_root: ClassVar[str] = ""
    split_size: ClassVar[int | None] = None
    OPTION_DEFAULTS: ClassVar[dict[str, Any] | None] = {
        "n_images": 64,
        "size": 256,
        "vocab_size": 120,
        "seed": 0,
        "max_concepts": 5,
        "min_concepts": 1,
        "split": "val",
        "background": True,
    }

    def __init__(self, root: str | Path | None = None, vocab: str | Path | None = None, **options: Any):
        unknown = sorted(set(options) - set(self.OPTION_DEFAULTS))
        if unknown:
            raise ConfigError(
                f"[datasets.options.synthetic] unknown option(s) {', '.join(unknown)} (allowed: {', '.join(self.OPTION_DEFAULTS)})"
            )
        opts = {**self.OPTION_DEFAULTS, **options}
        for key in ("n_images", "vocab_size", "seed", "max_concepts", "min_concepts"):
            val = opts[key]
            if isinstance(val, bool) or not isinstance(val, (int, np.integer)):
                raise ConfigError(f"[datasets.options.synthetic] {key} must be an integer, got {val!r}")
            opts[key] = int(val)
        if opts["n_images"] < 1:
            raise ConfigError(f"[datasets.options.synthetic] n_images must be >= 1, got {opts['n_images']}")
        if not isinstance(opts["split"], str) or not opts["split"]:
            raise ConfigError(f"[datasets.options.synthetic] split must be a non-empty string, got {opts['split']!r}")
        if not isinstance(opts["background"], bool):
            raise ConfigError(f"[datasets.options.synthetic] background must be true or false, got {opts['background']!r}")
        self.height, self.width = _size_hw(opts["size"])
        opts["size"] = [self.height, self.width]
        _check_counts(opts["vocab_size"], opts["max_concepts"], opts["min_concepts"])
        self.options = opts
        self.root = root
        default = [[n] for n in concept_names()[: opts["vocab_size"]]]
        if opts["background"]:
            default = [_background_line(), *default]
        self.classes = resolve_vocabulary(self.name, default, vocab)
        self.bg_idx = 0 if opts["background"] else None
        self.prob_thd = 0.4 if opts["background"] else 0.0

    def render(self, k: int) -> Scene:
        """The full :class:`Scene` of image ``k`` (with instance masks)."""
        o = self.options
        return render_scene(
            k, seed=o["seed"], split=o["split"], size=(self.height, self.width), vocab_size=o["vocab_size"],
            max_concepts=o["max_concepts"], min_concepts=o["min_concepts"], background=o["background"],
        )  # fmt: skip

    def image_id(self, k: int) -> str:
        return f"{self.options['split']}-s{self.options['seed']}-{k:06d}"

    @property
    def fingerprint(self) -> str:
        blob = json.dumps({"generator": GENERATOR_VERSION, **self.options}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def __len__(self) -> int:
        return self.options["n_images"]

    def __getitem__(self, k: int) -> tuple[str, np.ndarray, np.ndarray]:
        n = len(self)
        if not -n <= k < n:
            raise IndexError(f"synthetic: index {k} out of range 0..{n - 1}")
        k %= n
        scene = self.render(k)
        return self.image_id(k), scene.image, scene.label
