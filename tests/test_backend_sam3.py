"""The SAM 3 backend's operations on the tiny random model (issue #5, DESIGN §4-§5)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from robustbench_ovss.backends.base import Backend, Decoded
from robustbench_ovss.backends.sam3 import Sam3Backend
from robustbench_ovss.registry import BACKENDS

VOCAB = [
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "window", "grass", "cabinet", "sidewalk",
    "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water", "painting", "sofa",
    "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk", "rock", "wardrobe",
    "lamp", "bathtub", "railing", "cushion",
]  # 40 prompts: buckets of 32 split them 32 + 8
FIELDS = ("mask_logits", "scores", "semantic_logits", "presence")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def backend(tiny_checkpoint: Path) -> Sam3Backend:
    return BACKENDS.get("sam3")(checkpoint=str(tiny_checkpoint), device="cpu", dtype="fp32")


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    img = (rng.random((120, 160, 3)) * 255).astype(np.uint8)
    img[30:90, 40:100] = (200, 30, 30)  # some structure
    return img


@pytest.fixture(scope="module")
def singles(backend: Sam3Backend, image: np.ndarray) -> Decoded:
    """Reference: one decoder call per prompt."""
    feats = backend.encode_image(image)
    text = backend.encode_text(VOCAB)
    parts = [backend.decode(feats, text, [i], 1) for i in range(len(VOCAB))]
    return Decoded(*(torch.cat([getattr(p, f) for p in parts]) for f in FIELDS))


def _close(a: Decoded, b: Decoded, atol: float = 1e-4) -> None:
    for f in FIELDS:
        torch.testing.assert_close(getattr(a, f), getattr(b, f), rtol=1e-4, atol=atol, msg=f)


def test_registered_and_satisfies_the_protocol(backend: Sam3Backend) -> None:
    assert BACKENDS.get("sam3") is Sam3Backend
    assert isinstance(backend, Backend)
    assert backend.native_size == 336 and backend.dtype == "fp32" and backend.device.type == "cpu"
    assert backend.identity.startswith(str(backend.checkpoint_dir)) and "@" in backend.identity


def test_outputs_have_the_documented_shapes(backend: Sam3Backend, singles: Decoded) -> None:
    n, q, grid = len(VOCAB), backend.num_queries, 336 // 14 * 4
    assert singles.mask_logits.shape == (n, q, grid, grid)
    assert singles.scores.shape == (n, q) and singles.semantic_logits.shape == (n, grid, grid)
    assert singles.presence.shape == (n,)
    assert all(getattr(singles, f).dtype == torch.float32 for f in FIELDS)
    assert float(singles.presence.std()) > 1e-3, "prompts should give different presences"


@pytest.mark.parametrize("bucket", [1, 7, 32])
def test_bucketed_decode_equals_one_prompt_per_call(backend: Sam3Backend, image: np.ndarray, singles: Decoded,
                                                    bucket: int) -> None:
    feats, text = backend.encode_image(image), backend.encode_text(VOCAB)
    calls = backend.counters["decoder_calls"]
    order = list(range(len(VOCAB)))[::-1]  # rows follow the requested order
    out = backend.decode(feats, text, order, bucket)
    assert backend.counters["decoder_calls"] - calls == -(-len(VOCAB) // bucket)
    idx = torch.tensor(order)
    _close(out, Decoded(*(getattr(singles, f)[idx] for f in FIELDS)))


def test_decode_iter_yields_one_pair_per_decoder_call(backend: Sam3Backend, image: np.ndarray) -> None:
    feats, text = backend.encode_image(image), backend.encode_text(VOCAB[:10])
    chunks = [c for c, d in backend.decode_iter(feats, text, range(10), 4)]
    assert chunks == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    empty = backend.decode(feats, text, [], 4)
    assert empty.mask_logits.shape[0] == 0 and empty.presence.shape == (0,)


def test_cached_image_features_equal_recomputed_ones(backend: Sam3Backend, image: np.ndarray) -> None:
    text = backend.encode_text(VOCAB[:5])
    cached = backend.encode_image(image)
    first = backend.decode(cached, text, range(5), 5)
    again = backend.decode(cached, text, range(5), 5)  # features reused, not modified by decoding
    fresh = backend.decode(backend.encode_image(image), text, range(5), 5)
    _close(first, again, atol=0)
    _close(first, fresh, atol=0)


def test_text_encoder_runs_once_per_vocabulary(tiny_checkpoint: Path) -> None:
    b = Sam3Backend(str(tiny_checkpoint))
    b.encode_text(VOCAB)
    b.encode_text(VOCAB)
    b.encode_text(list(reversed(VOCAB)))
    b.text_embeddings_1024(VOCAB)
    b.encode_text(VOCAB[:3], torch.zeros(3, 4, 32), torch.ones(3, 4, dtype=torch.bool))
    assert b.counters["text_encoder_calls"] == 1
    b.encode_text(["Wall"])  # a different string (case kept) is a different text
    assert b.counters["text_encoder_calls"] == 2


def test_text_features_carry_the_attention_mask(backend: Sam3Backend) -> None:
    t = backend.encode_text(["wall", "chest of drawers"])
    assert t.features.shape == (2, 32, 32) and t.mask.dtype == torch.bool
    assert t.mask.sum(1).tolist() == [3, 5]  # [BOS] words [EOS]
    assert t.texts == ("wall", "chest of drawers")


def test_masked_extra_tokens_change_nothing_and_attended_ones_do(backend: Sam3Backend, image: np.ndarray) -> None:
    feats = backend.encode_image(image)
    bare = backend.encode_text(VOCAB[:4])
    extra = torch.randn(4, 4, 32, generator=torch.Generator().manual_seed(0))
    hidden = backend.encode_text(VOCAB[:4], extra, torch.zeros(4, 4, dtype=torch.bool))
    shown = backend.encode_text(VOCAB[:4], extra)
    assert hidden.features.shape == (4, 36, 32) and shown.mask[:, 32:].all()
    base = backend.decode(feats, bare, range(4), 4)
    _close(backend.decode(feats, hidden, range(4), 4), base, atol=1e-5)
    assert not torch.allclose(backend.decode(feats, shown, range(4), 4).presence, base.presence)


def test_presence_only_pass_equals_the_full_forward(backend: Sam3Backend, image: np.ndarray) -> None:
    text = backend.encode_text(VOCAB)
    for size in (336, 224):
        full = backend.decode(backend.encode_image(image, size), text, range(len(VOCAB)), 32)
        calls = backend.counters["presence_calls"]
        light = backend.presence(backend.encode_image(image, size, presence_only=True), text, range(len(VOCAB)), 7)
        assert backend.counters["presence_calls"] - calls == 6
        torch.testing.assert_close(light, full.presence, rtol=0, atol=1e-6)


def test_without_geometry_token_equals_transformers_text_only_forward(tiny_checkpoint: Path, image: np.ndarray) -> None:
    """geometry_cls=False reproduces transformers' own end-to-end forward (pixels + token ids in one call)."""
    from robustbench_ovss.backends.preprocess import image_to_pixels, tokenize

    b = Sam3Backend(str(tiny_checkpoint), geometry_cls=False)
    assert b.identity.endswith("#no-geometry-cls")
    text = b.encode_text(VOCAB[:3])
    ids, attn = tokenize(b.tokenizer, VOCAB[:3], 32, "cpu")
    with torch.no_grad():
        ref = b.model(pixel_values=image_to_pixels(image, 336).expand(3, -1, -1, -1), input_ids=ids, attention_mask=attn)
    feats = b.encode_image(image)
    torch.testing.assert_close(b.presence(feats, text, range(3), 3), torch.sigmoid(ref.presence_logits[:, 0]),
                               rtol=0, atol=1e-5)
    out = b.decode(feats, text, range(3), 3)
    torch.testing.assert_close(out.mask_logits, ref.pred_masks, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out.scores, torch.sigmoid(ref.pred_logits) * torch.sigmoid(ref.presence_logits), rtol=1e-4, atol=1e-5)


def test_geometry_token_is_appended_to_every_prompt(backend: Sam3Backend, tiny_checkpoint: Path, image: np.ndarray) -> None:
    """Meta's SAM 3 appends the geometry encoder's image-conditioned CLS token to text prompts."""
    plain = Sam3Backend(str(tiny_checkpoint), geometry_cls=False)
    feats = backend.encode_image(image)
    token = feats.payload.geometry_token
    assert token.shape == (1, 1, 32)
    other = backend.encode_image(np.ascontiguousarray(image[::-1])).payload.geometry_token
    assert not torch.allclose(token, other)  # conditioned on the image
    with_token = backend.decode(feats, backend.encode_text(VOCAB[:4]), range(4), 4)
    as_extra = plain.encode_text(VOCAB[:4], token.expand(4, 1, 32))
    _close(with_token, plain.decode(plain.encode_image(image), as_extra, range(4), 4))
    without = plain.decode(plain.encode_image(image), plain.encode_text(VOCAB[:4]), range(4), 4)
    assert not torch.allclose(with_token.presence, without.presence)


def _model_built_at(tiny_checkpoint: Path, folder: Path, size: int) -> Sam3Backend:
    """Same weights, config.json saying the model was built for ``size``."""
    shutil.copytree(tiny_checkpoint, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["vision_config"]["backbone_config"]["image_size"] = size
    grid = size // 14
    cfg["vision_config"]["backbone_feature_sizes"] = [[4 * grid] * 2, [2 * grid] * 2, [grid] * 2]
    (folder / "config.json").write_text(json.dumps(cfg))
    return Sam3Backend(str(folder))


def test_low_resolution_pass_equals_a_model_built_at_that_resolution(backend: Sam3Backend, tiny_checkpoint: Path,
                                                                   image: np.ndarray, tmp_path: Path) -> None:
    small = _model_built_at(tiny_checkpoint, tmp_path / "m224", 224)
    assert small.native_size == 224
    low = backend.encode_image(image, 224)
    ref = small.encode_image(image)
    for a, b in zip(low.payload.fpn, ref.payload.fpn):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    text_a, text_b = backend.encode_text(VOCAB[:6]), small.encode_text(VOCAB[:6])
    _close(backend.decode(low, text_a, range(6), 6), small.decode(ref, text_b, range(6), 6), atol=1e-5)
    # without the buffer switch the 336 model cannot run 224 at all
    from robustbench_ovss.backends.preprocess import image_to_pixels

    with pytest.raises(RuntimeError), torch.inference_mode():
        backend.model.vision_encoder(image_to_pixels(image, 224))


def test_shared_model_is_not_left_mutated(tiny_checkpoint: Path, image: np.ndarray) -> None:
    b = Sam3Backend(str(tiny_checkpoint))
    text = b.encode_text(VOCAB[:5])
    before_buffers = {k: v.clone() for k, v in b.model.named_buffers()}
    before = b.decode(b.encode_image(image), text, range(5), 5)
    b.presence(b.encode_image(image, 224, presence_only=True), text, range(5), 5)
    b.decode(b.encode_image(image, 224), text, range(5), 5)
    # a failure inside a low-resolution pass restores the buffers too
    original = b.model.vision_encoder.backbone.layers[-1].forward
    b.model.vision_encoder.backbone.layers[-1].forward = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom"))
    with pytest.raises(RuntimeError, match="boom"):
        b.encode_image(image, 224)
    b.model.vision_encoder.backbone.layers[-1].forward = original
    after_buffers = dict(b.model.named_buffers())
    assert before_buffers.keys() == after_buffers.keys()
    for k, v in before_buffers.items():
        assert torch.equal(v, after_buffers[k]), k
    assert b.model.config.vision_config.backbone_config.image_size == 336
    _close(b.decode(b.encode_image(image), text, range(5), 5), before, atol=0)


def test_oom_in_a_bucket_halves_it_and_retries(tiny_checkpoint: Path, image: np.ndarray) -> None:
    b = Sam3Backend(str(tiny_checkpoint))
    feats, text = b.encode_image(image), b.encode_text(VOCAB[:10])
    reference = b.decode(feats, text, range(10), 1)
    real_decode, real_presence = b._decode_bucket, b._presence_bucket
    seen: list[int] = []

    def flaky_decode(payload, text_, chunk):
        seen.append(len(chunk))
        if len(chunk) > 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")
        return real_decode(payload, text_, chunk)

    b._decode_bucket = flaky_decode
    out = b.decode(feats, text, range(10), 16)
    assert seen[:4] == [10, 8, 4, 2]  # 16 (10 prompts) -> 8 -> 4 -> 2 fits
    assert b.counters["oom_backoffs"] == 3 and b.bucket_caps["decode"] == 2
    _close(out, reference)
    seen.clear()
    b.decode(feats, text, range(10), 16)  # the smaller bucket is remembered
    assert max(seen) == 2 and b.counters["oom_backoffs"] == 3

    def always_oom(*args):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")

    b._presence_bucket = always_oom
    with pytest.raises(torch.cuda.OutOfMemoryError):
        b.presence(feats, text, range(4), 4)  # 4 -> 2 -> 1 -> gives up
    assert b.counters["oom_backoffs"] == 5
    b._presence_bucket = real_presence


def test_text_embeddings_1024_and_project(backend: Sam3Backend) -> None:
    texts = ["wall", "potted plant", "sky"]
    emb = backend.text_embeddings_1024(texts)
    assert emb.shape == (3, backend.config.text_config.hidden_size) and emb.dtype == torch.float32
    from robustbench_ovss.backends.preprocess import tokenize

    ids, attn = tokenize(backend.tokenizer, texts, 32, "cpu")
    with torch.no_grad():
        tok = backend.model.text_encoder.text_model.embeddings.token_embedding(ids)
    manual = (tok * attn[..., None]).sum(1) / attn.sum(1, keepdim=True)
    torch.testing.assert_close(emb, manual)
    hidden = backend.text_embeddings_1024(texts, pooling="hidden")
    assert hidden.shape == emb.shape and not torch.allclose(hidden, emb)
    proj = backend.project(emb)
    assert proj.shape == (3, 32)
    with torch.no_grad():
        torch.testing.assert_close(proj, backend.model.text_projection(emb))


def test_masked_mean_averages_the_valid_positions_only() -> None:
    from robustbench_ovss.backends.text_pooling import masked_mean

    x = torch.arange(24, dtype=torch.float32).reshape(3, 4, 2)
    mask = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0]], dtype=torch.bool)
    expected = torch.stack([x[0, :2].mean(0), x[1, 3], torch.zeros(2)])
    torch.testing.assert_close(masked_mean(x, mask), expected)
    torch.testing.assert_close(masked_mean(x, mask.long()), expected)


def test_bf16_is_autocast_and_keeps_fp32_weights(tiny_checkpoint: Path, image: np.ndarray, backend: Sam3Backend) -> None:
    b = Sam3Backend(str(tiny_checkpoint), dtype="bf16")
    assert b.dtype == "bf16"
    out = b.decode(b.encode_image(image), b.encode_text(VOCAB[:3]), range(3), 3)
    assert all(p.dtype == torch.float32 for p in b.model.parameters())
    assert all(buf.dtype != torch.bfloat16 for buf in b.model.buffers())
    assert out.presence.dtype == torch.float32
    ref = backend.decode(backend.encode_image(image), backend.encode_text(VOCAB[:3]), range(3), 3)
    torch.testing.assert_close(out.presence, ref.presence, rtol=0, atol=0.05)


def test_bad_inputs_are_rejected(backend: Sam3Backend, image: np.ndarray) -> None:
    with pytest.raises(ValueError, match="uint8"):
        backend.encode_image(image.astype(np.float32))
    with pytest.raises(ValueError, match="multiple of the patch size"):
        backend.encode_image(image, 230)
    feats, text = backend.encode_image(image, presence_only=True), backend.encode_text(VOCAB[:2])
    with pytest.raises(ValueError, match="presence_only"):
        backend.decode(feats, text, [0], 1)
    with pytest.raises(IndexError):
        backend.presence(feats, text, [2], 1)
    with pytest.raises(TypeError):
        backend.encode_text("wall")
    with pytest.raises(ValueError, match="extra_tokens"):
        backend.encode_text(["wall"], torch.zeros(2, 4, 32))


def test_builtin_tiny_model_loads_through_the_same_path() -> None:
    b = Sam3Backend("builtin:tiny-random")
    assert b.identity.startswith("builtin:tiny-random@")
    assert b.native_size == 336
    assert len(b.encode_text(["wall"])) == 1


def test_tiny_config_defaults_are_the_shipped_tiny_model(tmp_path: Path) -> None:
    """``tiny_config``'s knobs (used by the demo model's training) leave its defaults as shipped."""
    from robustbench_ovss.backends.tiny import tiny_config

    shipped_dir = Path(__file__).resolve().parents[1] / "robustbench_ovss" / "assets" / "tiny-sam3-random"
    shipped = json.loads((shipped_dir / "config.json").read_text())
    tiny_config(image_size=336, vocab_size=shipped["text_config"]["vocab_size"], initializer_range=0.2).save_pretrained(tmp_path)
    built = json.loads((tmp_path / "config.json").read_text())
    not_of_the_config = {"architectures", "dtype", "transformers_version", "ovss_numerics"}  # written at save
    assert {k: v for k, v in built.items() if k not in not_of_the_config} == \
        {k: v for k, v in shipped.items() if k not in not_of_the_config}


def test_a_checkpoint_trained_without_the_geometry_token_says_so(tiny_checkpoint: Path, tmp_path: Path) -> None:
    folder = shutil.copytree(tiny_checkpoint, tmp_path / "no_geo")
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "ovss_geometry_cls": False}))
    assert Sam3Backend(str(folder)).geometry_cls is False
    assert Sam3Backend(str(folder), geometry_cls=True).geometry_cls is True
    assert Sam3Backend(str(tiny_checkpoint)).geometry_cls is True
