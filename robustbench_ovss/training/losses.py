"""Training losses of the demo model, in the spirit of SAM 3's: presence, semantic, instance.

All functions are pure (tensors in, scalar tensor out) and reduce to a mean so that they are
comparable across batch sizes. Targets are float in [0, 1] (soft targets allowed).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .matcher import hungarian_match


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - soft Dice per mask, averaged. ``logits``/``targets`` [N, ...] (flattened per row)."""
    if logits.numel() == 0:
        return logits.sum() * 0.0
    p = logits.sigmoid().flatten(1)
    t = targets.flatten(1).to(p.dtype)
    inter = (p * t).sum(1)
    return (1.0 - (2.0 * inter + eps) / (p.sum(1) + t.sum(1) + eps)).mean()


def sigmoid_focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """Focal loss (RetinaNet), mean over elements; ``alpha`` < 0 disables the class weighting."""
    if logits.numel() == 0:
        return logits.sum() * 0.0
    t = targets.to(logits.dtype)
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, t, reduction="none")
    p_t = p * t + (1 - p) * (1 - t)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
    return loss.mean()


def presence_loss(presence_logits: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """BCE of presence logits against 0/1 present, any leading shape (e.g. [layers, N] for aux)."""
    logits = presence_logits.squeeze(-1) if presence_logits.shape[-1] == 1 else presence_logits
    return F.binary_cross_entropy_with_logits(logits, present.to(logits.dtype).expand_as(logits))


def semantic_loss(
    semantic_logits: torch.Tensor,
    targets: torch.Tensor,
    present: torch.Tensor,
    dice_weight: float = 1.0,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-prompt semantic map: pixel BCE on every prompt (absent ones must be all-off) + Dice on
    prompts whose concept is present.

    ``semantic_logits`` [N, h, w]; ``targets`` [N, h, w] soft coverage of the concept;
    ``present`` bool [N]; ``valid`` optional [N, h, w] weight (0 where the label is ignored).
    """
    bce = F.binary_cross_entropy_with_logits(semantic_logits, targets.to(semantic_logits.dtype), reduction="none")
    if valid is not None:
        bce = (bce * valid).sum() / valid.sum().clamp(min=1.0)
    else:
        bce = bce.mean()
    pos = present.bool()
    dice = dice_loss(semantic_logits[pos], targets[pos]) if pos.any() else semantic_logits.sum() * 0.0
    return bce + dice_weight * dice


def instance_loss(
    mask_logits: torch.Tensor,
    score_logits: torch.Tensor,
    gt_masks: list[torch.Tensor],
    mask_weight: float = 1.0,
    dice_weight: float = 1.0,
    score_weight: float = 1.0,
    focal: bool = True,
) -> tuple[torch.Tensor, dict]:
    """Instance loss with bipartite matching of queries to the prompt's object instances.

    ``mask_logits`` [N, Q, h, w]; ``score_logits`` [N, Q] (``pred_logits``); ``gt_masks`` one
    float [K_n, h, w] tensor per prompt (K_n = 0 for an absent concept). Each prompt's queries
    are matched (Hungarian, cost = mask BCE + Dice - score probability) to its instances; matched
    queries get mask BCE + Dice, and all queries a score target (1 matched, 0 otherwise).
    Returns (loss, stats) with stats["matched"] = number of matched pairs.
    """
    n, q = score_logits.shape
    score_t = torch.zeros_like(score_logits)
    pm, tm = [], []
    for i in range(n):
        g = gt_masks[i]
        if g is None or g.shape[0] == 0:
            continue
        qi, ki = hungarian_match(mask_logits[i].detach(), score_logits[i].detach(), g)
        score_t[i, qi] = 1.0
        pm.append(mask_logits[i, qi])
        tm.append(g[ki].to(mask_logits.dtype))
    if focal:
        score = sigmoid_focal_loss(score_logits, score_t, alpha=0.25) * q  # per-query sum scale
    else:
        score = F.binary_cross_entropy_with_logits(score_logits, score_t)
    if pm:
        p = torch.cat(pm)
        t = torch.cat(tm)
        mask = F.binary_cross_entropy_with_logits(p, t) * mask_weight + dice_weight * dice_loss(p, t)
    else:
        mask = mask_logits.sum() * 0.0
    return mask + score_weight * score, {"matched": int(sum(x.shape[0] for x in pm))}


def prompt_softmax_loss(
    semantic_logits: torch.Tensor,
    presence_logits: torch.Tensor,
    targets: torch.Tensor,
    image_index: torch.Tensor,
    min_cover: float = 0.5,
) -> torch.Tensor:
    """Cross-entropy across one image's prompts at each pixel: the inference-time argmax, trained.

    The methods label a pixel with the prompt of the largest ``sigmoid(semantic) * sigmoid(presence)``
    (DESIGN §6), so the score compared here is its log, ``logsigmoid(semantic) + logsigmoid(presence)``,
    softmaxed over the prompts of the same image; the target is the prompt whose concept covers at
    least ``min_cover`` of the cell. Cells no prompt covers that much are skipped. Per-prompt BCE
    (``semantic_loss``) says "this map should be off"; this term says "off *relative to* the right
    prompt", which is what tells same-colour concepts apart.

    ``semantic_logits`` [N, h, w]; ``presence_logits`` [N] or [N, 1]; ``targets`` [N, h, w] soft
    coverage; ``image_index`` long [N] (prompt -> image). Returns the mean over covered cells.
    """
    pres = presence_logits.reshape(-1)
    score = F.logsigmoid(semantic_logits) + F.logsigmoid(pres)[:, None, None]
    total, count = score.sum() * 0.0, 0
    for b in torch.unique(image_index):
        sel = image_index == b
        s, t = score[sel], targets[sel]  # [P, h, w]
        cover, tgt = t.max(0)
        keep = cover >= min_cover
        if not keep.any():
            continue
        total = total + F.cross_entropy(s.permute(1, 2, 0)[keep], tgt[keep], reduction="sum")
        count += int(keep.sum())
    return total / max(count, 1)
