"""One vector per prompt from a ``Sam3Model``'s text encoder: the pooling ActiveSAM's expansion reads.

Shared by the ``sam3`` backend (``text_embeddings_1024``, under ``no_grad``) and the demo model's
training (``training.loop.TextBank``, with gradients), so the appended tokens the training builds are
the ones the method appends at inference.
"""

from __future__ import annotations

from typing import Any

import torch


def input_token_embeddings(model: Any, input_ids: torch.Tensor) -> torch.Tensor:
    """The text encoder's input token embeddings [N, L, H_text] of long ``input_ids`` [N, L].

    These, before the text transformer, are what the ActiveSAM release pools (``language_embeds`` of
    SAM 3's VETextEncoder); H_text is 1024 on the real model.
    """
    return model.text_encoder.text_model.embeddings.token_embedding(input_ids)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` [N, L, H] over the positions where ``mask`` [N, L] (bool or 0/1) is set: [N, H].

    Computed in ``x``'s dtype; a row with no valid position gives zeros.
    """
    m = mask.to(x.dtype).unsqueeze(-1)
    return (x * m).sum(1) / m.sum(1).clamp(min=1.0)
