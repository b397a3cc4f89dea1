"""Batches of (image, prompt) pairs with their presence, semantic and instance targets.

A batch holds B scenes and P prompts per scene: every concept present in the scene (up to P) and
absent concepts drawn at random from the training vocabulary to fill the rest, so each step sees
positives and negatives of the same image (the presence head has to read the text).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class Scene:
    """One training scene.

    Attributes:
        image: uint8 [H, W, 3] RGB.
        label: integer [H, W] label ids, ``ignore_index`` where not evaluated.
        instances: (label id, bool [H, W] mask) per object instance.
    """

    image: np.ndarray
    label: np.ndarray
    instances: list[tuple[int, np.ndarray]] = field(default_factory=list)
    ignore_index: int = 255

    def present(self) -> list[int]:
        ids = np.unique(self.label)
        return [int(i) for i in ids if int(i) != self.ignore_index]


@dataclass
class PromptBatch:
    image_index: torch.Tensor  # long [N]
    class_id: torch.Tensor  # long [N]
    present: torch.Tensor  # bool [N]


def sample_prompts(
    scenes: Sequence[Scene],
    num_classes: int,
    prompts_per_image: int,
    rng: np.random.Generator,
    classes: Sequence[int] | None = None,
    negative_pool: Sequence[Sequence[int]] | None = None,
) -> PromptBatch:
    """P prompts per scene: its present concepts (a random subset if more than P), then absent ones.

    ``classes``: the label ids that may be prompted (default all ``num_classes``).
    ``negative_pool``: optional per-scene list of preferred (hard) negatives, used for up to half
    of the negatives; the rest are uniform over the absent classes.
    """
    allowed = np.asarray(list(range(num_classes)) if classes is None else list(classes), dtype=np.int64)
    img, cls, pres = [], [], []
    for b, s in enumerate(scenes):
        present = [c for c in s.present() if c in set(allowed.tolist())]
        if len(present) > prompts_per_image:
            present = list(rng.choice(present, size=prompts_per_image, replace=False))
        chosen = list(present)
        n_neg = prompts_per_image - len(chosen)
        absent = np.setdiff1d(allowed, np.asarray(s.present(), dtype=np.int64))
        if n_neg > 0 and negative_pool is not None and len(negative_pool[b]):
            hard = [c for c in negative_pool[b] if c in set(absent.tolist())]
            if hard:
                k = min(len(hard), (n_neg + 1) // 2)
                pick = list(rng.choice(hard, size=k, replace=False))
                chosen += pick
                absent = np.setdiff1d(absent, np.asarray(pick, dtype=np.int64))
                n_neg -= k
        if n_neg > 0 and len(absent):
            chosen += list(rng.choice(absent, size=min(n_neg, len(absent)), replace=False))
        for c in chosen:
            img.append(b)
            cls.append(int(c))
            pres.append(c in present or c in s.present())
    return PromptBatch(
        torch.as_tensor(img, dtype=torch.long),
        torch.as_tensor(cls, dtype=torch.long),
        torch.as_tensor(pres, dtype=torch.bool),
    )


def coverage(mask: np.ndarray | torch.Tensor, out_hw: tuple[int, int]) -> torch.Tensor:
    """Fraction of each output cell covered by ``mask`` [H, W] (area average), float [h, w]."""
    t = torch.as_tensor(np.asarray(mask), dtype=torch.float32)[None, None]
    return F.adaptive_avg_pool2d(t, out_hw)[0, 0]


def make_targets(
    scenes: Sequence[Scene], batch: PromptBatch, out_hw: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """Soft targets at the mask grid for every prompt of ``batch``.

    Returns (semantic [N, h, w], valid [N, h, w], instances: one float [K, h, w] per prompt; K = 0
    for an absent concept).
    """
    sem, valid, inst = [], [], []
    cache: dict[int, torch.Tensor] = {}
    for b, c in zip(batch.image_index.tolist(), batch.class_id.tolist()):
        s = scenes[b]
        sem.append(coverage(s.label == c, out_hw))
        if b not in cache:
            cache[b] = coverage(s.label != s.ignore_index, out_hw)
        valid.append(cache[b])
        ms = [coverage(m, out_hw) for (ci, m) in s.instances if ci == c and np.any(m)]
        inst.append(torch.stack(ms) if ms else torch.zeros((0, *out_hw)))
    return torch.stack(sem), torch.stack(valid), inst
