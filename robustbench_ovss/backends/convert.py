"""Convert Meta's ``sam3.pt`` (the reference repos' ``weights/sam3/sam3.pt``) into a Hugging Face directory.

The key correspondence is the one of transformers' SAM 3 conversion script
(``models/sam3/convert_sam3_to_hf.py``, ``ORIGINAL_TO_CONVERTED_KEY_MAPPING``), restated here as rules:

- the published file is a flat state dict whose detector keys start with ``detector.`` (tracker keys,
  ``tracker.``, are not part of the image model and are dropped); ``sam3_model.`` is also accepted;
- fused attention projections are split into q/k/v thirds along dim 0: the ViT's ``attn.qkv`` and every
  ``nn.MultiheadAttention``'s ``in_proj_weight``/``in_proj_bias``;
- the ViT's absolute position embedding carries a class-token row that the HF model does not have
  ([1, 1 + 24*24, 1024] -> [1, 576, 1024]); the CLIP ``text_projection`` is stored transposed;
- the ViT's precomputed RoPE tables ``attn.freqs_cis`` have no HF counterpart (HF recomputes them); their
  shapes reveal the head size, the window size, the global-attention layers and the native resolution.

The architecture is inferred from the tensor shapes (hidden sizes, depths, queries, heads where a
tensor reveals them; the text encoder's heads follow CLIP's 64-wide heads), so tiny test models and the
real 840 M-parameter model convert alike. Keys the HF model lacks (tracker, DAC/o2m heads, point and mask
prompt encoders) are dropped and counted; HF parameters left without a value are an error.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from .numerics import META_LAYER_NORM_EPS, NUMERICS_CONFIG_KEY

log = logging.getLogger(__name__)

# (pattern, replacement) applied in order, each at most once, to a key without its "detector." prefix.
_V = r"^backbone\.vision_backbone\."
_T = r"^backbone\.language_backbone\.encoder\."
_D = r"^transformer\.decoder\."
RENAME_RULES: list[tuple[str, str]] = [
    # vision trunk (ViT)
    (_V + r"trunk\.pos_embed$", "vision_encoder.backbone.embeddings.position_embeddings"),
    (_V + r"trunk\.patch_embed\.proj\.", "vision_encoder.backbone.embeddings.patch_embeddings.projection."),
    (_V + r"trunk\.ln_pre\.", "vision_encoder.backbone.layer_norm."),
    (_V + r"trunk\.blocks\.(\d+)\.norm1\.", r"vision_encoder.backbone.layers.\1.layer_norm1."),
    (_V + r"trunk\.blocks\.(\d+)\.norm2\.", r"vision_encoder.backbone.layers.\1.layer_norm2."),
    (_V + r"trunk\.blocks\.(\d+)\.attn\.qkv\.", r"vision_encoder.backbone.layers.\1.attention.qkv."),
    (_V + r"trunk\.blocks\.(\d+)\.attn\.proj\.", r"vision_encoder.backbone.layers.\1.attention.o_proj."),
    (_V + r"trunk\.blocks\.(\d+)\.attn\.freqs_cis$", r"vision_encoder.backbone.layers.\1.rope.freqs_cis"),
    (_V + r"trunk\.blocks\.(\d+)\.mlp\.", r"vision_encoder.backbone.layers.\1.mlp."),
    # vision neck (simple FPN)
    (_V + r"convs\.(\d+)\.dconv_2x2_0\.", r"vision_encoder.neck.fpn_layers.\1.scale_layers.0."),
    (_V + r"convs\.(\d+)\.dconv_2x2_1\.", r"vision_encoder.neck.fpn_layers.\1.scale_layers.2."),
    (_V + r"convs\.(\d+)\.dconv_2x2\.", r"vision_encoder.neck.fpn_layers.\1.scale_layers.0."),
    (_V + r"convs\.(\d+)\.conv_1x1\.", r"vision_encoder.neck.fpn_layers.\1.proj1."),
    (_V + r"convs\.(\d+)\.conv_3x3\.", r"vision_encoder.neck.fpn_layers.\1.proj2."),
    # text encoder (CLIP-style) and its 1024 -> 256 resizer
    (_T + r"token_embedding\.", "text_encoder.text_model.embeddings.token_embedding."),
    (_T + r"positional_embedding$", "text_encoder.text_model.embeddings.position_embedding.weight"),
    (_T + r"ln_final\.", "text_encoder.text_model.final_layer_norm."),
    (_T + r"text_projection$", "text_encoder.text_projection.weight"),
    (_T + r"transformer\.resblocks\.(\d+)\.attn\.", r"text_encoder.text_model.encoder.layers.\1.self_attn."),
    (_T + r"transformer\.resblocks\.(\d+)\.ln_1\.", r"text_encoder.text_model.encoder.layers.\1.layer_norm1."),
    (_T + r"transformer\.resblocks\.(\d+)\.ln_2\.", r"text_encoder.text_model.encoder.layers.\1.layer_norm2."),
    (_T + r"transformer\.resblocks\.(\d+)\.mlp\.c_fc\.", r"text_encoder.text_model.encoder.layers.\1.mlp.fc1."),
    (_T + r"transformer\.resblocks\.(\d+)\.mlp\.c_proj\.", r"text_encoder.text_model.encoder.layers.\1.mlp.fc2."),
    (r"^backbone\.language_backbone\.resizer\.", "text_projection."),
    # geometry (box prompt) encoder
    (r"^geometry_encoder\.encode\.(\d+)\.cross_attn_image\.", r"geometry_encoder.layers.\1.cross_attn."),
    (r"^geometry_encoder\.encode\.(\d+)\.self_attn\.", r"geometry_encoder.layers.\1.self_attn."),
    (r"^geometry_encoder\.encode\.(\d+)\.linear([12])\.", r"geometry_encoder.layers.\1.mlp.fc\2."),
    (r"^geometry_encoder\.encode\.(\d+)\.norm([123])\.", r"geometry_encoder.layers.\1.layer_norm\2."),
    (r"^geometry_encoder\.img_pre_norm\.", "geometry_encoder.vision_layer_norm."),
    (r"^geometry_encoder\.norm\.", "geometry_encoder.prompt_layer_norm."),
    (r"^geometry_encoder\.encode_norm\.", "geometry_encoder.output_layer_norm."),
    (r"^geometry_encoder\.(label_embed|cls_embed|boxes_direct_project|boxes_pool_project|boxes_pos_enc_project|final_proj)\.",
     r"geometry_encoder.\1."),
    # DETR encoder
    (r"^transformer\.encoder\.layers\.(\d+)\.self_attn\.", r"detr_encoder.layers.\1.self_attn."),
    (r"^transformer\.encoder\.layers\.(\d+)\.cross_attn(?:_image)?\.", r"detr_encoder.layers.\1.cross_attn."),
    (r"^transformer\.encoder\.layers\.(\d+)\.linear([12])\.", r"detr_encoder.layers.\1.mlp.fc\2."),
    (r"^transformer\.encoder\.layers\.(\d+)\.norm([123])\.", r"detr_encoder.layers.\1.layer_norm\2."),
    # DETR decoder
    (_D + r"(query_embed|reference_points|presence_token)\.", r"detr_decoder.\1."),
    (_D + r"presence_token_head\.layers\.(\d)\.", "detr_decoder.presence_head.layer{+1}."),
    (_D + r"presence_token_out_norm\.", "detr_decoder.presence_layer_norm."),
    (_D + r"norm\.", "detr_decoder.output_layer_norm."),
    (_D + r"bbox_embed\.layers\.(\d)\.", "detr_decoder.box_head.layer{+1}."),
    (_D + r"ref_point_head\.layers\.(\d)\.", "detr_decoder.ref_point_head.layer{+1}."),
    (_D + r"boxRPB_embed_x\.layers\.(\d)\.", "detr_decoder.box_rpb_embed_x.layer{+1}."),
    (_D + r"boxRPB_embed_y\.layers\.(\d)\.", "detr_decoder.box_rpb_embed_y.layer{+1}."),
    (_D + r"layers\.(\d+)\.self_attn\.", r"detr_decoder.layers.\1.self_attn."),
    (_D + r"layers\.(\d+)\.ca_text\.", r"detr_decoder.layers.\1.text_cross_attn."),
    (_D + r"layers\.(\d+)\.cross_attn\.", r"detr_decoder.layers.\1.vision_cross_attn."),
    (_D + r"layers\.(\d+)\.linear([12])\.", r"detr_decoder.layers.\1.mlp.fc\2."),
    (_D + r"layers\.(\d+)\.norm1\.", r"detr_decoder.layers.\1.vision_cross_attn_layer_norm."),
    (_D + r"layers\.(\d+)\.catext_norm\.", r"detr_decoder.layers.\1.text_cross_attn_layer_norm."),
    (_D + r"layers\.(\d+)\.norm2\.", r"detr_decoder.layers.\1.self_attn_layer_norm."),
    (_D + r"layers\.(\d+)\.norm3\.", r"detr_decoder.layers.\1.mlp_layer_norm."),
    # dot-product scoring
    (r"^dot_prod_scoring\.prompt_mlp\.layers\.(\d)\.", "dot_product_scoring.text_mlp.layer{+1}."),
    (r"^dot_prod_scoring\.prompt_mlp\.out_norm\.", "dot_product_scoring.text_mlp_out_norm."),
    (r"^dot_prod_scoring\.prompt_proj\.", "dot_product_scoring.text_proj."),
    (r"^dot_prod_scoring\.hs_proj\.", "dot_product_scoring.query_proj."),
    # mask decoder (segmentation head)
    (r"^segmentation_head\.pixel_decoder\.", "mask_decoder.pixel_decoder."),
    (r"^segmentation_head\.(?:mask_predictor\.)?mask_embed\.layers\.", "mask_decoder.mask_embedder.layers."),
    (r"^segmentation_head\.instance_seg_head\.", "mask_decoder.instance_projection."),
    (r"^segmentation_head\.semantic_seg_head\.", "mask_decoder.semantic_projection."),
    (r"^segmentation_head\.cross_attend_prompt\.", "mask_decoder.prompt_cross_attn."),
    (r"^segmentation_head\.cross_attn_norm\.", "mask_decoder.prompt_cross_attn_norm."),
]
_COMPILED = [(re.compile(p), r) for p, r in RENAME_RULES]
_PLUS_ONE = re.compile(r"\{\+1\}")


def rename_key(meta_key: str) -> str | None:
    """HF name of a Meta key (without ``detector.``), or None when no rule applies."""
    for pattern, repl in _COMPILED:
        m = pattern.search(meta_key)
        if m is None:
            continue
        if "{+1}" in repl:  # Meta's MLP layers.0/1/2 are HF's layer1/2/3
            new = _PLUS_ONE.sub(str(int(m.group(1)) + 1), repl)
        else:
            new = m.expand(repl)
        key = new + meta_key[m.end():]
        # nn.MultiheadAttention's output projection is "out_proj"; SAM 3's HF attention calls it o_proj
        # (the CLIP text encoder keeps out_proj)
        if not key.startswith("text_encoder.") and ".out_proj." in key:
            key = key.replace(".out_proj.", ".o_proj.")
        return key
    return None


def load_meta_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The detector tensors of a Meta checkpoint, ``detector.``/``sam3_model.`` prefix removed.

    Raises CheckpointError for an unreadable file or one that holds no SAM 3 detector tensors.
    """
    path = Path(path)
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # legacy (non-zip) serialisation cannot be memory-mapped
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"{str(path)!r} is not a readable PyTorch checkpoint ({type(exc).__name__}): expected Meta's sam3.pt"
        ) from None
    if isinstance(obj, Mapping):
        for wrapper in ("model", "state_dict"):
            if isinstance(obj.get(wrapper), Mapping):
                obj = obj[wrapper]
                break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{str(path)!r} does not hold a state dict of tensors: expected Meta's sam3.pt")
    keys = list(obj)
    for prefix in ("detector.", "sam3_model."):
        if any(k.startswith(prefix) for k in keys):
            return {k[len(prefix):]: v for k, v in obj.items() if k.startswith(prefix)}
    return {k: v for k, v in obj.items() if not k.startswith("tracker.")}


def _split_thirds(out: dict[str, torch.Tensor], base: str, suffix: str, t: torch.Tensor) -> None:
    q, k, v = torch.chunk(t, 3, dim=0)
    for name, part in zip(("q_proj", "k_proj", "v_proj"), (q, k, v)):
        out[f"{base}{name}.{suffix}"] = part.contiguous()


def to_hf_tensors(meta: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[int, tuple[int, ...]], list[str]]:
    """Rename and reshape Meta tensors to HF names.

    Returns:
        (HF state dict, RoPE table shapes per ViT layer index, Meta keys that no rule maps).
    """
    out: dict[str, torch.Tensor] = {}
    rope: dict[int, tuple[int, ...]] = {}
    unmapped: list[str] = []
    for meta_key, tensor in meta.items():
        key = rename_key(meta_key)
        if key is None:
            unmapped.append(meta_key)
            continue
        if key.endswith(".rope.freqs_cis"):
            rope[int(key.split(".")[3])] = tuple(tensor.shape)
            continue
        if ".attention.qkv." in key:
            base, suffix = key.rsplit("qkv.", 1)
            _split_thirds(out, base, suffix, tensor)
        elif key.endswith((".in_proj_weight", ".in_proj_bias")):
            base, suffix = key.rsplit("in_proj_", 1)
            _split_thirds(out, base, suffix, tensor)
        elif key == "vision_encoder.backbone.embeddings.position_embeddings":
            n = tensor.shape[1]
            has_cls = math.isqrt(n) ** 2 != n and math.isqrt(n - 1) ** 2 == n - 1
            out[key] = tensor[:, 1:].contiguous() if has_cls else tensor
        elif key == "text_encoder.text_projection.weight":
            out[key] = tensor.t().contiguous()
        else:
            out[key] = tensor
    return out, rope, unmapped


def _count(state: Mapping[str, torch.Tensor], prefix: str) -> int:
    pat = re.compile(re.escape(prefix) + r"(\d+)\.")
    idx = {int(m.group(1)) for k in state if (m := pat.match(k))}
    return max(idx) + 1 if idx else 0


def _shape(state: Mapping[str, torch.Tensor], key: str, where: str) -> tuple[int, ...]:
    if key not in state:
        raise CheckpointError(f"{where}: tensor {key!r} is missing, so the architecture cannot be inferred; not a SAM 3 checkpoint?")
    return tuple(state[key].shape)


def infer_config(state: Mapping[str, torch.Tensor], rope: Mapping[int, tuple[int, ...]], where: str = "checkpoint",
                 special_ids: Mapping[str, int | None] | None = None) -> Any:
    """A ``Sam3Config`` matching the HF-named tensors ``state`` (see the module docstring).

    ``special_ids`` (pad_token_id, bos_token_id, eos_token_id) come from the tokenizer; default CLIP's.
    """
    from transformers import CLIPTextConfig, Sam3Config
    from transformers.models.sam3.configuration_sam3 import Sam3VisionConfig, Sam3ViTConfig

    vb = "vision_encoder.backbone."
    hidden, _, patch, _ = _shape(state, vb + "embeddings.patch_embeddings.projection.weight", where)
    n_pos = _shape(state, vb + "embeddings.position_embeddings", where)[1]
    pretrain = math.isqrt(n_pos) * patch
    layers = _count(state, vb + "layers.")
    inter = _shape(state, vb + "layers.0.mlp.fc1.weight", where)[0]
    if rope and len(rope) == layers:
        tokens = {i: shp[0] for i, shp in rope.items()}
        head_dim = 2 * next(iter(rope.values()))[1]
        t_min, t_max = min(tokens.values()), max(tokens.values())
        image_size = math.isqrt(t_max) * patch
        if t_min == t_max:  # every layer attends globally
            global_idx, window = list(range(layers)), 0
        else:
            global_idx, window = sorted(i for i, t in tokens.items() if t > t_min), math.isqrt(t_min)
    else:  # no RoPE tables: SAM 3's published layout
        head_dim, image_size, window = 64, 1008, 24
        global_idx = sorted({(k + 1) * layers // 4 - 1 for k in range(4)}) if layers >= 4 else [layers - 1]
    vit = Sam3ViTConfig(
        hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // head_dim), image_size=image_size, patch_size=patch,
        window_size=window or 24, global_attn_indexes=global_idx, pretrain_image_size=pretrain,
        layer_norm_eps=META_LAYER_NORM_EPS,  # Meta's ViT: partial(nn.LayerNorm, eps=1e-5); transformers' default 1e-6
    )
    neck = "vision_encoder.neck.fpn_layers."
    scales = []
    for i in range(_count(state, neck)):
        in_ch = _shape(state, f"{neck}{i}.proj1.weight", where)[1]
        if f"{neck}{i}.scale_layers.2.weight" in state:
            scales.append(4.0)
        elif f"{neck}{i}.scale_layers.0.weight" in state:
            scales.append(2.0)
        else:
            scales.append(1.0 if 1.0 not in scales else 0.5)
        if in_ch not in (hidden, hidden // 2, hidden // 4):
            raise CheckpointError(f"{where}: FPN level {i} takes {in_ch} channels, expected a fraction of the ViT's {hidden}")
    fpn = _shape(state, f"{neck}0.proj1.weight", where)[0]
    grid = image_size // patch
    vision = Sam3VisionConfig(
        backbone_config=vit, fpn_hidden_size=fpn, scale_factors=scales,
        backbone_feature_sizes=[[int(grid * s)] * 2 for s in scales if s >= 1.0],
        layer_norm_eps=META_LAYER_NORM_EPS,
    )
    tm = "text_encoder.text_model."
    vocab, t_hidden = _shape(state, tm + "embeddings.token_embedding.weight", where)
    text = CLIPTextConfig(
        vocab_size=vocab, hidden_size=t_hidden,
        intermediate_size=_shape(state, tm + "encoder.layers.0.mlp.fc1.weight", where)[0],
        projection_dim=_shape(state, "text_encoder.text_projection.weight", where)[0],
        num_hidden_layers=_count(state, tm + "encoder.layers."), num_attention_heads=max(1, t_hidden // 64),
        max_position_embeddings=_shape(state, tm + "embeddings.position_embedding.weight", where)[0], hidden_act="gelu",
        layer_norm_eps=META_LAYER_NORM_EPS,
        **{k: v for k, v in (special_ids or {}).items() if v is not None},
    )
    d = _shape(state, "text_projection.weight", where)[0]
    heads = _shape(state, "detr_decoder.box_rpb_embed_x.layer2.weight", where)[0]
    # every sub-config says Meta's eps (transformers builds those LayerNorms with 1e-5 whatever it reads)
    common = dict(hidden_size=d, num_attention_heads=heads, layer_norm_eps=META_LAYER_NORM_EPS)
    return Sam3Config(
        vision_config=vision,
        text_config=text,
        geometry_encoder_config=dict(
            num_layers=_count(state, "geometry_encoder.layers."),
            intermediate_size=_shape(state, "geometry_encoder.layers.0.mlp.fc1.weight", where)[0],
            roi_size=_shape(state, "geometry_encoder.boxes_pool_project.weight", where)[-1], **common,
        ),
        detr_encoder_config=dict(
            num_layers=_count(state, "detr_encoder.layers."),
            intermediate_size=_shape(state, "detr_encoder.layers.0.mlp.fc1.weight", where)[0], **common,
        ),
        detr_decoder_config=dict(
            num_layers=_count(state, "detr_decoder.layers."),
            num_queries=_shape(state, "detr_decoder.query_embed.weight", where)[0],
            intermediate_size=_shape(state, "detr_decoder.layers.0.mlp.fc1.weight", where)[0], **common,
        ),
        mask_decoder_config=dict(num_upsampling_stages=_count(state, "mask_decoder.pixel_decoder.conv_layers."), **common),
    )


def match_state_dict(config: Any, state: dict[str, torch.Tensor], unmapped: list[str], where: str) -> dict[str, torch.Tensor]:
    """Keep the tensors the HF ``Sam3Model(config)`` expects; CheckpointError on missing or mis-shaped ones."""
    from transformers import Sam3Model

    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in Sam3Model(config).state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected)) + sorted(unmapped)
    wrong = sorted(k for k in set(expected) & set(state) if tuple(state[k].shape) != expected[k])
    if missing or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} with wrong shapes (e.g. {k} {tuple(state[k].shape)} vs {expected[k]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        raise CheckpointError(f"{where} does not match the SAM 3 architecture: {'; '.join(parts)}")
    if unexpected:
        log.info("%s: dropped %d tensors the HF image model does not use (e.g. %s)", where, len(unexpected), ", ".join(unexpected[:3]))
    return {k: state[k].contiguous() for k in expected}


def find_tokenizer(sam3_pt: Path, tokenizer_dir: str | Path | None = None) -> Any:
    """The tokenizer to ship with a converted checkpoint.

    Looks, in order, at ``tokenizer_dir``; HF tokenizer files or Meta's BPE file next to ``sam3_pt``; the
    BPE file of an installed Meta ``sam3`` package; a cached ``facebook/sam3`` snapshot (never downloads).
    """
    from transformers import AutoTokenizer

    from .clip_bpe import BPE_FILENAME, clip_tokenizer_from_bpe

    def from_dir(d: Path) -> Any | None:
        try:
            if (d / "tokenizer.json").is_file() or (d / "tokenizer_config.json").is_file() or (d / "vocab.json").is_file():
                return AutoTokenizer.from_pretrained(str(d), local_files_only=True)
            if (d / BPE_FILENAME).is_file():
                return clip_tokenizer_from_bpe(d / BPE_FILENAME)
        except Exception as exc:
            raise CheckpointError(f"tokenizer files in {str(d)!r} could not be read ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
        return None

    if tokenizer_dir is not None:
        d = Path(tokenizer_dir)
        tok = from_dir(d) if d.is_dir() else (clip_tokenizer_from_bpe(d) if d.name == BPE_FILENAME else None)
        if tok is None:
            raise CheckpointError(f"--tokenizer {str(d)!r}: expected a directory with tokenizer.json (or vocab.json + merges.txt) or {BPE_FILENAME}")
        return tok
    for d in (sam3_pt.parent, sam3_pt.parent / "tokenizer"):
        if d.is_dir() and (tok := from_dir(d)) is not None:
            return tok
    import importlib.util

    spec = importlib.util.find_spec("sam3")
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            bpe = Path(loc) / "assets" / BPE_FILENAME
            if bpe.is_file():
                return clip_tokenizer_from_bpe(bpe)
    try:
        from huggingface_hub import snapshot_download

        snap = Path(snapshot_download("facebook/sam3", local_files_only=True, allow_patterns=["*token*", "vocab.json", "merges.txt"]))
        if (tok := from_dir(snap)) is not None:
            return tok
    except Exception:
        pass
    raise CheckpointError(
        f"no tokenizer for {str(sam3_pt)!r}: put facebook/sam3's tokenizer files (or Meta's {BPE_FILENAME}) next to it, "
        f"or pass --tokenizer DIR"
    )


def convert_checkpoint(sam3_pt: str | Path, out_dir: str | Path, tokenizer_dir: str | Path | None = None,
                       config: Any = None) -> Path:
    """Convert a Meta ``sam3.pt`` into an HF directory (config.json, model.safetensors, tokenizer).

    Args:
        sam3_pt: the Meta checkpoint file.
        out_dir: output directory (created; files of the same names are overwritten).
        tokenizer_dir: where to take the tokenizer from (default: searched, see :func:`find_tokenizer`).
        config: a ``Sam3Config`` (or dict / config.json path) to use instead of inferring one from shapes.
    Returns:
        ``out_dir`` as a Path.
    """
    from safetensors.torch import save_file
    from transformers import Sam3Config

    src = Path(sam3_pt)
    where = f"Meta checkpoint {str(src)!r}"
    if not src.is_file():
        raise CheckpointError(f"{where} does not exist: expected the path of Meta's sam3.pt")
    meta = load_meta_state_dict(src)
    state, rope, unmapped = to_hf_tensors(meta)
    if not state:
        raise CheckpointError(f"{where} holds no SAM 3 detector tensors (e.g. {', '.join(sorted(meta)[:3])})")
    tokenizer = find_tokenizer(src, tokenizer_dir)
    special = {a: getattr(tokenizer, a, None) for a in ("pad_token_id", "bos_token_id", "eos_token_id")}
    if config is None:
        cfg = infer_config(state, rope, where, special)
    elif isinstance(config, (str, Path)):
        cfg = Sam3Config.from_json_file(str(config))
    elif isinstance(config, dict):
        cfg = Sam3Config(**config)
    else:
        cfg = config
    vocab = len(tokenizer)
    if vocab > cfg.text_config.vocab_size:
        raise CheckpointError(f"{where}: the tokenizer has {vocab} tokens but the text encoder only {cfg.text_config.vocab_size}")
    for attr, value in special.items():
        if value is not None:
            setattr(cfg.text_config, attr, int(value))
    tensors = match_state_dict(cfg, state, unmapped, where)
    out = Path(out_dir)
    tmp = out.with_name(f"{out.name}.partial-{os.getpid()}")  # concurrent converters never share it
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    cfg.architectures = ["Sam3Model"]
    setattr(cfg, NUMERICS_CONFIG_KEY, "meta")  # the weights are Meta's: run them with Meta's numerics
    cfg.save_pretrained(tmp)
    save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    tokenizer.save_pretrained(tmp)
    (tmp / "ovss_bench_conversion.json").write_text(json.dumps(
        {"source": str(src.resolve()), "tensors": len(tensors), "dropped": len(set(state) - set(tensors)) + len(unmapped)},
        indent=1) + "\n")
    out.mkdir(parents=True, exist_ok=True)
    for item in tmp.iterdir():
        item.replace(out / item.name)
    tmp.rmdir()
    return out


def cli_convert(args: Any) -> int:
    """``ovss-bench convert-checkpoint SAM3_PT OUT_DIR [--tokenizer DIR]``."""
    out = convert_checkpoint(args.src, args.out_dir, tokenizer_dir=getattr(args, "tokenizer", None))
    cfg = json.loads((out / "config.json").read_text())
    vit = cfg["vision_config"]["backbone_config"]
    size = sum(p.stat().st_size for p in out.iterdir()) / 1e6
    print(f"wrote {out} ({size:.1f} MB): ViT {vit['num_hidden_layers']} x {vit['hidden_size']} at {vit['image_size']} px, "
          f"{cfg['detr_decoder_config']['num_queries']} queries; use it as backend.checkpoint")
    return 0
