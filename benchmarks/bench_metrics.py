"""pytest-benchmark suite: confusion-matrix accumulation (numpy vs torch) and ``summarize``.

Not part of the pass/fail tests (``testpaths`` is tests/; pyproject disables benchmarking by
default). Run and compare between commits with::

    pytest benchmarks/bench_metrics.py --benchmark-enable --benchmark-autosave
    # ... change something, then
    pytest benchmarks/bench_metrics.py --benchmark-enable --benchmark-compare

Each accumulation round adds one image's confusion matrix to a running int64 total, as the runner
does per image: a random prediction and label at 512x512 (VOC-like) or 1024x2048 (Cityscapes), with
21 or 150 classes and 5% ignore (255) pixels. Inputs are made once per case, outside the timing.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robustbench_ovss.metrics import confusion_matrix, summarize

SIZES = {"512x512": (512, 512), "1024x2048": (1024, 2048)}
CLASSES = [21, 150]


def _inputs(shape: tuple[int, int], num_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    pred = rng.integers(0, num_classes, size=shape, dtype=np.int64)
    label = rng.integers(0, num_classes, size=shape).astype(np.uint8 if num_classes < 255 else np.int64)
    label[rng.random(shape) < 0.05] = 255
    return pred, label


@pytest.mark.parametrize("num_classes", CLASSES)
@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_confusion_accumulate(benchmark, backend: str, size: str, num_classes: int) -> None:
    pred, label = _inputs(SIZES[size], num_classes)
    if backend == "torch":
        p, lab = torch.from_numpy(pred), torch.from_numpy(label.astype(np.int64))
        total = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    else:
        p, lab = pred, label
        total = np.zeros((num_classes, num_classes), dtype=np.int64)
    benchmark.group = f"confusion {size} C={num_classes}"

    def step():
        total.__iadd__(confusion_matrix(p, lab, num_classes))

    benchmark(step)
    # every round added the same matrix: the total is a whole multiple of one image's count
    one = np.asarray(confusion_matrix(pred, label, num_classes))
    tot = np.asarray(total)
    assert one.sum() == int((label != 255).sum())
    assert tot.sum() % one.sum() == 0 and np.array_equal(tot, one * (tot.sum() // one.sum()))


@pytest.mark.parametrize("num_classes", CLASSES)
def test_summarize(benchmark, num_classes: int) -> None:
    pred, label = _inputs((512, 512), num_classes)
    conf = confusion_matrix(pred, label, num_classes)
    benchmark.group = "summarize"
    out = benchmark(summarize, conf)
    assert 0.0 <= out["miou"] <= 1.0
