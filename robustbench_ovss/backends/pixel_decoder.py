"""SAM 3's pixel decoder with the image-only half of each convolution done once per image.

Each upsampling stage of the mask decoder's pixel decoder (``Sam3PixelDecoder``, Meta's
``PixelDecoder``) computes ``relu(norm(conv3x3(up2(prev) + level)))``: ``prev`` depends on the prompt (it
starts from the DETR encoder's output), ``level`` is a backbone FPN level (the image alone) and ``up2``
is a nearest-neighbour upsampling by exactly two. The convolution is linear, so

    conv3x3(up2(prev) + level) = conv3x3_nobias(up2(prev)) + conv3x3(level)

and the second term is computed once per image (:func:`pixel_terms`). The first term is a 3x3
convolution of an image whose pixels come in identical 2x2 blocks: each output pixel of parity (a, c)
(row 2i+a, column 2j+c) reads only two coarse rows and two coarse columns, so it equals a 2x2
convolution of ``prev`` at the coarse resolution with the 3x3 taps that fall on the same coarse pixel
summed (:func:`parity_kernels`). The four parities run as four 2x2 convolutions, each written into its
quarter of the output together with the image-only term (:func:`conv_of_upsampled`): 16 multiply-adds
per coarse pixel and channel pair instead of 36, and no upsampled copy of ``prev``.

The result is the same sum of the same products, grouped differently, so it equals the reference up to
float round-off: in fp32 about 1e-6 of an output's largest magnitude (measured on the tiny, demo and mid
models: the size of the difference between decoding in buckets of 1 and 8). Under bf16 autocast, or TF32 convolutions on CUDA, the
inputs of the convolution are rounded before it, and splitting the sum rounds other numbers, so the
difference grows to the rounding of those formats. The backend therefore uses this path only where the
convolutions run in full fp32 (``Sam3Backend(pixel_decoder="auto")``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F


@dataclass
class PixelTerms:
    """The image-only part of the pixel decoder for one image.

    Attributes:
        skips: per upsampling stage, coarse to fine, ``conv_k(level_k)`` with the conv's bias
            [1, D, h_k, w_k] (h_k = 2 h_{k-1}).
        kernels: per stage, :func:`parity_kernels` of ``conv_k``'s weight [4 D, D, 2, 2].
    """

    skips: tuple[torch.Tensor, ...]
    kernels: tuple[torch.Tensor, ...]


def parity_kernels(weight: torch.Tensor) -> torch.Tensor:
    """The 2x2 coarse kernels of a 3x3 convolution applied after a 2x nearest upsampling.

    Args:
        weight: [O, I, 3, 3] (cross-correlation, padding 1, as ``nn.Conv2d``).
    Returns:
        [4 O, I, 2, 2]: blocks of O output channels for the parities (a, c) = (0, 0), (0, 1), (1, 0),
        (1, 1) of (output row, output column). Parity 0 reads coarse rows (i - 1, i) with taps
        (row 0, rows 1 + 2); parity 1 reads (i, i + 1) with taps (rows 0 + 1, row 2); columns likewise.
    """
    if weight.dim() != 4 or tuple(weight.shape[-2:]) != (3, 3):
        raise ValueError(f"parity_kernels takes a [O, I, 3, 3] weight, got {tuple(weight.shape)}")
    rows = (torch.stack([weight[:, :, 0], weight[:, :, 1] + weight[:, :, 2]], dim=2),   # parity 0
            torch.stack([weight[:, :, 0] + weight[:, :, 1], weight[:, :, 2]], dim=2))   # parity 1
    blocks = []
    for r in rows:  # r: [O, I, 2, 3]
        blocks.append(torch.stack([r[..., 0], r[..., 1] + r[..., 2]], dim=-1))   # column parity 0
        blocks.append(torch.stack([r[..., 0] + r[..., 1], r[..., 2]], dim=-1))   # column parity 1
    return torch.cat(blocks, dim=0)


def conv_of_upsampled(x: torch.Tensor, kernels: torch.Tensor, add: torch.Tensor | None = None) -> torch.Tensor:
    """``conv3x3_nobias(nearest_upsample_2x(x)) + add`` (padding 1) computed at the coarse resolution.

    Args:
        x: [n, I, h, w].
        kernels: :func:`parity_kernels` of the 3x3 weight, [4 O, I, 2, 2].
        add: optional [1 or n, O, 2 h, 2 w] added to the result (the image-only half and the bias).
    Returns:
        [n, O, 2 h, 2 w] (contiguous), equal to the direct computation up to float round-off.
    """
    n, _, h, w = x.shape
    o = kernels.shape[0] // 4
    padded = F.pad(x, (1, 1, 1, 1))
    out = torch.empty(n, o, 2 * h, 2 * w, dtype=x.dtype, device=x.device)
    for k, (a, c) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        # parity (a, c) reads coarse rows (i - 1, i) when a = 0 and (i, i + 1) when a = 1: padded rows
        # a + i .. a + i + 1 (columns likewise). One convolution per parity, each written straight into
        # its strided quarter of the output (with ``add``), measured faster than one convolution with 4 O
        # outputs followed by an interleaving copy.
        y = F.conv2d(padded[:, :, a:a + h + 1, c:c + w + 1], kernels[k * o:(k + 1) * o])
        if add is None:
            out[:, :, a::2, c::2] = y
        else:
            torch.add(y, add[:, :, a::2, c::2], out=out[:, :, a::2, c::2])
    return out


def _plain_3x3(conv: Any) -> bool:
    return (tuple(conv.kernel_size) == (3, 3) and tuple(conv.stride) == (1, 1) and tuple(conv.padding) == (1, 1)
            and tuple(conv.dilation) == (1, 1) and conv.groups == 1 and conv.padding_mode == "zeros")


def pixel_terms(pixel_decoder: Any, levels: list[torch.Tensor]) -> PixelTerms | None:
    """The image-only part of ``pixel_decoder`` on the backbone levels it adds, or None where it cannot be split.

    Args:
        pixel_decoder: the mask decoder's ``Sam3PixelDecoder``.
        levels: the mask decoder's backbone features, finest first ([1, D, h, w] each); the last, coarsest
            one is the level the DETR encoder's output replaces (only its size is read).
    Returns:
        None when a stage is not a plain 3x3 convolution after an exact 2x upsampling (then the
        reference path must run).
    """
    skips, kernels = [], []
    size = tuple(levels[-1].shape[-2:])
    for k, level in enumerate(reversed(levels[:-1])):
        conv = pixel_decoder.conv_layers[k]
        if not _plain_3x3(conv) or tuple(level.shape[-2:]) != (2 * size[0], 2 * size[1]):
            return None
        skips.append(conv(level))
        kernels.append(parity_kernels(conv.weight))
        size = tuple(level.shape[-2:])
    return PixelTerms(skips=tuple(skips), kernels=tuple(kernels))


def embed_pixels(pixel_decoder: Any, terms: PixelTerms, coarse: torch.Tensor) -> torch.Tensor:
    """The pixel decoder's output from the prompt-conditioned coarse map and the image's terms.

    Args:
        coarse: the DETR encoder's image tokens as a map [n, D, h, w] (after the mask decoder's
            prompt cross-attention).
    Returns:
        pixel embeddings [n, D, H, W] at the finest level, as ``pixel_decoder(levels)`` with the coarse
        level replaced by ``coarse``.
    """
    x = coarse
    for k, (skip, kernel) in enumerate(zip(terms.skips, terms.kernels)):
        x = conv_of_upsampled(x, kernel, add=skip)
        x = pixel_decoder.norms[k](x)  # its own statement: the conv output is freed before the ReLU
        x = F.relu(x, inplace=True)  # same values as F.relu(x); one full-resolution map less at the peak
    return x
