"""The demo model: a tiny ``Sam3Config``, its word-level tokenizer, and a training forward pass.

Everything here goes through the real ``transformers`` ``Sam3Model`` code path; the only
project-specific parts are the (small) configuration, the tokenizer and the pre-processing, which
follows DESIGN §5 (squash-resize, /255, (x - 0.5) / 0.5).

Choices (see docs/demo-model.md):
- native input 252 (18x18 patches of 14; the synthetic scenes are 256 px), preview 168 (12x12);
- every ViT layer uses (grid/3)-patch windows (6x6 at 252) and none is global, so no position buffer
  depends on the input size: the same weights run at the native size and at the 2/3 presence
  preview with no recomputation, and both grids split into windows without padding;
- three FPN levels (2x, 1x, 0.5x) instead of four: the model drops the last level, so the mask
  decoder works at 2x the patch grid (36x36 masks at 252) and the DETR encoder at 1x. This quarters
  the per-prompt cost of the pixel decoder, which dominates a tiny model's decode.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

SPECIAL_TOKENS = ("<pad>", "<unk>", "<bos>", "<eos>")
TEXT_MAX_LENGTH = 32


def words_of(names: Iterable[str]) -> list[str]:
    """Lower-cased word tokens of ``names`` (split on anything that is not a letter or digit)."""
    out: list[str] = []
    for name in names:
        out.extend(w for w in re.split(r"[^0-9a-z]+", str(name).lower()) if w)
    return out


def build_tokenizer(words: Iterable[str]):
    """A word-level ``PreTrainedTokenizerFast`` over ``words`` (+ specials), padding to 32 tokens.

    Text is lower-cased and split on whitespace and punctuation; unknown words map to ``<unk>``;
    ``<bos>`` and ``<eos>`` wrap every text (the CLIP text model reads ``eos_token_id``).
    """
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {t: i for i, t in enumerate(SPECIAL_TOKENS)}
    for w in sorted(set(words_of(words))):
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A <eos>", special_tokens=[("<bos>", vocab["<bos>"]), ("<eos>", vocab["<eos>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<bos>",
        eos_token="<eos>",
        model_max_length=TEXT_MAX_LENGTH,
    )


def tiny_config(
    vocab_size: int,
    image_size: int = 252,
    vit_hidden: int = 96,
    vit_layers: int = 4,
    hidden: int = 64,
    text_hidden: int = 64,
    text_layers: int = 2,
    detr_layers: int = 2,
    num_queries: int = 20,
    initializer_range: float = 0.06,
):
    """The demo model's ``Sam3Config`` (about 1 M parameters at the defaults)."""
    from transformers import Sam3Config

    patch = 14
    grid = image_size // patch
    heads = 4
    common = dict(dropout=0.0, hidden_dropout=0.0, initializer_range=initializer_range)
    return Sam3Config(
        vision_config=dict(
            backbone_config=dict(
                model_type="sam3_vit_model",
                hidden_size=vit_hidden,
                intermediate_size=vit_hidden * 4,
                num_hidden_layers=vit_layers,
                num_attention_heads=heads,
                image_size=image_size,
                patch_size=patch,
                window_size=max(1, grid // 3),
                global_attn_indexes=[],
                pretrain_image_size=image_size,
                initializer_range=initializer_range,
            ),
            fpn_hidden_size=hidden,
            backbone_feature_sizes=[[grid * 2, grid * 2], [grid, grid], [grid // 2, grid // 2]],
            scale_factors=[2.0, 1.0, 0.5],
            initializer_range=initializer_range,
        ),
        text_config=dict(
            model_type="clip_text_model",
            vocab_size=vocab_size,
            hidden_size=text_hidden,
            intermediate_size=text_hidden * 4,
            projection_dim=text_hidden,
            num_hidden_layers=text_layers,
            num_attention_heads=heads,
            max_position_embeddings=TEXT_MAX_LENGTH,
            pad_token_id=0,
            bos_token_id=2,
            eos_token_id=3,
            initializer_range=initializer_range,
            attention_dropout=0.0,
            dropout=0.0,
        ),
        geometry_encoder_config=dict(
            hidden_size=hidden, num_layers=1, num_attention_heads=heads, intermediate_size=hidden * 2, **common
        ),
        detr_encoder_config=dict(
            hidden_size=hidden,
            num_layers=detr_layers,
            num_attention_heads=heads,
            intermediate_size=hidden * 4,
            **common,
        ),
        detr_decoder_config=dict(
            hidden_size=hidden,
            num_layers=detr_layers,
            num_queries=num_queries,
            num_attention_heads=heads,
            intermediate_size=hidden * 4,
            **common,
        ),
        mask_decoder_config=dict(
            hidden_size=hidden,
            num_upsampling_stages=1,
            num_attention_heads=heads,
            dropout=0.0,
            initializer_range=initializer_range,
        ),
        initializer_range=initializer_range,
    )


def build_model(config, seed: int = 0):
    from transformers import Sam3Model

    torch.manual_seed(seed)
    model = Sam3Model(config)
    model.train()
    return model


def preprocess(images: Sequence[np.ndarray] | np.ndarray, size: int) -> torch.Tensor:
    """uint8 [H, W, 3] images -> float [B, 3, size, size]: squash-resize, /255, (x - 0.5) / 0.5."""
    out = []
    for im in images:
        t = torch.from_numpy(np.ascontiguousarray(im)).permute(2, 0, 1)[None].float()
        if t.shape[-2:] != (size, size):  # as the backend: resize uint8 values, round, clamp
            t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
            t = t.round_().clamp_(0.0, 255.0)
        out.append(t / 255.0)
    return (torch.cat(out) - 0.5) / 0.5


def tokenize(tokenizer, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    enc = tokenizer(
        list(texts), padding="max_length", max_length=TEXT_MAX_LENGTH, truncation=True, return_tensors="pt"
    )
    return enc["input_ids"], enc["attention_mask"].bool()


def text_hidden(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Text-encoder last hidden states [N, L, H_text] (before SAM 3's projection)."""
    out = model.text_encoder(input_ids=input_ids, attention_mask=attention_mask.long(), return_dict=True)
    return out.last_hidden_state


def token_embeddings(model, input_ids: torch.Tensor) -> torch.Tensor:
    """The text encoder's input token embeddings [N, L, H_text] (before its transformer).

    ActiveSAM pools these, not the final hidden states, into the vectors its appended tokens are made
    of (the ``sam3`` backend's ``text_embeddings_1024`` default); training must build them the same way.
    """
    return model.text_encoder.text_model.embeddings.token_embedding(input_ids)


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


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
    """HF layout: config.json (with ``ovss_geometry_cls: false``, ``ovss_numerics: "transformers"``) +
    model.safetensors + tokenizer files
    (+ training_meta.json)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    # trained through Sam3Model.forward with text only, i.e. without the image-conditioned geometry CLS
    # token that Meta's model (and, by default, the sam3 backend) appends to every prompt: say so
    cfg_path = out / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["ovss_geometry_cls"] = False
    # trained with transformers' numerics (ViT LayerNorm eps from the config, presence clamped to +-10):
    # the backend keeps them for this model (robustbench_ovss.backends.numerics)
    cfg["ovss_numerics"] = "transformers"
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    if meta is not None:
        (out / "training_meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return out
