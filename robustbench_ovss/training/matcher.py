"""Bipartite (Hungarian) matching of a prompt's decoder queries to its object instances."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def pairwise_mask_cost(mask_logits: torch.Tensor, gt_masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairwise mean pixel BCE and Dice cost, [Q, K] each, between Q predicted and K target masks."""
    q = mask_logits.flatten(1).float()  # [Q, P]
    t = gt_masks.flatten(1).float()  # [K, P]
    npix = q.shape[1]
    # BCE(x, t) = softplus(x) - x * t, summed over pixels, as a matrix product
    pos = F.softplus(-q)  # -log sigmoid(x)
    neg = F.softplus(q)  # -log(1 - sigmoid(x))
    bce = (pos @ t.T + neg @ (1 - t).T) / npix
    p = q.sigmoid()
    inter = p @ t.T
    dice = 1 - (2 * inter + 1) / (p.sum(1, keepdim=True) + t.sum(1)[None] + 1)
    return bce, dice


def hungarian_match(
    mask_logits: torch.Tensor,
    score_logits: torch.Tensor,
    gt_masks: torch.Tensor,
    w_bce: float = 1.0,
    w_dice: float = 1.0,
    w_score: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Optimal one-to-one assignment of queries to targets.

    ``mask_logits`` [Q, h, w], ``score_logits`` [Q], ``gt_masks`` [K, h, w] (K <= Q normally).
    Cost = w_bce * BCE + w_dice * Dice - w_score * sigmoid(score). Returns (query_idx, target_idx),
    LongTensors of length min(Q, K), sorted by target index.
    """
    from scipy.optimize import linear_sum_assignment

    k = gt_masks.shape[0]
    if k == 0:
        empty = torch.zeros(0, dtype=torch.long, device=mask_logits.device)
        return empty, empty
    with torch.no_grad():
        bce, dice = pairwise_mask_cost(mask_logits, gt_masks)
        cost = w_bce * bce + w_dice * dice - w_score * score_logits.float().sigmoid()[:, None]
    c = cost.cpu().numpy()
    c = np.nan_to_num(c, nan=1e6, posinf=1e6, neginf=-1e6)
    rows, cols = linear_sum_assignment(c)
    order = np.argsort(cols)
    dev = mask_logits.device
    return (
        torch.as_tensor(rows[order], dtype=torch.long, device=dev),
        torch.as_tensor(cols[order], dtype=torch.long, device=dev),
    )
