"""Labels from prompts' fused maps folded in one at a time: a running per-pixel best (and second best).

The dense rules (:func:`.fusion.threshold_background`, :func:`.activesam.margin_calibration`) take a
[C, H, W] class-score map. They need only, per pixel, the best class score ``s1``, the first class that
reaches it, and (for margin calibration) the second-best score ``s2``. Folding classes in ascending order
into ``(s1, s2, class)`` gives exactly those values:

- a class replaces the best only with a strictly higher score, so ties go to the lowest id as argmax;
- the start ``(0, 0, class 0)`` is the dense map's answer where every class scores 0, and it stands in for
  the classes never decoded (they score 0; scores are never negative);
- ``s2``: a class scoring above ``s1`` pushes ``s1`` down to second place, any other raises ``s2`` to at
  most its own score (a tie with ``s1`` makes ``s2 = s1``, as ``topk`` does).

A class's score is the max over its aliases (consecutive prompts), so with a second best the fold waits
until a class's last alias is in; without one the prompts can be folded directly (the max over classes of
the max over aliases is the max over prompts, first class first).

A prompt's map matters only where it exceeds :meth:`RunningLabels.floor`: below it neither the best, nor
its class, nor the second best can change. :mod:`.bounds` uses that to skip work.
"""

from __future__ import annotations

import torch

__all__ = ["RunningLabels"]


class RunningLabels:
    """Running ``(s1[, s2], class)`` state of one image.

    Args:
        out_hw: (H, W).
        device: where the state lives.
        num_classes: C (label ids are < C).
        second: keep the second-best score too (margin-aware calibration needs it).
    """

    def __init__(self, out_hw: tuple[int, int], device: torch.device | str, num_classes: int, second: bool):
        hw = (int(out_hw[0]), int(out_hw[1]))
        self.best = torch.zeros(hw, dtype=torch.float32, device=device)
        self.second = torch.zeros(hw, dtype=torch.float32, device=device) if second else None
        # label ids in the narrowest integer type (less memory traffic per fold); int64 at the end
        self.arg = torch.zeros(hw, dtype=torch.int16 if num_classes <= 2**15 else torch.int32, device=device)
        self._better = torch.empty(hw, dtype=torch.bool, device=device)
        self._tmp = torch.empty(hw, dtype=torch.float32, device=device) if second else None
        self._pending: torch.Tensor | None = None  # alias max of the class being collected (second best only)
        self._pending_class: int | None = None
        self._pending_filled = False
        self.version = 0  # bumped whenever best / second change (lets a caller cache derived maps)

    def floor(self) -> torch.Tensor:
        """float32 [H, W]: a class score at or below this changes nothing (the second best, else the best).

        While a class's aliases are being collected its score so far is not folded yet; the floor is that
        of the classes before it, which is what the class will be compared with.
        """
        return self.second if self.second is not None else self.best

    def add(self, scores: torch.Tensor | None, label: int) -> None:
        """Fold one prompt's fused map float32 [H, W] of class ``label`` (labels ascending, aliases
        consecutive); None = a map that is 0 everywhere (changes nothing). ``scores`` may be reused by the
        caller afterwards."""
        label = int(label)
        if self.second is None:
            if scores is not None:
                self._fold(scores, label)
            return
        if self._pending_class is not None and label != self._pending_class:
            self._flush()
        self._pending_class = label
        if scores is None:
            return
        if not self._pending_filled:
            if self._pending is None:
                self._pending = torch.empty_like(self.best)
            self._pending.copy_(scores)
            self._pending_filled = True
        else:
            torch.maximum(self._pending, scores, out=self._pending)

    def _flush(self) -> None:
        if self._pending_filled:
            self._fold(self._pending, self._pending_class)
        self._pending_filled = False
        self._pending_class = None

    def _fold(self, v: torch.Tensor, label: int) -> None:
        better = torch.gt(v, self.best, out=self._better)
        if self.second is not None:
            torch.maximum(self.second, v, out=self._tmp)
            torch.where(better, self.best, self._tmp, out=self.second)
        torch.where(better, v, self.best, out=self.best)
        self.arg.masked_fill_(better, label)
        self.version += 1

    def labels(self, prob_thd: float, bg_idx: int | None, mabc: bool = False, exponent: float = 1.25) -> torch.LongTensor:
        """int64 [H, W]: argmax, then the background rule.

        ``mabc`` False: ``bg_idx`` where the best score is ``< prob_thd`` (:func:`.fusion.threshold_background`).
        ``mabc`` True: margin-aware calibration (:func:`.activesam.margin_calibration`: ``bg_idx`` where
        ``s1 * sqrt(max(s1 - s2, 0)) < prob_thd ** exponent``; none when ``prob_thd <= 0``); the caller
        passes True only for a state with a second best and at least two classes.
        No rule when ``bg_idx`` is None.
        """
        if self.second is not None:
            self._flush()
        pred = self.arg.long()
        if bg_idx is None:
            return pred
        if not mabc:
            pred[self.best < prob_thd] = int(bg_idx)
            return pred
        if self.second is None:
            raise ValueError("margin calibration needs the running second best (second=True)")
        if prob_thd <= 0:
            return pred
        s1, s2 = self.best, self.second
        confidence = s1 * (s1 - s2).clamp_min(0).sqrt()
        pred[confidence < float(prob_thd) ** float(exponent)] = int(bg_idx)
        return pred
