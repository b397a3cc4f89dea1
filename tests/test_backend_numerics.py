"""Meta's SAM 3 numerics in the backend (issue #13): LayerNorm eps, unclamped presence, declared numerics.

Independent references: a ``Sam3Model`` that transformers itself builds with eps 1e-5 in the ViT's
config (same weights), and the presence head's raw output caught by a forward hook.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from robustbench_ovss.backends.numerics import checkpoint_numerics
from robustbench_ovss.backends.sam3 import Sam3Backend
from robustbench_ovss.errors import ConfigError
from robustbench_ovss.registry import BACKENDS

pytestmark = pytest.mark.usefixtures("one_torch_thread")
PROMPTS = ["wall", "sky", "tree", "road", "person", "car"]


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(3)
    img = (rng.random((90, 120, 3)) * 255).astype(np.uint8)
    img[20:70, 30:90] = (30, 160, 40)
    return img


def _backend(path: Path, numerics: str = "auto") -> Sam3Backend:
    return BACKENDS.get("sam3")(checkpoint=str(path), device="cpu", dtype="fp32", numerics=numerics)


def _layer_norms(module: torch.nn.Module) -> dict[str, float]:
    return {n: m.eps for n, m in module.named_modules() if isinstance(m, torch.nn.LayerNorm)}


def test_meta_numerics_set_every_layer_norm_to_meta_eps(tiny_checkpoint: Path) -> None:
    cfg = json.loads((tiny_checkpoint / "config.json").read_text())
    assert cfg["vision_config"]["backbone_config"]["layer_norm_eps"] == 1e-6  # transformers' default is written
    meta = _backend(tiny_checkpoint)  # no ovss_numerics key: a hub-like checkpoint -> Meta's numerics
    assert meta.numerics == "meta"
    eps = _layer_norms(meta.model)
    vit = [n for n in eps if n.startswith("vision_encoder.backbone.")]
    assert len(vit) == 2 * 2 + 1  # two ViT layers x (layer_norm1, layer_norm2) + the pre-norm
    assert set(eps.values()) == {1e-5}
    stock = _backend(tiny_checkpoint, "transformers")
    assert {n for n, e in _layer_norms(stock.model).items() if e != 1e-5} == set(vit)


def test_meta_vit_equals_a_model_built_with_eps_1e5_in_the_backbone_config(tiny_checkpoint: Path, image: np.ndarray) -> None:
    """Setting only vision_config.layer_norm_eps would not reach the ViT; the backbone config does."""
    from transformers import AutoTokenizer, Sam3Config, Sam3Model

    cfg = Sam3Config.from_pretrained(str(tiny_checkpoint))
    cfg.vision_config.layer_norm_eps = 1e-5
    only_vision = Sam3Model(cfg)
    assert {m.eps for n, m in only_vision.named_modules() if n.startswith("vision_encoder.backbone.")
            and isinstance(m, torch.nn.LayerNorm)} == {1e-6}  # the trap the issue names
    cfg.vision_config.backbone_config.layer_norm_eps = 1e-5
    ref = Sam3Model.from_pretrained(str(tiny_checkpoint), config=cfg, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(str(tiny_checkpoint))
    reference = Sam3Backend.from_model(ref, tok, numerics="transformers")
    meta, stock = _backend(tiny_checkpoint, "meta"), _backend(tiny_checkpoint, "transformers")
    want = reference.encode_image(image).payload.fpn[0]
    torch.testing.assert_close(meta.encode_image(image).payload.fpn[0], want, rtol=0, atol=0)
    assert not torch.equal(stock.encode_image(image).payload.fpn[0], want)


def _push_presence(backend: Sam3Backend, bias: float) -> None:
    with torch.no_grad():
        backend.model.detr_decoder.presence_head.layer3.bias.fill_(bias)


def _raw_presence_logits(backend: Sam3Backend, feats, text, n: int) -> torch.Tensor:
    """The presence head's last-layer output for one bucket of ``n`` prompts, as the head computed it."""
    calls: list[torch.Tensor] = []
    hook = backend.model.detr_decoder.presence_head.register_forward_hook(lambda m, i, o: calls.append(o.detach().float()))
    try:
        backend.presence(feats, text, list(range(n)), n)
    finally:
        hook.remove()
    return calls[-1].reshape(n)


@pytest.fixture
def private_checkpoint(tiny_checkpoint: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_checkpoint, tmp_path / "ckpt"))


@pytest.mark.parametrize("bias", [-40.0, 25.0])
def test_presence_logits_past_10_come_out_unclamped_under_meta_numerics(private_checkpoint: Path, image: np.ndarray, bias: float) -> None:
    meta, stock = _backend(private_checkpoint, "meta"), _backend(private_checkpoint, "transformers")
    for b in (meta, stock):
        _push_presence(b, bias)
    n = len(PROMPTS)
    feats, text = meta.encode_image(image), meta.encode_text(PROMPTS)
    raw = _raw_presence_logits(meta, feats, text, n)
    assert (raw.abs() > 10).all()
    want = torch.sigmoid(raw)
    torch.testing.assert_close(meta.presence(feats, text, list(range(n)), 4), want, rtol=1e-6, atol=0)
    torch.testing.assert_close(meta.decode(feats, text, list(range(n)), 4).presence, want, rtol=1e-6, atol=0)
    clamped = torch.sigmoid(torch.full((n,), math.copysign(10.0, bias)))
    sfeats, stext = stock.encode_image(image), stock.encode_text(PROMPTS)
    torch.testing.assert_close(stock.presence(sfeats, stext, list(range(n)), 4), clamped, rtol=1e-6, atol=0)
    torch.testing.assert_close(stock.decode(sfeats, stext, list(range(n)), 4).presence, clamped, rtol=1e-6, atol=0)


def test_builtin_checkpoints_declare_transformers_numerics_and_keep_them() -> None:
    for name in ("builtin:demo", "builtin:tiny-random"):
        b = BACKENDS.get("sam3")(checkpoint=name, device="cpu", dtype="fp32")
        assert b.numerics == "transformers" and checkpoint_numerics(b.model.config) == "transformers"
        assert b.model.detr_decoder.clamp_presence_logit_max_val == 10.0
        assert 1e-6 in set(_layer_norms(b.model.vision_encoder).values())
        assert "#numerics" not in b.identity
    forced = BACKENDS.get("sam3")(checkpoint="builtin:tiny-random", device="cpu", dtype="fp32", numerics="meta")
    assert forced.identity.endswith("#numerics=meta")  # other outputs, so other unit keys
    assert forced.numerics_report.to_dict()["presence_clamp"] is None


def test_numerics_values_are_checked(tiny_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="numerics"):
        _backend(tiny_checkpoint, "fast")
    bad = Path(shutil.copytree(tiny_checkpoint, tmp_path / "bad"))
    cfg = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**cfg, "ovss_numerics": "cuda"}))
    with pytest.raises(ConfigError, match="ovss_numerics"):
        _backend(bad)
