"""Stage 0 of the demo model: token targets and the dense image-text contrastive loss."""

from __future__ import annotations

import numpy as np
import torch

from robustbench_ovss.training.batching import Scene
from robustbench_ovss.training.contrastive import dense_contrastive_loss, token_targets


def test_token_targets_take_the_covering_label_and_skip_borders() -> None:
    lab = np.zeros((4, 4), np.int64)
    lab[:, 2:] = 3
    lab[0, 0] = 255  # ignored pixel: counts as no label
    lab[2, 0], lab[3, :2] = 3, 255  # cell (1, 0): a quarter concept 3, a quarter background -> skipped
    t = token_targets([Scene(image=np.zeros((4, 4, 3), np.uint8), label=lab)], (2, 2), num_classes=5)
    assert t.shape == (1, 2, 2) and t.dtype == torch.long
    assert t[0].tolist() == [[0, 3], [-1, 3]]


def test_dense_contrastive_loss_rewards_the_matching_text() -> None:
    text = torch.eye(3, 4)  # three texts along three axes
    tokens = torch.zeros(1, 4, 1, 2)
    tokens[0, 0, 0, 0] = 1.0  # token 0 looks like text 0
    tokens[0, 2, 0, 1] = 1.0  # token 1 looks like text 2
    scale = torch.tensor(float(np.log(20.0)))
    right = dense_contrastive_loss(tokens, text, torch.tensor([[[0, 2]]]), scale)
    wrong = dense_contrastive_loss(tokens, text, torch.tensor([[[1, 0]]]), scale)
    assert right < 0.01 and wrong > 10.0
    # skipped tokens do not count; nothing kept -> 0
    assert torch.isclose(dense_contrastive_loss(tokens, text, torch.tensor([[[0, -1]]]), scale), right, atol=1e-3)
    assert dense_contrastive_loss(tokens, text, torch.full((1, 1, 2), -1), scale).item() == 0.0
    # the scale is capped at 100
    big = dense_contrastive_loss(tokens, text, torch.tensor([[[1, 0]]]), torch.tensor(10.0))
    assert torch.isclose(big, torch.tensor(100.0), rtol=1e-3)
