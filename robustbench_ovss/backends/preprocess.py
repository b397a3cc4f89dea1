"""SAM 3 input preprocessing in plain torch (no torchvision, DESIGN §5).

Images: squash-resize to ``size`` x ``size`` (bilinear, antialiased, rounded to 8-bit levels like the
reference processor's uint8 resize), then /255 and (x - 0.5) / 0.5. Texts: tokenised with padding and
truncation to the text encoder's length (32), always with the attention mask.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

IMAGE_MEAN = 0.5
IMAGE_STD = 0.5


def image_to_pixels(image: np.ndarray | torch.Tensor, size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 RGB [H, W, 3] -> float32 pixel values [1, 3, size, size] on ``device``, normalised to [-1, 1]."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image must be a uint8 array [H, W, 3], got {image.dtype} {tuple(image.shape)}")
        t = torch.from_numpy(np.ascontiguousarray(image))
    elif isinstance(image, torch.Tensor):
        if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image must be a uint8 tensor [H, W, 3], got {image.dtype} {tuple(image.shape)}")
        t = image
    else:
        raise TypeError(f"image must be a numpy array or torch tensor, got {type(image).__name__}")
    x = t.to(device).permute(2, 0, 1)[None].float()
    if tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        x = x.round_().clamp_(0.0, 255.0)
    return (x / 255.0 - IMAGE_MEAN) / IMAGE_STD


def images_to_pixels(images: Sequence[np.ndarray | torch.Tensor], size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """B uint8 RGB [H_b, W_b, 3] images -> float32 [B, 3, size, size], each as :func:`image_to_pixels`."""
    return torch.cat([image_to_pixels(im, size, device) for im in images])


def tokenize(tokenizer: Any, texts: Sequence[str], max_length: int, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask, both long [N, max_length], padded and truncated to ``max_length``."""
    enc = tokenizer(list(texts), padding="max_length", max_length=max_length, truncation=True, return_tensors="pt")
    return enc["input_ids"].to(device), enc["attention_mask"].to(device)
