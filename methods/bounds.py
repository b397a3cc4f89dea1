"""Proofs, on the model grid, that a prompt's full-resolution map cannot change the labels.

The fused map of a prompt is ``max(inst, sem) * presence`` with ``inst = max_q sigmoid(resize(mask_q)) *
score_q`` (:mod:`.fusion`). Rounding is monotone (for ``p >= 0``, ``a <= b`` implies ``fl(a * p) <= fl(b *
p)``), so the map is the max of its parts' maps ``sigmoid(resize(mask_q)) * score_q * presence`` and
``sigmoid(resize(sem)) * presence``, each computed as :mod:`.fusion` computes it. A part that is at or
below the running floor (:meth:`.running.RunningLabels.floor`) at every pixel can be left out: where the
prompt's map exceeds the floor another part gives that value, and elsewhere the prompt changes nothing
with or without it. So can the whole prompt when every part can.

The test runs on the model grid. The bilinear resize (``align_corners=False``) computes output row ``y``
from source rows ``i0(y)`` and ``i0(y) + 1`` with ``i0 = floor(max((y + 0.5) * h / H - 0.5, 0))``, as a
convex combination; so on the block of output pixels whose ``i0`` is ``i`` (and ``j0`` is ``j``) a resized
map is at most the max of the source over rows ``i - 1 .. i + 2`` and columns ``j - 1 .. j + 2`` (one
row and column of slack on each side for a float32 ``i0`` that rounds the other way). Margins cover the
rest of the rounding: ``1e-5`` relative on the logit and on the sigmoid, which is mathematically
increasing (fp32 implementations are within a few ulps of it), and ``1e-37`` absolute for subnormal
results. The floor is taken per block as its minimum over the block's pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["GridGeometry", "PromptPlan", "plan_prompt", "window_max"]

REL = 1e-5  # relative slack on logits and on the sigmoid
ABS = 1e-37  # absolute slack: fp32 subnormals near 0


def _source_index(out_len: int, in_len: int) -> torch.Tensor:
    """int64 [out_len]: ``i0`` of each output index (bilinear, align_corners False), in float64."""
    src = (torch.arange(out_len, dtype=torch.float64) + 0.5) * (in_len / out_len) - 0.5
    return src.clamp_min(0).floor().long().clamp_max(in_len - 1)


def window_max(x: torch.Tensor) -> torch.Tensor:
    """float [..., h, w]: the max of ``x`` over rows ``i - 1 .. i + 2`` and columns ``j - 1 .. j + 2`` (clipped)."""
    p = F.pad(x, (1, 2, 1, 2), value=float("-inf"))
    h, w = x.shape[-2:]
    rows = torch.maximum(torch.maximum(p[..., 0:h, :], p[..., 1:h + 1, :]),
                         torch.maximum(p[..., 2:h + 2, :], p[..., 3:h + 3, :]))
    return torch.maximum(torch.maximum(rows[..., 0:w], rows[..., 1:w + 1]),
                         torch.maximum(rows[..., 2:w + 2], rows[..., 3:w + 3]))


def sigmoid_upper(logits: torch.Tensor) -> torch.Tensor:
    """float64 [..., h, w]: an upper bound of fp32 ``sigmoid(resize(logits))`` on each output block."""
    m = window_max(logits.float()).double()
    m = m + m.abs() * REL + REL
    return torch.sigmoid(m) * (1 + REL) + ABS


class GridGeometry:
    """Blocks of output pixels by their source cell, for a model grid (h, w) and an image (H, W)."""

    def __init__(self, grid_hw: tuple[int, int], out_hw: tuple[int, int], device: torch.device | str):
        self.grid_hw = (int(grid_hw[0]), int(grid_hw[1]))
        self.out_hw = (int(out_hw[0]), int(out_hw[1]))
        self.rows = _source_index(self.out_hw[0], self.grid_hw[0]).to(device)
        self.cols = _source_index(self.out_hw[1], self.grid_hw[1]).to(device)

    def block_min(self, floor: torch.Tensor) -> torch.Tensor:
        """float64 [h, w]: the min of ``floor`` [H, W] over each block (+inf for blocks without pixels)."""
        (h, w), (hh, ww) = self.grid_hw, self.out_hw
        rows = floor.new_full((h, ww), float("inf")).scatter_reduce_(
            0, self.rows[:, None].expand(hh, ww), floor, "amin")
        out = floor.new_full((h, w), float("inf")).scatter_reduce_(
            1, self.cols[None, :].expand(h, ww), rows, "amin")
        return out.double()


@dataclass
class PromptPlan:
    """What of a prompt must be fused: None = nothing (the prompt cannot change the labels)."""

    instances: torch.Tensor  # bool [Q]: kept instances that may exceed the floor
    semantic: bool  # whether the semantic map may exceed it


SURE = 30.0  # a logit above which sigmoid is 1 to fp32 precision: a quick sign that a part is needed


def _needed(logits: torch.Tensor, factor: torch.Tensor, floor: torch.Tensor) -> torch.Tensor:
    """bool [n]: whether each map of ``logits`` [n, h, w], scaled by ``factor`` [n] (score x presence),
    may exceed ``floor`` [h, w] (float64) on some block; False only with a proof.

    A block can hold a value above the floor only where the floor is below ``factor`` (sigmoid <= 1): the
    "open" blocks. A map with no open block is proven irrelevant; one with a logit above :data:`SURE` in
    an open cell is taken as needed without a proof (always safe); the rest get the exact bound.
    """
    cap = factor.double() * (1 + REL) ** 2 + ABS  # the bound where sigmoid = 1
    open_ = ~(floor[None] >= cap[:, None, None])  # [n, h, w]; a NaN factor leaves every block open
    need = open_.flatten(1).any(1)
    sure = (open_ & (logits > SURE)).flatten(1).any(1)
    check = (need & ~sure).nonzero().flatten()
    if check.numel():
        upper = sigmoid_upper(logits[check]) * cap[check, None, None] + ABS
        need[check] = ~(upper <= floor).flatten(1).all(1)
    return need


def plan_prompt(
    floor_blocks: Callable[[tuple[int, int]], torch.Tensor],
    mask_logits: torch.Tensor,
    scores: torch.Tensor,
    keep: torch.Tensor,
    semantic_logits: torch.Tensor | None,
    presence: torch.Tensor,
) -> PromptPlan | None:
    """Which parts of one prompt can exceed the floor somewhere (a NaN bound counts as "can").

    Args:
        floor_blocks: grid (h, w) -> float64 [h, w], the floor's :meth:`GridGeometry.block_min` for that grid.
        mask_logits: float [Q, h, w]; scores: [Q]; keep: bool [Q] (``scores > conf``).
        semantic_logits: float [h', w'] or None; presence: 0-dim.
    Returns:
        None when no part can (skip the prompt), else the parts that may.
    """
    p = presence.double()
    need = torch.zeros_like(keep)
    idx = keep.nonzero().flatten()
    if idx.numel():
        floor = floor_blocks(tuple(mask_logits.shape[-2:]))
        need[idx] = _needed(mask_logits[idx].float(), scores[idx].double() * p, floor)
    semantic = False
    if semantic_logits is not None:
        floor = floor_blocks(tuple(semantic_logits.shape[-2:]))
        semantic = bool(_needed(semantic_logits[None].float(), p.reshape(1), floor)[0])
    if not semantic and not bool(need.any()):
        return None
    return PromptPlan(need, semantic)
