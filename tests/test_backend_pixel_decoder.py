"""The split pixel decoder (backends/pixel_decoder.py) against the direct computation and the model's own.

The maths is checked in float64 against ``conv2d(interpolate(nearest))`` written out directly; the
backend's split path against ``pixel_decoder="reference"`` (the model's ``Sam3MaskDecoder``) to 1e-5 of
each output's scale, and the methods' labels must be identical on the test fixtures.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from robustbench_ovss.backends import prompt_pass
from robustbench_ovss.backends.pixel_decoder import conv_of_upsampled, embed_pixels, parity_kernels, pixel_terms
from robustbench_ovss.backends.sam3 import Sam3Backend, resolve_pixel_decoder
from robustbench_ovss.errors import ConfigError
from robustbench_ovss.testing.method_labels import predict_labels

pytestmark = pytest.mark.usefixtures("one_torch_thread")
WORDS = ["wall", "sky", "tree", "person", "car", "dog"]


def _close_to_scale(got: torch.Tensor, want: torch.Tensor, rel: float = 1e-5) -> None:
    """|got - want| <= rel x max |want|: float round-off of a regrouped sum, relative to the output's size."""
    scale = float(want.abs().max()) or 1.0
    torch.testing.assert_close(got, want, rtol=0, atol=rel * scale)


@pytest.mark.parametrize("shape", [(2, 5, 7, 4, 6), (1, 3, 3, 1, 1), (3, 8, 4, 9, 5), (1, 2, 6, 2, 7)])
def test_conv_of_upsampled_equals_conv_of_the_upsampled_image(shape: tuple[int, ...]) -> None:
    n, i, o, h, w = shape
    g = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(n, i, h, w, dtype=torch.float64, generator=g)
    weight = torch.randn(o, i, 3, 3, dtype=torch.float64, generator=g)
    # the direct computation, written out: repeat every pixel into a 2x2 block, then a padded 3x3 conv
    up = x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    want = F.conv2d(up, weight, padding=1)
    got = conv_of_upsampled(x, parity_kernels(weight))
    assert got.shape == (n, o, 2 * h, 2 * w)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_parity_kernels_sum_the_taps_that_land_on_one_coarse_pixel() -> None:
    """By hand on one channel: taps 1..9 row by row; parity (0, 0) reads rows (i-1, i) and columns (j-1, j)."""
    w = torch.arange(1.0, 10.0).view(1, 1, 3, 3)
    k = parity_kernels(w)[:, 0]
    assert k.shape == (4, 2, 2)
    torch.testing.assert_close(k[0], torch.tensor([[1.0, 2 + 3], [4 + 7, 5 + 6 + 8 + 9]]))  # (0, 0)
    torch.testing.assert_close(k[3], torch.tensor([[1 + 2 + 4 + 5, 3 + 6], [7 + 8, 9.0]]))  # (1, 1)
    with pytest.raises(ValueError, match=r"\[O, I, 3, 3\]"):
        parity_kernels(torch.zeros(1, 1, 5, 5))


def test_embed_pixels_equals_the_models_pixel_decoder(tiny_checkpoint: Path) -> None:
    b = Sam3Backend(str(tiny_checkpoint), pixel_decoder="reference")
    image = (np.random.default_rng(3).random((90, 120, 3)) * 255).astype(np.uint8)
    levels = prompt_pass.mask_levels(b.encode_image(image).payload.fpn)
    decoder = b.model.mask_decoder.pixel_decoder
    coarse = torch.randn(3, *levels[-1].shape[1:], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = decoder([*levels[:-1], coarse])  # the [1] levels broadcast against 3 prompts, as in decode
        terms = pixel_terms(decoder, levels)
        assert terms is not None
        got = embed_pixels(decoder, terms, coarse)
    assert got.shape == want.shape == (3, *levels[0].shape[1:])
    _close_to_scale(got, want)


def test_levels_that_are_not_exact_doubles_are_not_split(tiny_checkpoint: Path) -> None:
    b = Sam3Backend(str(tiny_checkpoint))
    decoder = b.model.mask_decoder.pixel_decoder
    d = decoder.out_channels
    assert pixel_terms(decoder, [torch.zeros(1, d, 16, 16), torch.zeros(1, d, 8, 8), torch.zeros(1, d, 4, 4)]) is not None
    assert pixel_terms(decoder, [torch.zeros(1, d, 15, 16), torch.zeros(1, d, 8, 8), torch.zeros(1, d, 4, 4)]) is None


@pytest.mark.parametrize("checkpoint", ["tiny", "builtin:demo"])
def test_decoded_outputs_equal_the_models_mask_decoder(tiny_checkpoint: Path, checkpoint: str) -> None:
    ckpt = str(tiny_checkpoint) if checkpoint == "tiny" else checkpoint
    split, ref = Sam3Backend(ckpt, pixel_decoder="split"), Sam3Backend(ckpt, pixel_decoder="reference")
    assert split.identity == ref.identity  # like the bucket size: round-off only, not part of unit keys
    image = (np.random.default_rng(1).random((100, 140, 3)) * 255).astype(np.uint8)
    got, want = ((b.decode(b.encode_image(image), b.encode_text(WORDS), range(len(WORDS)), 4)) for b in (split, ref))
    for field in ("mask_logits", "semantic_logits"):
        _close_to_scale(getattr(got, field), getattr(want, field))
    for field in ("scores", "presence", "logits"):  # upstream of the mask decoder: bit for bit
        assert torch.equal(getattr(got, field), getattr(want, field)), field


def test_auto_splits_only_in_full_fp32() -> None:
    cpu = torch.device("cpu")
    assert resolve_pixel_decoder("auto", "fp32", cpu) == "split"
    assert resolve_pixel_decoder("auto", "bf16", cpu) == "reference"
    assert resolve_pixel_decoder("split", "fp32", cpu, once_per_image=False) == "reference"  # the oracle path
    assert resolve_pixel_decoder("reference", "fp32", cpu) == "reference"
    with pytest.raises(ConfigError, match="pixel_decoder 'fast' is not supported"):
        resolve_pixel_decoder("fast", "fp32", cpu)
    assert Sam3Backend("builtin:tiny-random").pixel_decoder == "split"
    assert Sam3Backend("builtin:tiny-random", dtype="bf16").pixel_decoder == "reference"


@pytest.mark.parametrize("checkpoint", ["builtin:tiny-random", "builtin:demo"])
def test_method_labels_are_identical(checkpoint: str) -> None:
    from robustbench_ovss.datasets.synthetic import concept_names, render_scene

    split, ref = Sam3Backend(checkpoint, pixel_decoder="split"), Sam3Backend(checkpoint, pixel_decoder="reference")
    vocab = [["background"]] + [[c] for c in concept_names()][:45]
    if checkpoint == "builtin:demo":
        images = [render_scene(k, split="val", size=256, vocab_size=45).image for k in range(3)]
    else:
        images = [(np.random.default_rng(0).random((150, 200, 3)) * 255).astype(np.uint8)]
    for name, params in (("segearth-ov3", {}), ("sam3", {}), ("activesam", {})):
        got = predict_labels(split, name, vocab, images, **params)
        want = predict_labels(ref, name, vocab, images, **params)
        for g, w in zip(got, want, strict=True):
            assert torch.equal(g, w), name
