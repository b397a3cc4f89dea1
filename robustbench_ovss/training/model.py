"""The demo model: its ``Sam3Config`` and a training forward pass.

The architecture, tokenizer and pre-processing are the backend's (:func:`..backends.tiny.tiny_config`,
:func:`..backends.tiny.build_tokenizer`, :mod:`..backends.preprocess`); training imports them so that
it cannot drift from inference. What is the demo's own is the choice of settings (see
docs/demo-model.md), passed to ``tiny_config`` by :func:`demo_config`:

- native input ``image_size`` (168 shipped, 12x12 patches of 14; the synthetic scenes are 256 px),
  the presence preview at 2/3 of it (112);
- every ViT layer uses (grid/3)-patch windows (4x4 at 168) and none is global, so no position buffer
  depends on the input size: the same weights run at the native size and at the preview with no
  recomputation, and both grids split into windows without padding;
- three FPN levels (2x, 1x, 0.5x) instead of four: the model drops the last level, so the mask
  decoder works at 2x the patch grid (24x24 masks at 168) and the DETR encoder at 1x. This quarters
  the per-prompt cost of the pixel decoder, which dominates a tiny model's decode;
- 4 heads everywhere, MLPs 4x wide, one mask upsampling stage, CLIP's quick_gelu in the text encoder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..backends.numerics import NUMERICS_CONFIG_KEY
from ..backends.sam3 import GEOMETRY_CLS_CONFIG_KEY
from ..backends.tiny import tiny_config

PATCH = 14
# How the demo model computes, recorded in its config (hence config.json) for the sam3 backend to read:
# - trained through Sam3Model.forward with text only, i.e. without the image-conditioned geometry CLS
#   token that Meta's model (and, by default, the backend) appends to every prompt;
# - trained with transformers' numerics (ViT LayerNorm eps from the config, presence clamped to +-10),
#   which the backend then keeps (robustbench_ovss.backends.numerics).
TRAINED_WITH = {GEOMETRY_CLS_CONFIG_KEY: False, NUMERICS_CONFIG_KEY: "transformers"}


def demo_config(
    tokenizer: Any,
    image_size: int = 252,
    vit_hidden: int = 96,
    vit_layers: int = 4,
    hidden: int = 64,
    text_hidden: int = 64,
    text_layers: int = 2,
    detr_layers: int = 2,
    num_queries: int = 20,
    initializer_range: float = 0.06,
) -> Any:
    """The demo model's ``Sam3Config`` for ``tokenizer``'s vocabulary and special-token ids, with
    :data:`TRAINED_WITH` set.

    ``image_size`` is the native input side in pixels (a multiple of 14); the widths and depths are
    the script's ``--vit-hidden``, ``--hidden``, ... (1.38 M parameters as shipped: 168, 64, 64).
    """
    grid = image_size // PATCH
    config = tiny_config(
        vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, image_size=image_size, patch_size=PATCH,
        pretrain_image_size=image_size, vit_hidden_size=vit_hidden, vit_layers=vit_layers,
        window_size=max(1, grid // 3), global_attn_indexes=(), hidden_size=hidden,
        fpn_scale_factors=(2.0, 1.0, 0.5),
        # what the shipped config.json records (Sam3Model does not read it)
        backbone_feature_sizes=[[grid * 2] * 2, [grid] * 2, [grid // 2] * 2],
        text_hidden_size=text_hidden, text_layers=text_layers, text_heads=4, text_hidden_act="quick_gelu",
        num_heads=4, mlp_ratio=4, detr_encoder_layers=detr_layers, detr_decoder_layers=detr_layers,
        num_queries=num_queries, mask_upsampling_stages=1, initializer_range=initializer_range,
    )
    for key, value in TRAINED_WITH.items():
        setattr(config, key, value)
    return config


def build_model(config, seed: int = 0):
    from transformers import Sam3Model

    torch.manual_seed(seed)
    model = Sam3Model(config)
    model.train()
    return model


class PresenceHook:
    """Captures every DETR-decoder layer's presence logits (the model returns only the last)."""

    def __init__(self, model):
        self.value: torch.Tensor | None = None
        self.handle = model.detr_decoder.register_forward_hook(self._hook)

    def _hook(self, module, args, output):
        self.value = output.presence_logits  # [layers, N, 1]

    def remove(self):
        self.handle.remove()


def forward_prompts(
    model,
    pixel_values: torch.Tensor,
    text_features: torch.Tensor,
    text_mask: torch.Tensor,
    image_index: torch.Tensor,
):
    """One ``Sam3Model`` call for N (image, prompt) pairs, the image encoded once per image.

    ``pixel_values`` [B, 3, S, S]; ``text_features`` [N, L, D] projected per-token features;
    ``text_mask`` bool [N, L]; ``image_index`` long [N] (which image each prompt looks at).
    Vision features are expanded along the prompt dimension (index_select), as the backend does.
    """
    from transformers.modeling_outputs import BaseModelOutputWithPooling
    from transformers.models.sam3.modeling_sam3 import Sam3VisionEncoderOutput

    vis = model.get_vision_features(pixel_values=pixel_values)
    ve = Sam3VisionEncoderOutput(
        last_hidden_state=None,
        fpn_hidden_states=tuple(f.index_select(0, image_index) for f in vis.fpn_hidden_states),
        fpn_position_encoding=tuple(p.index_select(0, image_index) for p in vis.fpn_position_encoding),
    )
    return model(
        vision_embeds=ve,
        text_embeds=BaseModelOutputWithPooling(pooler_output=text_features),
        attention_mask=text_mask,
    )


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def save_checkpoint(model, tokenizer, out_dir: str | Path, meta: dict | None = None) -> Path:
    """HF layout: config.json (with :data:`TRAINED_WITH`), model.safetensors, tokenizer files and, given
    ``meta``, training_meta.json. Returns ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    if meta is not None:
        (out / "training_meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return out
