"""metrics.confusion_matrix / summarize against a naive numpy reference (mmseg IoUMetric semantics)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from robustbench_ovss.metrics import confusion_matrix, image_scores, per_class_areas, summarize


def naive(pred: np.ndarray, label: np.ndarray, c: int, ignore: int = 255) -> dict:
    """Per-class IoU/accuracy by explicit loops over classes, as mmseg's IoUMetric defines them."""
    keep = label != ignore
    p, l = pred[keep], label[keep]
    iou, acc = [], []
    for k in range(c):
        inter = int(np.sum((p == k) & (l == k)))
        union = int(np.sum((p == k) | (l == k)))
        area_l = int(np.sum(l == k))
        iou.append(inter / union if union else math.nan)
        acc.append(inter / area_l if area_l else math.nan)
    aacc = float(np.sum(p == l) / p.size) if p.size else math.nan
    return {"iou": np.array(iou), "acc": np.array(acc), "aacc": aacc,
            "miou": float(np.nanmean(iou)) if not np.all(np.isnan(iou)) else math.nan,
            "macc": float(np.nanmean(acc)) if not np.all(np.isnan(acc)) else math.nan}


def random_maps(rng: np.random.Generator, c: int, shape=(32, 48)) -> tuple[np.ndarray, np.ndarray]:
    label = rng.integers(0, c, size=shape)
    label[rng.random(shape) < 0.2] = 255  # ignore pixels
    absent = rng.choice(c, size=max(1, c // 4), replace=False)  # classes missing from the label
    label[np.isin(label, absent)] = 255
    pred = rng.integers(0, c, size=shape)
    pred[np.isin(pred, absent[: len(absent) // 2 + 1])] = 0  # some absent classes also never predicted
    return pred, label


@pytest.mark.parametrize("c", [2, 5, 21, 150])
@pytest.mark.parametrize("seed", [0, 1])
def test_summarize_matches_naive_reference(c, seed):
    rng = np.random.default_rng(seed)
    pred, label = random_maps(rng, c)
    ref = naive(pred, label, c)
    for conf in (confusion_matrix(pred, label, c), confusion_matrix(torch.from_numpy(pred), torch.from_numpy(label), c)):
        conf = np.asarray(conf)
        assert conf.dtype == np.int64 and conf.shape == (c, c)
        s = summarize(conf)
        np.testing.assert_allclose(s["iou"], ref["iou"], equal_nan=True)
        np.testing.assert_allclose(s["acc"], ref["acc"], equal_nan=True)
        assert s["aacc"] == pytest.approx(ref["aacc"])
        assert s["miou"] == pytest.approx(ref["miou"], nan_ok=True)
        assert s["macc"] == pytest.approx(ref["macc"], nan_ok=True)


def test_confusion_rows_are_labels_and_torch_equals_numpy():
    pred = np.array([[0, 1], [2, 2]])
    label = np.array([[0, 2], [2, 255]])
    conf = confusion_matrix(pred, label, 3)
    expected = np.zeros((3, 3), np.int64)
    expected[0, 0] = 1  # label 0 predicted 0
    expected[2, 1] = 1  # label 2 predicted 1
    expected[2, 2] = 1
    np.testing.assert_array_equal(conf, expected)
    tconf = confusion_matrix(torch.from_numpy(pred), torch.from_numpy(label), 3)
    assert isinstance(tconf, torch.Tensor) and tconf.dtype == torch.int64
    np.testing.assert_array_equal(tconf.numpy(), expected)


def test_chunks_merge_by_addition():
    rng = np.random.default_rng(3)
    maps = [random_maps(rng, 7) for _ in range(5)]
    total = sum(confusion_matrix(p, l, 7) for p, l in maps)
    whole = confusion_matrix(np.stack([p for p, _ in maps]), np.stack([l for _, l in maps]), 7)
    np.testing.assert_array_equal(total, whole)


def test_nan_semantics_like_mmseg():
    # class 2 absent from label and prediction: NaN IoU, excluded from the mean
    pred = np.array([[0, 0, 1, 1]])
    label = np.array([[0, 1, 1, 1]])
    s = summarize(confusion_matrix(pred, label, 3))
    assert math.isnan(s["iou"][2]) and math.isnan(s["acc"][2])
    assert s["iou"][0] == pytest.approx(0.5) and s["iou"][1] == pytest.approx(2 / 3)
    assert s["miou"] == pytest.approx((0.5 + 2 / 3) / 2)
    # a class only predicted (never labelled): IoU 0 (union > 0), accuracy NaN
    s = summarize(confusion_matrix(np.array([[2, 0]]), np.array([[0, 0]]), 3))
    assert s["iou"][2] == 0.0 and math.isnan(s["acc"][2])
    assert s["miou"] == pytest.approx((0.5 + 0.0) / 2)
    # everything ignored: NaN scalars, no exception
    s = summarize(confusion_matrix(np.array([[1, 2]]), np.array([[255, 255]]), 3))
    assert math.isnan(s["miou"]) and math.isnan(s["aacc"]) and math.isnan(s["macc"])


def test_image_scores_and_areas():
    pred = np.array([[0, 1, 1, 2]])
    label = np.array([[0, 1, 2, 255]])
    conf = confusion_matrix(pred, label, 3)
    sc = image_scores(conf)
    assert sc["pixel_acc"] == pytest.approx(2 / 3)
    assert sc["miou"] == pytest.approx((1 + 0.5 + 0) / 3)
    a = per_class_areas(conf)
    np.testing.assert_array_equal(a["area_label"], [1, 1, 1])
    np.testing.assert_array_equal(a["area_pred"], [1, 2, 0])
    np.testing.assert_array_equal(a["union"], [1, 2, 1])


def test_out_of_range_values_raise():
    with pytest.raises(ValueError):
        confusion_matrix(np.array([[0, 3]]), np.array([[0, 1]]), 3)
    with pytest.raises(ValueError):
        confusion_matrix(np.array([[0, 1]]), np.array([[0, 7]]), 3)
