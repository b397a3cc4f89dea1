"""Labels from decoded prompts without the [C, H, W] map: fuse each prompt in reused buffers
(:class:`.fusion.PromptFuser`), skip what provably cannot change the result (:mod:`.bounds`), fold into a
running best / second best (:class:`.running.RunningLabels`). The labels equal the dense rules' on the
dense map of :func:`.fusion.fuse_prompts` (tested against it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch

from robustbench_ovss.backends.base import Decoded

from .bounds import GridGeometry, plan_prompt
from .fusion import PromptFuser, instance_scores
from .running import RunningLabels

__all__ = ["StreamingLabels"]


class StreamingLabels:
    """Running labels of one image, fed one decoded bucket at a time.

    Args:
        out_hw: (H, W) of the image.
        device: where the maps live.
        num_classes: C.
        second: keep the second-best score (margin-aware calibration).
        conf: instance confidence threshold (strict ``>``, in the scores' dtype).
        dtype: post-processing dtype of the scores and presence (:func:`.fusion.instance_scores`).
    """

    #: prove-and-skip (:mod:`.bounds`); the output is the same either way (a switch for benchmarks)
    skip_bounded: ClassVar[bool] = True

    def __init__(self, out_hw: tuple[int, int], device: torch.device | str, num_classes: int, second: bool,
                 conf: float, dtype: torch.dtype = torch.float32):
        self.out_hw = (int(out_hw[0]), int(out_hw[1]))
        self.device = torch.device(device)
        self.conf = conf
        self.dtype = dtype
        self.fuser = PromptFuser(self.out_hw, self.device)
        self.state = RunningLabels(self.out_hw, self.device, num_classes, second)
        self._geometry: dict[tuple[int, int], GridGeometry] = {}
        self._floors: dict[tuple[int, int], torch.Tensor] = {}
        self._floor_version = -1
        #: what was fused and what skipped (not per-image stats: the subset rule depends on the thread count)
        self.counts = dict.fromkeys(("prompts", "prompts_skipped", "instances_kept", "instances_fused",
                                     "instances_dropped", "semantic_maps", "semantic_skipped"), 0)

    def _floor_blocks(self, grid_hw: tuple[int, int]) -> torch.Tensor:
        if self._floor_version != self.state.version:
            self._floors.clear()
            self._floor_version = self.state.version
        if grid_hw not in self._floors:
            if grid_hw not in self._geometry:
                self._geometry[grid_hw] = GridGeometry(grid_hw, self.out_hw, self.device)
            self._floors[grid_hw] = self._geometry[grid_hw].block_min(self.state.floor())
        return self._floors[grid_hw]

    def add(self, mask_logits: torch.Tensor, scores: torch.Tensor, semantic_logits: torch.Tensor | None,
            presence: torch.Tensor, label: int) -> None:
        """Fold one prompt (mask logits [Q, h, w], scores [Q], semantic logits [h', w'] or None, presence
        0-dim) of class ``label`` (labels ascending, aliases consecutive)."""
        c = self.counts
        keep = scores > self.conf
        kept = int(keep.sum())
        c["prompts"] += 1
        c["instances_kept"] += kept
        c["semantic_maps"] += semantic_logits is not None
        subset = None
        if self.skip_bounded and self.state.version > 0 and (kept or semantic_logits is not None):
            grid = tuple(mask_logits.shape[-2:])
            if bool(self._floor_blocks(grid).max() > 0):  # a floor of 0 everywhere proves nothing
                plan = plan_prompt(self._floor_blocks, mask_logits, scores, keep, semantic_logits, presence)
                if plan is None:
                    c["prompts_skipped"] += 1
                    c["semantic_skipped"] += semantic_logits is not None
                    self.state.add(None, label)
                    return
                subset = plan.instances
                if semantic_logits is not None and not plan.semantic:
                    c["semantic_skipped"] += 1
                    semantic_logits = None
        fused = self.fuser.fuse(mask_logits, scores, semantic_logits, presence, self.conf, subset)
        c["instances_fused"] += self.fuser.fused_instances
        c["instances_dropped"] += kept - self.fuser.fused_instances  # proven irrelevant in a fused prompt
        self.state.add(fused, label)

    def add_bucket(self, dec: Decoded, labels: Sequence[int], semantic: bool = True) -> None:
        """Fold every prompt of a decoded bucket; ``labels`` [n] are their class ids; ``semantic`` False =
        instance outputs only (the ``sam3`` row)."""
        scores, presence = instance_scores(dec, self.dtype)
        for i, label in enumerate(labels):
            sem = dec.semantic_logits[i] if semantic else None
            self.add(dec.mask_logits[i], scores[i], sem, presence[i], label)

    def labels(self, prob_thd: float, bg_idx: int | None, mabc: bool = False, exponent: float = 1.25) -> torch.LongTensor:
        """int64 [H, W] (:meth:`.running.RunningLabels.labels`)."""
        return self.state.labels(prob_thd, bg_idx, mabc, exponent)
