"""Stage 0 of the demo model: dense image-text contrastive alignment of the two encoders.

SAM 3's encoders start from Meta's Perception Encoder, which was trained contrastively on image-text
pairs before any segmentation loss; a randomly initialised tiny model has no such start, and the
detector's losses alone take a long time to discover which words go with which looks (DESIGN §12:
presence sits at chance for hundreds of steps). This stage gives the tiny model the same kind of start:
every vision token at the detector's grid (the 1x FPN level the DETR encoder reads) is classified
against the projected text features of the whole vocabulary, CLIP-style (cosine similarity times a
learned scale, cross-entropy), with the concept that covers the token as the target. Only the vision
encoder, the text encoder and ``text_projection`` take part; the logit scale lives outside the model
and is not saved.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..backends.preprocess import images_to_pixels
from ..backends.text_pooling import masked_mean
from .batching import Scene
from .loop import apply_gradients


def token_targets(scenes: Sequence[Scene], grid: tuple[int, int], num_classes: int, min_cover: float = 0.5) -> torch.Tensor:
    """Per token the label id covering at least ``min_cover`` of its cell, else -1: long [B, h, w].

    Coverage is the area average of each label's mask over the cell (ignored pixels count as no
    label), so tokens on object borders, which see two concepts, are skipped.
    """
    out = []
    for s in scenes:
        lab = torch.as_tensor(np.asarray(s.label, dtype=np.int64))
        ok = lab != s.ignore_index
        onehot = F.one_hot(lab.clamp(0, num_classes - 1), num_classes).permute(2, 0, 1).float() * ok[None].float()
        cover = F.adaptive_avg_pool2d(onehot[None], grid)[0]  # [V, h, w]
        best, idx = cover.max(0)
        out.append(torch.where(best >= min_cover, idx, torch.full_like(idx, -1)))
    return torch.stack(out)


def dense_contrastive_loss(
    tokens: torch.Tensor, text: torch.Tensor, targets: torch.Tensor, log_scale: torch.Tensor
) -> torch.Tensor:
    """Cross-entropy of each token against every text: cosine(token, text) * exp(log_scale).

    ``tokens`` [B, C, h, w]; ``text`` [V, C] pooled text features; ``targets`` long [B, h, w]
    (label id, -1 = skip); ``log_scale`` scalar (clamped to scale <= 100). Mean over kept tokens;
    0 when none is kept.
    """
    keep = targets >= 0
    if not keep.any():
        return tokens.sum() * 0.0
    t = F.normalize(tokens.permute(0, 2, 3, 1)[keep], dim=-1)  # [K, C]
    w = F.normalize(text, dim=-1)  # [V, C]
    logits = (t @ w.T) * log_scale.clamp(max=math.log(100.0)).exp()
    return F.cross_entropy(logits, targets[keep])


def grid_tokens_and_texts(model, bank, scenes: Sequence[Scene], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(vision tokens at the DETR grid [B, C, g, g], mean-pooled projected text features [V, C]) of
    ``scenes`` at input side ``size`` and of every text of ``bank``."""
    vis = model.get_vision_features(pixel_values=images_to_pixels([s.image for s in scenes], size))
    grid = size // model.config.vision_config.backbone_config.patch_size
    level = next(f for f in vis.fpn_hidden_states if f.shape[-1] == grid)  # what the DETR encoder reads
    text = masked_mean(bank.features(model), bank.mask)
    return level, text


def contrastive_step(
    model, optimizer, bank, scenes: Sequence[Scene], num_classes: int, size: int, log_scale: torch.Tensor
) -> dict:
    """One update of the vision encoder, text encoder and ``text_projection`` with the dense
    contrastive loss on ``scenes`` at input side ``size`` (pixels)."""
    model.train()
    level, text = grid_tokens_and_texts(model, bank, scenes, size)
    targets = token_targets(scenes, tuple(level.shape[-2:]), num_classes)
    loss = dense_contrastive_loss(level, text, targets, log_scale)
    gn = apply_gradients(model, optimizer, loss)
    with torch.no_grad():
        keep = targets >= 0
        t = F.normalize(level.detach().permute(0, 2, 3, 1)[keep], dim=-1)
        acc = ((t @ F.normalize(text.detach(), dim=-1).T).argmax(-1) == targets[keep]).float().mean().item()
    return {"contrastive": float(loss.detach()), "token_acc": acc, "grad_norm": float(gn), "size": size,
            "tokens": int(keep.sum()), "scale": float(log_scale.detach().exp())}
