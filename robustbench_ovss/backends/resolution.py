"""Run the SAM 3 ViT at a resolution other than the one it was built for, without mutating it for good.

Only the global-attention ViT layers depend on the input size: their RoPE ``position_ids`` buffer is
precomputed from ``config.image_size`` (a windowed layer's positions depend only on the window). Running
672 on a 1008 model therefore needs those buffers for a 48x48 grid instead of 72x72 (DESIGN §5). This
module computes them with the model's own ``precompute_positions`` for the requested size, caches them
per (size, device), and swaps them in for the duration of a ``with`` block only; the original buffers are
put back even if the forward raises. Absolute position embeddings are tiled by the model itself, and
everything after the ViT (neck, DETR, mask decoder) is size-agnostic.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch


class ResolutionSwitch:
    """Per-resolution RoPE buffers for a ``Sam3ViTModel`` (``model.vision_encoder.backbone``).

    Args:
        vit: the ViT backbone module (its ``layers`` and ``config`` are read, never replaced).
    """

    def __init__(self, vit: Any):
        self.vit = vit
        self.config = vit.config
        patch = self.config.patch_size
        self.patch_size = int(patch if isinstance(patch, int) else patch[0])
        size = self.config.image_size
        self.native_size = int(size if isinstance(size, int) else size[0])
        self.global_layers = [layer for layer in vit.layers if getattr(layer, "window_size", 0) == 0]
        self._cache: dict[tuple[int, str], list[torch.Tensor]] = {}
        self.lock = threading.RLock()  # a swap must not interleave with another forward

    def check_size(self, size: int) -> int:
        """Validate a square input size (a positive multiple of the patch size); returns it as int."""
        size = int(size)
        if size <= 0 or size % self.patch_size:
            raise ValueError(f"input size {size} must be a positive multiple of the patch size {self.patch_size}")
        return size

    def buffers(self, size: int, device: torch.device) -> list[torch.Tensor]:
        """RoPE position buffers of the global layers for a ``size`` x ``size`` input (cached)."""
        key = (size, str(device))
        if key not in self._cache:
            cfg = copy.deepcopy(self.config)
            cfg.image_size = size
            out = []
            for layer in self.global_layers:
                ref = layer.position_ids
                out.append(layer.precompute_positions(cfg, 0).to(device=device, dtype=ref.dtype))
            self._cache[key] = out
        return self._cache[key]

    @contextmanager
    def at(self, size: int) -> Iterator[None]:
        """Within the block the ViT runs at ``size``; outside it, the model is exactly as before."""
        size = self.check_size(size)
        with self.lock:
            if size == self.native_size or not self.global_layers:
                yield
                return
            device = self.global_layers[0].position_ids.device
            new = self.buffers(size, device)
            saved = [layer.position_ids for layer in self.global_layers]
            try:
                for layer, buf in zip(self.global_layers, new):
                    layer.position_ids = buf  # a registered buffer: plain assignment swaps it
                yield
            finally:
                for layer, buf in zip(self.global_layers, saved):
                    layer.position_ids = buf
