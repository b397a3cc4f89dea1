"""The device-side (torch) confusion-matrix path equals the numpy path used on the CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robustbench_ovss.metrics import _confusion_numpy, _confusion_torch, confusion_matrix


@pytest.mark.parametrize("num_classes", [2, 21, 150])
def test_torch_path_equals_numpy_path(num_classes: int) -> None:
    rng = np.random.default_rng(num_classes)
    pred = rng.integers(0, num_classes, size=(37, 53))
    label = rng.integers(0, num_classes, size=(37, 53))
    label[rng.random(label.shape) < 0.2] = 255
    ref = _confusion_numpy(pred, label, num_classes, 255)
    got = _confusion_torch(torch.from_numpy(pred), torch.from_numpy(label), num_classes, 255)
    assert got.dtype == torch.int64 and np.array_equal(got.numpy(), ref)
    assert ref.sum() == (label != 255).sum()


def test_torch_path_rejects_out_of_range() -> None:
    with pytest.raises(ValueError, match="label values"):
        _confusion_torch(torch.zeros(4, dtype=torch.long), torch.tensor([0, 1, 7, 255]), 3, 255)
    with pytest.raises(ValueError, match="prediction values"):
        _confusion_torch(torch.tensor([0, 3, 0, 0]), torch.tensor([0, 1, 2, 255]), 3, 255)


def test_cpu_tensors_return_tensors() -> None:
    out = confusion_matrix(torch.tensor([[0, 1]]), torch.tensor([[0, 255]]), 2)
    assert isinstance(out, torch.Tensor) and out.tolist() == [[1, 0], [0, 0]]
