"""The Backend contract (DESIGN §4): the one object through which methods touch SAM 3.

One backend instance serves every method of a run; it is constructed by the runner as
``BACKENDS.get(name)(checkpoint=..., device=..., dtype=..., allow_download=...)``.
Image features are never shared between methods (each method encodes its own image, so per-method
speed is honest); text features are cached by exact string and shared.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch


@dataclass
class TextFeatures:
    """Encoded prompts.

    Attributes:
        texts: the exact strings encoded, one per row.
        features: float [N, L, D] per-token features after SAM 3's text projection (D = 256 real).
        mask: bool [N, L], True where a token is real (padding and masked extra tokens are False).
    """

    texts: tuple[str, ...]
    features: torch.Tensor
    mask: torch.Tensor

    def __len__(self) -> int:
        return len(self.texts)

    def select(self, indices: Sequence[int]) -> TextFeatures:
        idx = torch.as_tensor(list(indices), dtype=torch.long, device=self.features.device)
        return TextFeatures(tuple(self.texts[i] for i in indices), self.features[idx], self.mask[idx])


@dataclass
class ImageFeatures:
    """One image encoded at one resolution (ViT + neck); reusable for any number of decodes.

    Attributes:
        size: input resolution the image was squash-resized to (pixels, square).
        image_hw: (H, W) of the original image.
        payload: backend-specific tensors (e.g. all FPN levels and their position encodings).
    """

    size: int
    image_hw: tuple[int, int]
    payload: Any = field(repr=False, default=None)


@dataclass
class Decoded:
    """Decoder outputs for n prompts, rows in the order of the requested indices (float32, model grid).

    Attributes:
        mask_logits: [n, Q, h, w] instance mask logits.
        scores: [n, Q] instance scores, sigmoid(pred_logits) * presence.
        semantic_logits: [n, h, w] semantic-head logits.
        presence: [n] presence probability, sigmoid(presence_logits).
        logits: [n, Q] the instance logits before the sigmoid (None where a backend does not give them).
        presence_logits: [n] the presence logits before the sigmoid (None where not given).

    ``logits`` and ``presence_logits`` let a method redo the sigmoids in another dtype, as the
    reference code does on bf16 outputs under CUDA autocast (:mod:`robustbench_ovss.methods.fusion`).
    """

    mask_logits: torch.Tensor
    scores: torch.Tensor
    semantic_logits: torch.Tensor
    presence: torch.Tensor
    logits: torch.Tensor | None = None
    presence_logits: torch.Tensor | None = None


@runtime_checkable
class Backend(Protocol):
    native_size: int  # input resolution the model was built for (1008 real)
    device: torch.device
    dtype: str  # "fp32" | "bf16"
    identity: str  # checkpoint identity recorded in results and unit keys
    counters: dict[str, int]  # text_encoder_calls, image_encoder_calls, decoder_calls, oom_backoffs, ...

    def encode_image(self, image: np.ndarray, size: int | None = None) -> ImageFeatures:
        """Encode uint8 [H, W, 3] RGB at ``size`` (default ``native_size``)."""
        ...

    def encode_text(
        self,
        texts: Sequence[str],
        extra_tokens: torch.Tensor | None = None,
        extra_mask: torch.Tensor | None = None,
    ) -> TextFeatures:
        """Per-token features of ``texts`` (cached by exact string), with [N, E, D] extra tokens appended."""
        ...

    def decode(
        self, features: ImageFeatures, text: TextFeatures, indices: Sequence[int], bucket_size: int
    ) -> Decoded:
        """Full decode of prompts ``text[indices]`` on cached image features, one decoder call per bucket."""
        ...

    def presence(
        self, features: ImageFeatures, text: TextFeatures, indices: Sequence[int], bucket_size: int
    ) -> torch.Tensor:
        """Presence probability [n] of ``text[indices]`` without the mask decoder."""
        ...

    def text_embeddings_1024(self, texts: Sequence[str]) -> torch.Tensor:
        """Mean-pooled text-encoder states before the projection, [N, H_text] (1024 real)."""
        ...

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """SAM 3's text projection, [..., H_text] -> [..., D]."""
        ...

    def synchronize(self) -> None:
        """Wait for queued device work (for timing)."""
        ...
