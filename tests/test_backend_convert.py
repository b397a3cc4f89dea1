"""Meta ``sam3.pt`` -> Hugging Face conversion (issue #5, DESIGN §13).

The Meta-format file is produced from an independent table of Meta key names and layouts, written from
the facts of transformers' SAM 3 conversion mapping (``convert_sam3_to_hf.py``) and Meta's modules
(vitdet, necks, text_encoder_ve, decoder, maskformer_segmentation) -- never by running our converter
backwards. Loading it through the converter must reproduce the original model's outputs exactly.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoConfig

from robustbench_ovss.backends.convert import convert_checkpoint
from robustbench_ovss.backends.sam3 import Sam3Backend
from robustbench_ovss.cli import main as cli_main
from robustbench_ovss.errors import CheckpointError

PROMPTS = ["wall", "red car", "sky", "person"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _axial_freqs_cis(head_dim: int, side: int, scale: float, theta: float = 10000.0) -> torch.Tensor:
    """Meta vitdet's 2D axial RoPE table [side*side, head_dim // 2] (complex)."""
    freqs = 1.0 / (theta ** (torch.arange(0, head_dim, 4)[: head_dim // 4].float() / head_dim))
    t = torch.arange(side * side, dtype=torch.float32)
    tx, ty = (t % side) * scale, torch.div(t, side, rounding_mode="floor") * scale
    fx, fy = torch.outer(tx, freqs), torch.outer(ty, freqs)
    return torch.cat([torch.polar(torch.ones_like(fx), fx), torch.polar(torch.ones_like(fy), fy)], dim=-1)


class MetaLayout:
    """Writes HF tensors under Meta's sam3.pt names; records which HF tensors it consumed."""

    def __init__(self, hf: dict[str, torch.Tensor]):
        self.hf, self.used, self.out = hf, set(), {}

    def take(self, hf_key: str) -> torch.Tensor:
        self.used.add(hf_key)
        return self.hf[hf_key]

    def copy(self, meta_prefix: str, hf_prefix: str, params=("weight", "bias")) -> None:
        for p in params:
            self.out[f"detector.{meta_prefix}.{p}"] = self.take(f"{hf_prefix}.{p}").clone()

    def fused(self, meta_key: str, hf_prefix: str, names=("q_proj", "k_proj", "v_proj")) -> None:
        """nn.MultiheadAttention in_proj_* / ViT qkv: q, k, v stacked along dim 0."""
        suffix = "weight" if meta_key.endswith("weight") else "bias"
        self.out[f"detector.{meta_key}"] = torch.cat([self.take(f"{hf_prefix}.{n}.{suffix}") for n in names], 0)

    def mha(self, meta_prefix: str, hf_prefix: str, out_name: str = "o_proj") -> None:
        self.fused(f"{meta_prefix}.in_proj_weight", hf_prefix)
        self.fused(f"{meta_prefix}.in_proj_bias", hf_prefix)
        self.copy(f"{meta_prefix}.out_proj", f"{hf_prefix}.{out_name}")


def write_meta_checkpoint(hf: dict[str, torch.Tensor], config, path: Path) -> Path:
    """A Meta-format sam3.pt holding the tensors of ``hf`` (plus tracker and unused detector keys)."""
    torch.save(meta_state_dict(hf, config), path)
    return path


def meta_state_dict(hf: dict[str, torch.Tensor], config) -> dict[str, torch.Tensor]:
    """The tensors of ``hf`` under Meta's sam3.pt key names and layouts."""
    m = MetaLayout(hf)
    vit = config.vision_config.backbone_config
    V, T, vb = "backbone.vision_backbone", "backbone.language_backbone", "vision_encoder.backbone"
    # ViT trunk: pos_embed keeps a class-token row; fused qkv; precomputed RoPE tables
    pos = m.take(f"{vb}.embeddings.position_embeddings")
    m.out[f"detector.{V}.trunk.pos_embed"] = torch.cat([torch.randn(1, 1, pos.shape[-1], device=pos.device), pos], dim=1)
    m.copy(f"{V}.trunk.patch_embed.proj", f"{vb}.embeddings.patch_embeddings.projection", params=("weight",))
    m.copy(f"{V}.trunk.ln_pre", f"{vb}.layer_norm")
    head_dim = vit.hidden_size // vit.num_attention_heads
    grid = vit.image_size // vit.patch_size
    for i in range(vit.num_hidden_layers):
        b, h = f"{V}.trunk.blocks.{i}", f"{vb}.layers.{i}"
        m.copy(f"{b}.norm1", f"{h}.layer_norm1")
        m.copy(f"{b}.norm2", f"{h}.layer_norm2")
        m.fused(f"{b}.attn.qkv.weight", f"{h}.attention")
        m.fused(f"{b}.attn.qkv.bias", f"{h}.attention")
        m.copy(f"{b}.attn.proj", f"{h}.attention.o_proj")
        m.copy(f"{b}.mlp.fc1", f"{h}.mlp.fc1")
        m.copy(f"{b}.mlp.fc2", f"{h}.mlp.fc2")
        is_global = i in vit.global_attn_indexes
        side = grid if is_global else vit.window_size
        m.out[f"detector.{b}.attn.freqs_cis"] = _axial_freqs_cis(head_dim, side, vit.window_size / side)
    # neck: 4x = deconv, gelu, deconv; 2x = deconv; 1x = -; 0.5x = maxpool (no tensors)
    for i, scale in enumerate(config.vision_config.scale_factors):
        c, h = f"{V}.convs.{i}", f"vision_encoder.neck.fpn_layers.{i}"
        if scale == 4.0:
            m.copy(f"{c}.dconv_2x2_0", f"{h}.scale_layers.0")
            m.copy(f"{c}.dconv_2x2_1", f"{h}.scale_layers.2")
        elif scale == 2.0:
            m.copy(f"{c}.dconv_2x2", f"{h}.scale_layers.0")
        m.copy(f"{c}.conv_1x1", f"{h}.proj1")
        m.copy(f"{c}.conv_3x3", f"{h}.proj2")
    # text encoder (VETextEncoder: encoder.* + resizer)
    tm = "text_encoder.text_model"
    m.copy(f"{T}.encoder.token_embedding", f"{tm}.embeddings.token_embedding", params=("weight",))
    m.out[f"detector.{T}.encoder.positional_embedding"] = m.take(f"{tm}.embeddings.position_embedding.weight").clone()
    m.copy(f"{T}.encoder.ln_final", f"{tm}.final_layer_norm")
    m.out[f"detector.{T}.encoder.text_projection"] = m.take("text_encoder.text_projection.weight").t().clone()
    for i in range(config.text_config.num_hidden_layers):
        r, h = f"{T}.encoder.transformer.resblocks.{i}", f"{tm}.encoder.layers.{i}"
        m.mha(f"{r}.attn", f"{h}.self_attn", out_name="out_proj")
        m.copy(f"{r}.ln_1", f"{h}.layer_norm1")
        m.copy(f"{r}.ln_2", f"{h}.layer_norm2")
        m.copy(f"{r}.mlp.c_fc", f"{h}.mlp.fc1")
        m.copy(f"{r}.mlp.c_proj", f"{h}.mlp.fc2")
    m.copy(f"{T}.resizer", "text_projection")
    # geometry encoder
    g = "geometry_encoder"
    for i in range(config.geometry_encoder_config.num_layers):
        e, h = f"{g}.encode.{i}", f"{g}.layers.{i}"
        m.mha(f"{e}.self_attn", f"{h}.self_attn")
        m.mha(f"{e}.cross_attn_image", f"{h}.cross_attn")
        m.copy(f"{e}.linear1", f"{h}.mlp.fc1")
        m.copy(f"{e}.linear2", f"{h}.mlp.fc2")
        for n in (1, 2, 3):
            m.copy(f"{e}.norm{n}", f"{h}.layer_norm{n}")
    m.copy(f"{g}.img_pre_norm", f"{g}.vision_layer_norm")
    m.copy(f"{g}.norm", f"{g}.prompt_layer_norm")
    m.copy(f"{g}.encode_norm", f"{g}.output_layer_norm")
    for same in ("label_embed", "cls_embed"):
        m.copy(f"{g}.{same}", f"{g}.{same}", params=("weight",))
    for same in ("boxes_direct_project", "boxes_pool_project", "boxes_pos_enc_project", "final_proj"):
        m.copy(f"{g}.{same}", f"{g}.{same}")
    # DETR encoder
    for i in range(config.detr_encoder_config.num_layers):
        e, h = f"transformer.encoder.layers.{i}", f"detr_encoder.layers.{i}"
        m.mha(f"{e}.self_attn", f"{h}.self_attn")
        m.mha(f"{e}.cross_attn_image", f"{h}.cross_attn")
        m.copy(f"{e}.linear1", f"{h}.mlp.fc1")
        m.copy(f"{e}.linear2", f"{h}.mlp.fc2")
        for n in (1, 2, 3):
            m.copy(f"{e}.norm{n}", f"{h}.layer_norm{n}")
    # DETR decoder
    d, hd = "transformer.decoder", "detr_decoder"
    for same in ("query_embed", "reference_points", "presence_token"):
        m.copy(f"{d}.{same}", f"{hd}.{same}", params=("weight",))
    for j in range(3):
        m.copy(f"{d}.presence_token_head.layers.{j}", f"{hd}.presence_head.layer{j + 1}")
        m.copy(f"{d}.bbox_embed.layers.{j}", f"{hd}.box_head.layer{j + 1}")
    for j in range(2):
        m.copy(f"{d}.ref_point_head.layers.{j}", f"{hd}.ref_point_head.layer{j + 1}")
        m.copy(f"{d}.boxRPB_embed_x.layers.{j}", f"{hd}.box_rpb_embed_x.layer{j + 1}")
        m.copy(f"{d}.boxRPB_embed_y.layers.{j}", f"{hd}.box_rpb_embed_y.layer{j + 1}")
    m.copy(f"{d}.presence_token_out_norm", f"{hd}.presence_layer_norm")
    m.copy(f"{d}.norm", f"{hd}.output_layer_norm")
    for i in range(config.detr_decoder_config.num_layers):
        e, h = f"{d}.layers.{i}", f"{hd}.layers.{i}"
        m.mha(f"{e}.self_attn", f"{h}.self_attn")
        m.mha(f"{e}.ca_text", f"{h}.text_cross_attn")
        m.mha(f"{e}.cross_attn", f"{h}.vision_cross_attn")
        m.copy(f"{e}.linear1", f"{h}.mlp.fc1")
        m.copy(f"{e}.linear2", f"{h}.mlp.fc2")
        m.copy(f"{e}.norm1", f"{h}.vision_cross_attn_layer_norm")
        m.copy(f"{e}.catext_norm", f"{h}.text_cross_attn_layer_norm")
        m.copy(f"{e}.norm2", f"{h}.self_attn_layer_norm")
        m.copy(f"{e}.norm3", f"{h}.mlp_layer_norm")
    # dot-product scoring
    s, hs = "dot_prod_scoring", "dot_product_scoring"
    m.copy(f"{s}.prompt_mlp.layers.0", f"{hs}.text_mlp.layer1")
    m.copy(f"{s}.prompt_mlp.layers.1", f"{hs}.text_mlp.layer2")
    m.copy(f"{s}.prompt_mlp.out_norm", f"{hs}.text_mlp_out_norm")
    m.copy(f"{s}.prompt_proj", f"{hs}.text_proj")
    m.copy(f"{s}.hs_proj", f"{hs}.query_proj")
    # segmentation head
    sh, hm = "segmentation_head", "mask_decoder"
    for i in range(config.mask_decoder_config.num_upsampling_stages):
        m.copy(f"{sh}.pixel_decoder.conv_layers.{i}", f"{hm}.pixel_decoder.conv_layers.{i}")
        m.copy(f"{sh}.pixel_decoder.norms.{i}", f"{hm}.pixel_decoder.norms.{i}")
    for j in range(3):
        m.copy(f"{sh}.mask_predictor.mask_embed.layers.{j}", f"{hm}.mask_embedder.layers.{j}")
    m.copy(f"{sh}.instance_seg_head", f"{hm}.instance_projection")
    m.copy(f"{sh}.semantic_seg_head", f"{hm}.semantic_projection")
    m.mha(f"{sh}.cross_attend_prompt", f"{hm}.prompt_cross_attn")
    m.copy(f"{sh}.cross_attn_norm", f"{hm}.prompt_cross_attn_norm")
    assert m.used == set(hf), f"fixture table misses {sorted(set(hf) - m.used)[:5]}"
    # keys of the real file that the HF image model has no use for
    m.out["detector.geometry_encoder.points_direct_project.weight"] = torch.randn(4, 2)
    m.out["detector.transformer.decoder.instance_query_embed.weight"] = torch.randn(2, 4)
    m.out["tracker.maskmem_tpos_enc"] = torch.randn(7, 1, 1, 8)
    return m.out


@pytest.fixture(scope="module")
def meta_pt(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny model in Meta layout, with the tokenizer files next to it (as a user would keep them)."""
    folder = tmp_path_factory.mktemp("meta")
    hf = load_file(str(tiny_checkpoint / "model.safetensors"))
    config = AutoConfig.from_pretrained(str(tiny_checkpoint))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_checkpoint / name, folder / name)
    return write_meta_checkpoint(hf, config, folder / "sam3.pt")


@pytest.fixture(scope="module")
def reference(tiny_checkpoint: Path) -> Sam3Backend:
    return Sam3Backend(str(tiny_checkpoint))


def _outputs(backend: Sam3Backend) -> dict[str, torch.Tensor]:
    image = (np.random.default_rng(3).random((90, 120, 3)) * 255).astype(np.uint8)
    text = backend.encode_text(PROMPTS)
    dec = backend.decode(backend.encode_image(image), text, range(len(PROMPTS)), 4)
    return {"masks": dec.mask_logits, "scores": dec.scores, "semantic": dec.semantic_logits, "presence": dec.presence,
            "text": text.features}


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)


def test_convert_round_trip_gives_identical_outputs(meta_pt: Path, reference: Sam3Backend, tmp_path: Path) -> None:
    out = convert_checkpoint(meta_pt, tmp_path / "hf")
    original = AutoConfig.from_pretrained(str(reference.checkpoint_dir))
    converted = AutoConfig.from_pretrained(str(out))
    vit_a, vit_b = original.vision_config.backbone_config, converted.vision_config.backbone_config
    for attr in ("hidden_size", "num_hidden_layers", "num_attention_heads", "image_size", "window_size",
                 "global_attn_indexes", "pretrain_image_size", "intermediate_size"):
        assert getattr(vit_a, attr) == getattr(vit_b, attr), attr
    assert converted.detr_decoder_config.num_queries == original.detr_decoder_config.num_queries
    assert converted.text_config.eos_token_id == original.text_config.eos_token_id
    _assert_same(_outputs(reference), _outputs(Sam3Backend(str(out))))


def test_meta_file_is_converted_on_load(meta_pt: Path, reference: Sam3Backend, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OVSS_BENCH_CACHE", str(tmp_path / "cache"))
    backend = Sam3Backend(str(meta_pt))
    assert backend.identity.startswith(str(meta_pt.resolve()) + "@")
    _assert_same(_outputs(reference), _outputs(backend))
    again = Sam3Backend(str(meta_pt))  # second load reuses the converted cache
    assert again.identity == backend.identity
    assert len(list((tmp_path / "cache" / "converted").iterdir())) == 1


def test_convert_checkpoint_cli(meta_pt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["convert-checkpoint", str(meta_pt), str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "model.safetensors").is_file() and (tmp_path / "out" / "tokenizer.json").is_file()
    assert "wrote" in capsys.readouterr().out


def test_cli_reports_conversion_errors_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["convert-checkpoint", str(tmp_path / "nope.pt"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "does not exist" in err and len(err.splitlines()) == 1


def _mutated(meta_pt: Path, tmp_path: Path, fn) -> Path:
    state = torch.load(meta_pt, weights_only=True)
    fn(state)
    path = tmp_path / "sam3.pt"
    torch.save(state, path)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(meta_pt.parent / name, tmp_path / name)
    return path


def test_missing_keys_are_one_clear_error(meta_pt: Path, tmp_path: Path) -> None:
    path = _mutated(meta_pt, tmp_path, lambda s: s.pop("detector.transformer.decoder.layers.0.catext_norm.weight"))
    with pytest.raises(CheckpointError, match=r"1 missing \(e\.g\. detr_decoder\.layers\.0\.text_cross_attn_layer_norm\.weight\)"):
        convert_checkpoint(path, tmp_path / "out")


def test_wrong_shapes_are_one_clear_error(meta_pt: Path, tmp_path: Path) -> None:
    key = "detector.segmentation_head.semantic_seg_head.weight"
    path = _mutated(meta_pt, tmp_path, lambda s: s.__setitem__(key, torch.zeros(2, *s[key].shape[1:])))
    with pytest.raises(CheckpointError, match=r"wrong shapes \(e\.g\. mask_decoder\.semantic_projection\.weight"):
        convert_checkpoint(path, tmp_path / "out")


def test_a_foreign_state_dict_is_rejected(tmp_path: Path, tiny_checkpoint: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"encoder.layer.0.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(CheckpointError, match="no SAM 3 detector tensors"):
        convert_checkpoint(path, tmp_path / "out", tokenizer_dir=tiny_checkpoint)


def test_a_file_that_is_not_a_checkpoint_is_rejected(tmp_path: Path, tiny_checkpoint: Path) -> None:
    path = tmp_path / "sam3.pt"
    path.write_bytes(b"this is not a pickle")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        convert_checkpoint(path, tmp_path / "out", tokenizer_dir=tiny_checkpoint)


def test_missing_tokenizer_is_a_clear_error(meta_pt: Path, tmp_path: Path) -> None:
    lonely = tmp_path / "sam3.pt"
    shutil.copy(meta_pt, lonely)
    with pytest.raises(CheckpointError, match="no tokenizer"):
        convert_checkpoint(lonely, tmp_path / "out")


def test_inferred_heads_follow_the_rope_tables(meta_pt: Path) -> None:
    from robustbench_ovss.backends.convert import infer_config, load_meta_state_dict, to_hf_tensors

    state, rope, unmapped = to_hf_tensors(load_meta_state_dict(meta_pt))
    assert "geometry_encoder.points_direct_project.weight" in unmapped
    assert not any(k.startswith("tracker.") for k in unmapped)
    cfg = infer_config(state, rope)
    vit = cfg.vision_config.backbone_config
    assert (vit.num_attention_heads, vit.window_size, vit.global_attn_indexes) == (2, 8, [1])
    assert math.isclose(cfg.vision_config.scale_factors[-1], 0.5)


def test_the_real_architecture_is_inferred_from_shapes() -> None:
    """The published layout (shapes only, meta device) converts back to ``Sam3Config()`` exactly."""
    from transformers import Sam3Config, Sam3Model

    from robustbench_ovss.backends.convert import infer_config, match_state_dict, to_hf_tensors

    real = Sam3Config()
    with torch.device("meta"):
        hf = Sam3Model(real).state_dict()
    meta = {k[len("detector."):]: v for k, v in meta_state_dict(hf, real).items() if k.startswith("detector.")}
    state, rope, unmapped = to_hf_tensors(meta)
    cfg = infer_config(state, rope, special_ids={"pad_token_id": 49407, "bos_token_id": 49406, "eos_token_id": 49407})
    a, b = cfg.vision_config.backbone_config, real.vision_config.backbone_config
    for attr in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "image_size",
                 "patch_size", "window_size", "global_attn_indexes", "pretrain_image_size"):
        assert getattr(a, attr) == getattr(b, attr), attr
    assert cfg.vision_config.scale_factors == real.vision_config.scale_factors
    assert cfg.vision_config.backbone_feature_sizes == real.vision_config.backbone_feature_sizes
    for attr in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                 "max_position_embeddings", "projection_dim"):
        assert getattr(cfg.text_config, attr) == getattr(real.text_config, attr), attr
    for sub in ("detr_encoder_config", "detr_decoder_config", "geometry_encoder_config", "mask_decoder_config"):
        got, want = getattr(cfg, sub).to_dict(), getattr(real, sub).to_dict()
        for key in ("hidden_size", "num_layers", "num_attention_heads", "intermediate_size", "num_queries", "roi_size",
                    "num_upsampling_stages"):
            assert got.get(key) == want.get(key), (sub, key)
    assert len(match_state_dict(cfg, state, unmapped, "real layout")) == len(hf)
