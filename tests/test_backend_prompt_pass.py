"""Image-only work once per image (backends/prompt_pass.py) against the full per-prompt forward as the oracle.

``Sam3Backend(once_per_image=False)`` runs one ``Sam3Model`` forward per bucket, the previous code path;
every output of the default path must equal it (1e-5), under both numerics, in fp32 and under bf16
autocast, and the methods' labels must be identical on the test fixtures.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from robustbench_ovss.backends.base import Decoded
from robustbench_ovss.backends.sam3 import Sam3Backend
from robustbench_ovss.testing.method_labels import predict_labels

pytestmark = pytest.mark.usefixtures("one_torch_thread")
WORDS = ["wall", "sky", "tree", "person", "car", "dog", "road", "grass", "chair", "table"]
FIELDS = ("mask_logits", "scores", "semantic_logits", "presence", "logits", "presence_logits")


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(1)
    img = (rng.random((100, 140, 3)) * 255).astype(np.uint8)
    img[20:70, 30:90] = (30, 160, 200)
    return img


def _pair(checkpoint: str, **kw) -> tuple[Sam3Backend, Sam3Backend]:
    # the model's own mask decoder on both sides: the split pixel decoder has its own tests
    # (test_backend_pixel_decoder.py), this file holds the prompt pass to 1e-5
    kw.setdefault("pixel_decoder", "reference")
    return Sam3Backend(checkpoint, once_per_image=True, **kw), Sam3Backend(checkpoint, once_per_image=False, **kw)


def _assert_equal(fast: Decoded, oracle: Decoded, atol: float = 1e-5) -> None:
    for f in FIELDS:
        torch.testing.assert_close(getattr(fast, f), getattr(oracle, f), rtol=0, atol=atol, msg=f)


def _outputs(b: Sam3Backend, image: np.ndarray) -> tuple[Decoded, torch.Tensor]:
    """Decode in buckets of 4 (4 + 4 + 2) with two appended tokens, one of them masked for some prompts
    (ActiveSAM's full pass), and the presence-only pass at the 2/3 preview."""
    n = len(WORDS)
    extra = torch.randn(n, 2, int(b.model.text_projection.out_features), generator=torch.Generator().manual_seed(0))
    extra_mask = torch.ones(n, 2, dtype=torch.bool)
    extra_mask[::3, 1] = False
    text = b.encode_text(WORDS, extra, extra_mask)
    decoded = b.decode(b.encode_image(image), text, range(n), 4)
    preview = b.encode_image(image, b.native_size * 2 // 3, presence_only=True)
    return decoded, b.presence(preview, b.encode_text(WORDS), range(n), 3)


@pytest.mark.parametrize("numerics", ["meta", "transformers"])
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("checkpoint", ["tiny", "builtin:demo"])
def test_outputs_equal_the_full_forward(tiny_checkpoint: Path, image: np.ndarray, checkpoint: str, dtype: str,
                                        numerics: str) -> None:
    """bf16 = CPU autocast; on this machine both dtypes agree bit for bit, 1e-5 is the stated tolerance."""
    ckpt = str(tiny_checkpoint) if checkpoint == "tiny" else checkpoint
    fast, oracle = _pair(ckpt, dtype=dtype, numerics=numerics)
    assert fast.numerics == oracle.numerics == numerics and fast.identity == oracle.identity
    got, want = _outputs(fast, image), _outputs(oracle, image)
    _assert_equal(got[0], want[0])
    torch.testing.assert_close(got[1], want[1], rtol=0, atol=1e-5)
    assert fast.counters["decoder_calls"] == oracle.counters["decoder_calls"] == 3


def test_the_prefix_is_what_every_prompt_feeds_its_first_cross_attention(tiny_checkpoint: Path, image: np.ndarray) -> None:
    """In the full forward, the first encoder layer's cross-attention receives the same queries for every
    prompt of a bucket, and they are the stored prefix: the part before it does not see the prompt."""
    fast, oracle = _pair(str(tiny_checkpoint))
    seen: list[torch.Tensor] = []
    hook = oracle.model.detr_encoder.layers[0].cross_attn.register_forward_hook(
        lambda mod, args, kwargs, out: seen.append(kwargs["query"].detach().clone()), with_kwargs=True)
    try:
        oracle.decode(oracle.encode_image(image), oracle.encode_text(WORDS[:5]), range(5), 5)
    finally:
        hook.remove()
    (queries,) = seen
    prefix = fast.encode_image(image).payload.prefix
    assert queries.shape == (5, *prefix.normed.shape[1:])
    for row in queries:
        torch.testing.assert_close(row, prefix.normed[0], rtol=0, atol=1e-6)
    assert oracle.encode_image(image).payload.prefix is None


def test_the_decoder_start_is_what_every_prompt_feeds_its_first_text_cross_attention(tiny_checkpoint: Path,
                                                                                      image: np.ndarray) -> None:
    """In the full forward, the first DETR-decoder layer's text cross-attention receives the same queries
    for every prompt, equal to the stored start (after the self-attention on learned queries, plus the
    positions of the learned boxes), and its vision cross-attention the same box bias: the part before
    it sees neither the prompt nor the image."""
    fast, oracle = _pair(str(tiny_checkpoint))
    seen: dict[str, torch.Tensor] = {}
    layer = oracle.model.detr_decoder.layers[0]

    def keep(name: str, key: str):
        def hook(mod, args, kwargs, out) -> None:  # returns None: the output stays as it is
            seen.setdefault(name, kwargs[key].detach().clone())
        return hook

    hooks = [layer.text_cross_attn.register_forward_hook(keep("query", "query"), with_kwargs=True),
             layer.vision_cross_attn.register_forward_hook(keep("mask", "attention_mask"), with_kwargs=True)]
    try:
        oracle.decode(oracle.encode_image(image), oracle.encode_text(WORDS[:5]), range(5), 5)
    finally:
        for h in hooks:
            h.remove()
    start = fast.encode_image(image).payload.prefix.decoder
    other = fast.encode_image(np.ascontiguousarray(image[::-1])).payload.prefix.decoder  # same grid, other image
    assert seen["query"].shape == (5, *start.hidden.shape[1:]) and seen["mask"].shape[0] == 5
    for q, m in zip(seen["query"], seen["mask"], strict=True):
        torch.testing.assert_close(q, (start.hidden + start.query_pos)[0], rtol=0, atol=1e-6)
        torch.testing.assert_close(m, start.vision_mask[0], rtol=0, atol=1e-6)
    assert torch.equal(other.hidden, start.hidden) and torch.equal(other.vision_mask, start.vision_mask)


def test_decode_uses_the_prefix_of_the_image(tiny_checkpoint: Path, image: np.ndarray) -> None:
    """The fast path reads the stored prefix (another image's prefix changes the outputs), and features
    encoded without one (once_per_image=False) get theirs computed on first use, with equal outputs."""
    fast, oracle = _pair(str(tiny_checkpoint))
    text = fast.encode_text(WORDS[:4])
    feats = fast.encode_image(image)
    base = fast.decode(feats, text, range(4), 4)
    feats.payload.prefix = fast.encode_image(np.ascontiguousarray(image[::-1])).payload.prefix
    assert not torch.allclose(fast.decode(feats, text, range(4), 4).mask_logits, base.mask_logits, atol=1e-3)
    bare = oracle.encode_image(image)
    assert bare.payload.prefix is None
    _assert_equal(fast.decode(bare, text, range(4), 4), base)
    assert bare.payload.prefix is not None


class _Copies(TorchDispatchMode):
    """Shapes of the tensors that copying ops (clone, copy_, cat, _to_copy) produce."""

    OPS = ("aten.clone", "aten.copy_", "aten.cat", "aten._to_copy")

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if any(str(func).startswith(op + ".") for op in self.OPS) and isinstance(out, torch.Tensor):
            self.shapes.append(tuple(out.shape))
        return out


def test_no_per_prompt_copies_of_the_image_features(tiny_checkpoint: Path, image: np.ndarray) -> None:
    """The full forward copies each FPN level and the flattened 1x level and its position encoding once
    per prompt; the fast path copies no FPN level per prompt and only the cross-attention queries."""
    n = 6
    counts = {}
    for b in _pair(str(tiny_checkpoint)):
        feats, text = b.encode_image(image), b.encode_text(WORDS[:n])
        fpn = feats.payload.fpn[:-1]
        level_shapes = {(n, *f.shape[1:]) for f in fpn}
        h, w = fpn[-1].shape[-2:]
        flat = (n, h * w, fpn[-1].shape[1])
        with _Copies() as spy:
            b.decode(feats, text, range(n), n)
        counts[b.once_per_image] = (sum(s in level_shapes for s in spy.shapes), sum(s == flat for s in spy.shapes))
    assert counts[False][0] == 3 and counts[False][1] >= 2  # the oracle: three levels, features and positions
    assert counts[True] == (0, 1)


# -- labels of the methods -------------------------------------------------------------------------------------
@pytest.mark.parametrize("checkpoint", ["builtin:tiny-random", "builtin:demo"])
def test_method_labels_are_identical(checkpoint: str) -> None:
    """segearth-ov3, sam3 and ActiveSAM (46 prompts: the presence preview runs) give identical labels
    (on the demo's scenes 2 to 6 classes per image)."""
    from robustbench_ovss.datasets.synthetic import concept_names, render_scene

    fast, oracle = _pair(checkpoint)
    vocab = [["background"]] + [[c] for c in concept_names()][:45]
    if checkpoint == "builtin:demo":  # held-out scenes of the demo model's own benchmark: several classes each
        images = [render_scene(k, split="val", size=256, vocab_size=45).image for k in range(2)]
    else:  # random weights: a noise image gives more than one class
        images = [(np.random.default_rng(0).random((150, 200, 3)) * 255).astype(np.uint8)]
    for name, params in (("segearth-ov3", {}), ("sam3", {}), ("activesam", {"expansion": False})):
        got = predict_labels(fast, name, vocab, images, **params)
        want = predict_labels(oracle, name, vocab, images, **params)
        for g, w in zip(got, want, strict=True):
            assert torch.equal(g, w), name
