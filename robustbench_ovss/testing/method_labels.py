"""Labels a built-in or plugin method predicts with a given backend: the oracle comparisons of speed-ups."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def predict_labels(backend: Any, name: str, vocab: list[list[str]], images: list[np.ndarray], **params: Any) -> list[torch.Tensor]:
    """Set method ``name`` up on ``vocab`` (class 0 background, prob_thd 0.4) and predict every image.

    Returns:
        one int64 [H, W] label map per image, checked against the Method contract.
    """
    from ..method import MethodContext, check_prediction
    from ..registry import METHODS

    m = METHODS.get(name)(**params)
    m.setup(MethodContext(vocabulary=vocab, bg_idx=0, prob_thd=0.4, dataset="voc21", backend=backend,
                          class_names=[a[0] for a in vocab]))
    return [check_prediction(m.predict(img), img.shape[:2], len(vocab), name) for img in images]
