"""Confusion-matrix accumulation, torch vs numpy, at VOC-like and Cityscapes-like sizes.

Run: ``pytest benchmarks/bench_harness.py --benchmark-enable`` (not part of the pass/fail suite).
The runner accumulates on the device with torch (``metrics.confusion_matrix`` on tensors); this shows
what that costs per image on the CPU next to numpy, for 21 (VOC) and 150 (ADE20K) classes.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robustbench_ovss.metrics import confusion_matrix

SIZES = {"512x512": (512, 512), "1024x2048": (1024, 2048)}


def maps(shape: tuple[int, int], c: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    label = rng.integers(0, c, size=shape).astype(np.uint8)
    label[rng.random(shape) < 0.05] = 255
    pred = rng.integers(0, c, size=shape).astype(np.int64)
    return pred, label


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("c", [21, 150])
def test_confusion_numpy(benchmark, size, c):
    pred, label = maps(SIZES[size], c)
    acc = np.zeros((c, c), np.int64)

    def step():
        nonlocal acc
        acc = acc + confusion_matrix(pred, label, c)

    benchmark(step)
    assert acc.sum() > 0


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("c", [21, 150])
def test_confusion_torch(benchmark, size, c):
    pred, label = maps(SIZES[size], c)
    tp = torch.from_numpy(pred)
    tl = torch.from_numpy(label.astype(np.int64))
    acc = torch.zeros((c, c), dtype=torch.int64)

    def step():
        acc.add_(confusion_matrix(tp, tl, c))

    benchmark(step)
    assert int(acc.sum()) > 0
