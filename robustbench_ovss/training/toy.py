"""A minimal stand-in scene generator for unit tests of the training code (not the benchmark).

Concept k (1..K) is an ellipse with a fixed colour and stripe frequency; 0 is a noisy background.
Deterministic in ``seed``. The demo model is trained on ``robustbench_ovss.datasets.synthetic``.
"""

from __future__ import annotations

import numpy as np

from .batching import Scene


def toy_scenes(n: int, size: int = 112, num_concepts: int = 6, seed: int = 0) -> list[Scene]:
    rng = np.random.default_rng(seed)
    crng = np.random.default_rng(1234)
    colours = crng.integers(30, 226, size=(num_concepts + 1, 3))
    freqs = crng.uniform(0.1, 0.6, size=num_concepts + 1)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    out = []
    for _ in range(n):
        img = (rng.normal(128, 20, size=(size, size, 3))).clip(0, 255)
        label = np.zeros((size, size), np.uint8)
        instances = []
        for _k in range(rng.integers(1, 4)):
            c = int(rng.integers(1, num_concepts + 1))
            cy, cx = rng.uniform(0.2, 0.8, 2) * size
            ry, rx = rng.uniform(0.1, 0.3, 2) * size
            m = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
            stripes = 0.5 + 0.5 * np.sin(freqs[c] * (xx + yy))
            tex = colours[c][None, None, :] * (0.6 + 0.4 * stripes[..., None])
            img[m] = tex[m]
            label[m] = c
            for j, (ci, mm) in enumerate(instances):
                instances[j] = (ci, mm & ~m)
            instances.append((c, m))
        out.append(Scene(img.astype(np.uint8), label, [(c, m) for c, m in instances if m.any()]))
    return out
