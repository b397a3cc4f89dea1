"""The reference methods' precision under bf16 autocast (issue #13), reproduced on the CPU.

The releases run model and post-processing inside ``torch.autocast("cuda", torch.bfloat16)``: their
post-processing sees bf16 outputs; ActiveSAM's expansion maths runs in fp32 outside autocast; Meta's
DETR decoder runs its feed-forward blocks outside autocast. CPU autocast gives the same bf16 rules, so
each is checked here against an independent computation written out in the reference's order.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from robustbench_ovss.backends.base import Decoded
from robustbench_ovss.errors import ConfigError
from robustbench_ovss.method import MethodContext
from robustbench_ovss.methods.fusion import fuse_prompts, instance_scores, postprocess_dtype
from robustbench_ovss.registry import BACKENDS, METHODS

pytestmark = pytest.mark.usefixtures("one_torch_thread")
BF16 = torch.bfloat16


def test_auto_follows_the_run_dtype() -> None:
    assert postprocess_dtype("auto", "bf16") == BF16 and postprocess_dtype("auto", "fp32") == torch.float32
    assert postprocess_dtype("fp32", "bf16") == torch.float32 and postprocess_dtype("bf16", "fp32") == BF16
    with pytest.raises(ValueError):
        postprocess_dtype("fp16", "fp32")
    for name in ("activesam", "segearth-ov3", "sam3"):
        assert METHODS.get(name)().params["postprocess_dtype"] == "auto"
        with pytest.raises(ConfigError, match="postprocess_dtype"):
            METHODS.get(name)(postprocess_dtype="half")


def _upsample(x: torch.Tensor, hw) -> torch.Tensor:
    """F.interpolate under CUDA autocast: upsample_bilinear2d is on its fp32 list (torch >= 2.4)."""
    return F.interpolate(x.float(), size=hw, mode="bilinear", align_corners=False)


def _reference_order(logits, presence_logits, masks, semantic, conf, hw):
    """One prompt as the SegEarth-OV-3 / ActiveSAM releases compute it on bf16 model outputs."""
    probs = logits.to(BF16).sigmoid()  # [Q] bf16: sigmoid keeps its input's dtype
    presence = presence_logits.to(BF16).sigmoid()  # bf16 0-dim
    scores = probs * presence  # bf16
    keep = scores > conf  # python float against bf16
    seg = torch.zeros(hw)  # fp32, as torch.zeros in the releases
    if keep.any():
        up = _upsample(masks[keep].to(BF16).unsqueeze(1), hw).sigmoid()
        for m, s in zip(up[:, 0], scores[keep], strict=True):
            seg = torch.max(seg, m * s)  # fp32 map x bf16 0-dim -> fp32
    sem = _upsample(semantic.to(BF16)[None, None], hw).sigmoid()[0, 0]
    seg = torch.max(seg, sem)
    return seg * presence  # fp32 x bf16 0-dim -> fp32


def test_bf16_post_processing_equals_the_reference_order() -> None:
    g = torch.Generator().manual_seed(0)
    n, q, h, w, hw = 3, 6, 8, 10, (23, 31)
    # bf16-valued logits, as a bf16 model returns them (the backend hands them on as float32)
    logits = (torch.randn(n, q, generator=g) * 2).to(BF16).float()
    presence_logits = torch.tensor([3.0, -0.4, 12.5]).to(BF16).float()
    masks = (torch.randn(n, q, h, w, generator=g) * 4).to(BF16).float()
    semantic = (torch.randn(n, h, w, generator=g) * 3).to(BF16).float()
    presence = presence_logits.sigmoid()
    dec = Decoded(masks, logits.sigmoid() * presence[:, None], semantic, presence, logits, presence_logits)
    scores, pres = instance_scores(dec, BF16)
    assert scores.dtype == BF16 and pres.dtype == BF16
    got = fuse_prompts(masks, scores, semantic, pres, 0.3, hw)
    want = torch.stack([_reference_order(logits[i], presence_logits[i], masks[i], semantic[i], 0.3, hw) for i in range(n)])
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    fp32 = fuse_prompts(masks, dec.scores, semantic, dec.presence, 0.3, hw)
    assert not torch.equal(fp32, got)  # the precision is visible in the scores


def test_a_bf16_threshold_of_0_3_acts_as_0_30078125() -> None:
    logit = torch.tensor([[math.log(0.30078125 / 0.69921875)]])  # sigmoid 0.30074 in fp32, 0.30078125 in bf16
    presence_logits = torch.tensor([30.0])  # presence 1.0 in either dtype
    mask = torch.full((1, 1, 4, 4), 5.0)
    presence = presence_logits.sigmoid()
    dec = Decoded(mask, logit.sigmoid() * presence[:, None], torch.zeros(1, 4, 4), presence, logit, presence_logits)
    s32, p32 = instance_scores(dec, torch.float32)
    s16, p16 = instance_scores(dec, BF16)
    assert float(s32) > 0.3 and float(s16) == 0.30078125
    assert fuse_prompts(mask, s32, None, p32, 0.3, (4, 4)).max() > 0  # kept in fp32
    assert fuse_prompts(mask, s16, None, p16, 0.3, (4, 4)).max() == 0  # 0.30078125 > bf16(0.3) is False


@pytest.fixture(scope="module")
def backend(tiny_checkpoint: Path):
    return BACKENDS.get("sam3")(checkpoint=str(tiny_checkpoint), device="cpu", dtype="fp32")


def _ctx(backend, vocab, dtype="fp32") -> MethodContext:
    return MethodContext(vocabulary=vocab, bg_idx=0, prob_thd=0.4, dataset="voc21", backend=backend, dtype=dtype,
                         class_names=[a[0] for a in vocab])


VOCAB = [["background"], ["dog"], ["cat"], ["bird"], ["car"], ["tree"], ["sky"], ["road"], ["person"], ["chair"]]


def test_expansion_tokens_under_autocast_equal_the_fp32_ones(backend) -> None:
    plain = METHODS.get("activesam")(hypernym_source="table")
    plain.setup(_ctx(backend, VOCAB))
    under = METHODS.get("activesam")(hypernym_source="table")
    with torch.autocast(device_type="cpu", dtype=BF16):  # how the runner calls setup in a bf16 run
        under.setup(_ctx(backend, VOCAB))
    assert plain.expansion_tokens.features.dtype == torch.float32
    torch.testing.assert_close(under.expansion_tokens.features, plain.expansion_tokens.features, rtol=0, atol=0)
    with torch.autocast(device_type="cpu", dtype=BF16):  # what setup would compute without the guard
        emb = backend.text_embeddings_1024(plain.texts)
        xn = emb / emb.norm(dim=-1, keepdim=True)
        assert (xn @ xn.T).dtype == BF16


def test_meta_decoder_mlps_run_outside_autocast(tiny_checkpoint: Path) -> None:
    image = np.full((40, 50, 3), 120, np.uint8)
    dtypes = {}
    for numerics in ("meta", "transformers"):
        b = BACKENDS.get("sam3")(checkpoint=str(tiny_checkpoint), device="cpu", dtype="bf16", numerics=numerics)
        seen: list[torch.dtype] = []
        hooks = [layer.mlp.register_forward_hook(lambda m, i, o: seen.append(o.dtype)) for layer in b.model.detr_decoder.layers]
        b.decode(b.encode_image(image), b.encode_text(["dog", "cat"]), [0, 1], 2)
        for hk in hooks:
            hk.remove()
        dtypes[numerics] = set(seen)
    assert dtypes == {"meta": {torch.float32}, "transformers": {BF16}}


def test_preview_ranks_unclamped_presence_as_the_reference_pruner(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """Presence logits far below -10: Meta's numerics keep their order, and the active set is the top
    by score (12 of 60 prompts pass the 0.8-quantile); clamped, they would all tie at -10."""
    words = ("dog cat bird car tree sky road person chair table sofa bed door window wall floor ceiling lamp book cup "
             "plate apple banana orange pizza cake clock vase laptop keyboard mouse bottle boat bus train truck horse "
             "sheep cow grass water sea river rock sand snow field hill mountain house tower bridge fence bench sign "
             "flower plant leaf box shoe").split()
    vocab = [[w] for w in words]
    ckpt = Path(shutil.copytree(tiny_checkpoint, tmp_path / "ckpt"))
    image = np.random.default_rng(1).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    active = {}
    for numerics in ("meta", "transformers"):
        b = BACKENDS.get("sam3")(checkpoint=str(ckpt), device="cpu", dtype="fp32", numerics=numerics)
        with torch.no_grad():
            b.model.detr_decoder.presence_head.layer3.bias.fill_(-40.0)
        m = METHODS.get("activesam")(hypernym_source="table", canonicalize=False)
        m.setup(MethodContext(vocabulary=vocab, bg_idx=None, prob_thd=0.0, dataset="coco_stuff", backend=b,
                              class_names=words))
        m.predict(image)
        active[numerics] = m.stats()["active"]
        if numerics == "meta":
            calls: list[torch.Tensor] = []
            hook = b.model.detr_decoder.presence_head.register_forward_hook(lambda mod, i, o: calls.append(o.float()))
            b.presence(b.encode_image(image, m.preview_res, presence_only=True), b.encode_text(words), list(range(60)), 60)
            hook.remove()
            raw = calls[-1].reshape(60)  # the last decoder layer's presence logits, unclamped
            assert (raw < -10).all() and raw.unique().numel() == 60
            want = sorted(torch.argsort(raw, descending=True)[:12].tolist())
    assert active["meta"] == want
    assert active["transformers"] == list(range(40))  # every prompt ties at sigmoid(-10): the first 40 by index


@pytest.mark.parametrize("name", ["activesam", "segearth-ov3", "sam3"])
def test_bf16_post_processing_predict_equals_its_dense_oracle(backend, name) -> None:
    """predict (reused buffers, running labels, skip proofs) on bf16 scores = labels of the dense bf16 path."""
    image = np.random.default_rng(3).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    m = METHODS.get(name)(postprocess_dtype="bf16", confidence_threshold=0.05,
                          **({"hypernym_source": "table"} if name == "activesam" else {}))
    m.setup(_ctx(backend, VOCAB))
    assert m.resolved_params()["postprocess_dtype"] == "bf16"
    assert torch.equal(m.predict(image), m.labels(m.class_scores(image)))
