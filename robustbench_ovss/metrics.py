"""Segmentation metrics with mmseg ``IoUMetric`` semantics, and the robustness summaries of DESIGN §9.

All metrics are fractions in 0..1. The confusion matrix is exact int64 so that chunks, shards and
resumed runs merge by addition.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def _is_tensor(x: Any) -> bool:
    # torch is imported only when a tensor comes in, so that `collect` and `report` never load it
    return type(x).__module__.startswith("torch")


def confusion_matrix(pred: Any, label: Any, num_classes: int, ignore_index: int = 255) -> Any:
    """Confusion matrix of one prediction.

    Args:
        pred: integer map [H, W] (numpy or torch) with values in [0, num_classes).
        label: integer map [H, W] of the same type family; ``ignore_index`` pixels are skipped.
        num_classes: C.
        ignore_index: label value that is not evaluated.

    Returns:
        int64 [C, C], rows = label, columns = prediction; a torch tensor on ``pred``'s device when
        ``pred`` is a tensor, else a numpy array. Label values outside [0, C) other than
        ``ignore_index`` raise ``ValueError``.
    """
    if _is_tensor(pred) or _is_tensor(label):
        import torch

        p = torch.as_tensor(pred)
        l = torch.as_tensor(label, device=p.device)
        if p.shape != l.shape:
            raise ValueError(f"prediction shape {tuple(p.shape)} != label shape {tuple(l.shape)}")
        if p.device.type == "cpu":  # numpy's bincount is ~4x faster than torch's on the CPU; zero-copy both ways
            return torch.from_numpy(_confusion_numpy(p.numpy(), l.numpy(), num_classes, ignore_index))
        return _confusion_torch(p, l, num_classes, ignore_index)
    return _confusion_numpy(np.asarray(pred), np.asarray(label), num_classes, ignore_index)


def _confusion_torch(p: Any, l: Any, num_classes: int, ignore_index: int) -> Any:
    """Device-side confusion matrix: no boolean indexing (slow), ignored pixels go to a spare bin."""
    import torch

    p = p.reshape(-1).long()
    l = l.reshape(-1).long()
    valid = l != ignore_index
    if bool(((l < 0) | (l >= num_classes)).logical_and_(valid).any()):
        raise ValueError(f"label values must be in [0, {num_classes}) or {ignore_index}")
    if bool(((p < 0) | (p >= num_classes)).any()):
        raise ValueError(f"prediction values must be in [0, {num_classes})")
    cc = num_classes * num_classes
    idx = torch.where(valid, l * num_classes + p, cc)
    return torch.bincount(idx, minlength=cc + 1)[:cc].reshape(num_classes, num_classes).to(torch.int64)


def _confusion_numpy(p: np.ndarray, l: np.ndarray, num_classes: int, ignore_index: int) -> np.ndarray:
    if p.shape != l.shape:
        raise ValueError(f"prediction shape {p.shape} != label shape {l.shape}")
    p = p.reshape(-1).astype(np.int64)
    l = l.reshape(-1).astype(np.int64)
    keep = l != ignore_index
    p, l = p[keep], l[keep]
    if l.size and (l.min() < 0 or l.max() >= num_classes):
        raise ValueError(f"label values must be in [0, {num_classes}) or {ignore_index}")
    if p.size and (p.min() < 0 or p.max() >= num_classes):
        raise ValueError(f"prediction values must be in [0, {num_classes})")
    return np.bincount(l * num_classes + p, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    ).astype(np.int64)


def per_class_areas(conf: Any) -> dict[str, np.ndarray]:
    """Intersection, union, prediction area and label area per class (int64 [C]) of a confusion matrix."""
    c = np.asarray(conf.cpu() if hasattr(conf, "cpu") else conf, dtype=np.int64)
    inter = np.diag(c).copy()
    area_label = c.sum(axis=1)
    area_pred = c.sum(axis=0)
    union = area_label + area_pred - inter
    return {"intersection": inter, "union": union, "area_pred": area_pred, "area_label": area_label}


def summarize(conf: Any) -> dict[str, Any]:
    """Accuracy metrics of a confusion matrix (int64 [C, C], rows = label).

    Returns:
        ``miou`` (nanmean of per-class IoU), ``aacc`` (overall pixel accuracy), ``macc`` (nanmean of
        per-class accuracy), ``iou`` and ``acc`` (float64 [C], NaN where a class has zero union / zero
        label area, as mmseg's IoUMetric), all fractions in 0..1; NaN scalars when nothing was labelled.
    """
    a = per_class_areas(conf)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(a["union"] > 0, a["intersection"] / np.maximum(a["union"], 1), np.nan)
        acc = np.where(a["area_label"] > 0, a["intersection"] / np.maximum(a["area_label"], 1), np.nan)
    total = a["area_label"].sum()
    aacc = float(a["intersection"].sum() / total) if total > 0 else float("nan")
    return {
        "miou": _nanmean(iou),
        "aacc": aacc,
        "macc": _nanmean(acc),
        "iou": iou,
        "acc": acc,
    }


def image_scores(conf: Any) -> dict[str, float]:
    """Per-image summary stored in per_image.csv: pixel accuracy and mIoU over the classes present.

    "Present" means in the label or in the prediction (non-zero union), as ``summarize`` does.
    """
    s = summarize(conf)
    return {"pixel_acc": s["aacc"], "miou": s["miou"]}


def _nanmean(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0 or np.all(np.isnan(x)):
        return float("nan")
    return float(np.nanmean(x))


# -- robustness summaries (DESIGN §9) ---------------------------------------------------------------


def mpc(corrupted_miou: Sequence[float]) -> float:
    """Mean performance under corruption: mean mIoU over all (corruption, severity) cells."""
    return _nanmean(np.asarray(corrupted_miou, dtype=np.float64))


def rpc(mpc_value: float, clean_miou: float) -> float:
    """Relative performance under corruption, mPC / clean mIoU (NaN when clean is 0 or NaN)."""
    if not np.isfinite(clean_miou) or clean_miou == 0:
        return float("nan")
    return float(mpc_value / clean_miou)


def corruption_error(miou_by_severity: Mapping[int, float], ref_by_severity: Mapping[int, float]) -> float:
    """CE_c = sum_s (1 - mIoU_s) / sum_s (1 - mIoU_ref_s) over the severities both have.

    Raises ``KeyError`` when the reference lacks a severity the method has.
    """
    sev = sorted(miou_by_severity)
    missing = [s for s in sev if s not in ref_by_severity]
    if missing:
        raise KeyError(f"reference has no result at severities {missing}")
    num = sum(1.0 - miou_by_severity[s] for s in sev)
    den = sum(1.0 - ref_by_severity[s] for s in sev)
    return float(num / den) if den > 0 else float("nan")
