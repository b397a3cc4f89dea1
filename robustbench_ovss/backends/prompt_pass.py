"""SAM 3's prompt-conditioned pass, split where the prompt first enters: image-only work once per image.

In Meta's SAM 3 (and in transformers' ``Sam3Model``, which ports it) the first thing that sees a prompt
is the cross-attention of the first DETR-encoder layer. Before it the encoder flattens the 1x FPN level
and its sine position encoding (one feature level, so no level embedding), and its first layer, which is
pre-norm, normalises the image tokens, adds the position encoding to queries and keys, runs
self-attention over the image tokens and adds the residual. Meta's builder turns off the option that
would add pooled text to the image features before the encoder, so all of that, and the layer's second
LayerNorm (the cross-attention's queries), is a function of the image alone: :func:`image_prefix`
computes it once per image (``docs/backend.md`` cites the code this was read from).

The per-prompt part (:func:`encode_prompts`, :func:`presence_logits`, :func:`decode_prompts`) continues
from there with the model's own modules, in the order of ``Sam3DetrEncoderLayer.forward`` and
``Sam3Model.forward``, on a bucket of n prompts:

- the image-only tensors stay [1, ...] and broadcast against the prompts' [n, ...] tensors (adds, the
  mask decoder's pixel decoder), so no FPN level and no position encoding is copied per prompt (the full
  forward's multi-level concatenation copies the 1x level and its encoding, and its mask decoder's
  ``clone`` every level, once per prompt); the one image-only tensor laid out per prompt is the first
  cross-attention's queries [n, h*w, D], made contiguous because a stride-0 batch takes another matmul
  path on the CPU under bf16 autocast and rounds differently from the full forward;
- only what the backend returns is computed: scoring on the last decoder layer (the forward scores every
  decoder layer, six in SAM 3, and keeps the last) and no box head (boxes are not returned);
- with the image's :class:`~.pixel_decoder.PixelTerms` (``Sam3Backend(pixel_decoder="split")``, the fp32
  default), the mask decoder runs step by step with the pixel decoder's image-only half taken from them
  (:mod:`.pixel_decoder`: equal to float round-off, not bit for bit).

Every module keeps what :mod:`.numerics` set on it (LayerNorm eps, the presence clamp, the decoder MLP
outside autocast), and the ops run in the same order and dtypes under autocast, so the outputs equal the
full forward's up to float round-off (tests compare the two; ``Sam3Backend(once_per_image=False)`` runs
the full forward).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .pixel_decoder import PixelTerms, embed_pixels

@dataclass
class ImagePrefix:
    """Image-only part of the DETR encoder's first layer, for one image.

    Attributes:
        pos: sine position encoding of the 1x FPN level, flattened [1, h*w, D].
        hidden: the first encoder layer's state after its self-attention block (residual added) [1, h*w, D].
        normed: ``hidden`` after the layer's second LayerNorm: the queries of its cross-attention [1, h*w, D].
        spatial_shapes: long [1, 2], (h, w) of the 1x level, on the features' device.
    Under bf16 autocast the tensors have the dtypes autocast gives them, as in the full forward.
    """

    pos: torch.Tensor
    hidden: torch.Tensor
    normed: torch.Tensor
    spatial_shapes: torch.Tensor


@dataclass
class PromptOutputs:
    """What one bucket of n prompts yields (model dtype; the backend converts to float32).

    Attributes:
        pred_masks: [n, Q, H4, W4] instance mask logits (H4 = 4 x the 1x level's height).
        pred_logits: [n, Q] instance logits of the last decoder layer.
        semantic_seg: [n, 1, H4, W4] semantic logits.
        presence_logits: [n, 1] presence logit of the last decoder layer.
    """

    pred_masks: torch.Tensor
    pred_logits: torch.Tensor
    semantic_seg: torch.Tensor
    presence_logits: torch.Tensor


def image_prefix(model: Any, feats: torch.Tensor, pos: torch.Tensor) -> ImagePrefix:
    """The image-only start of the DETR encoder for one image.

    Args:
        model: a ``Sam3Model``.
        feats: the 1x FPN level [1, D, h, w] (the DETR encoder's input).
        pos: its sine position encoding [1, D, h, w].
    Returns:
        ImagePrefix with [1, h*w, D] tensors.
    """
    if feats.shape[0] != 1:
        raise ValueError(f"image_prefix takes one image, got a batch of {feats.shape[0]}")
    layer = model.detr_encoder.layers[0]
    tokens = feats.flatten(2).transpose(1, 2)
    flat_pos = pos.flatten(2).transpose(1, 2).contiguous()
    normed = layer.layer_norm1(tokens)
    with_pos = normed + flat_pos
    attn, _ = layer.self_attn(query=with_pos, key=with_pos, value=normed)
    hidden = layer.dropout(attn) + tokens
    shapes = torch.tensor([list(feats.shape[-2:])], dtype=torch.long, device=feats.device)
    return ImagePrefix(pos=flat_pos, hidden=hidden, normed=layer.layer_norm2(hidden), spatial_shapes=shapes)


def _cross_mask(config: Any, queries: torch.Tensor, prompt: torch.Tensor, mask: torch.Tensor | None) -> Any:
    """The additive/boolean cross-attention mask transformers builds from a [n, L] prompt mask (or None)."""
    if mask is None:
        return None
    from transformers.masking_utils import create_bidirectional_mask

    return create_bidirectional_mask(config=config, inputs_embeds=queries, attention_mask=mask, encoder_hidden_states=prompt)


def encode_prompts(model: Any, prefix: ImagePrefix, prompt: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The DETR encoder's output for n prompts on one image, from the image's prefix.

    Args:
        prompt: prompt tokens [n, L, D]; mask: bool [n, L] (True = attend) or None.
    Returns:
        encoded image tokens [n, h*w, D].
    """
    encoder = model.detr_encoder
    n = prompt.shape[0]
    # one contiguous [n, h*w, D] query tensor: a stride-0 batch takes another matmul path on the CPU under
    # bf16 autocast, which rounds differently from the full forward (equal in fp32)
    queries = prefix.normed.expand(n, -1, -1).contiguous()
    cross_mask = _cross_mask(encoder.config, queries, prompt, mask)
    first = encoder.layers[0]
    attn, _ = first.cross_attn(query=queries, key=prompt, value=prompt, attention_mask=cross_mask)
    hidden = first.dropout(attn) + prefix.hidden  # [n, h*w, D] by broadcasting: the prompt enters here
    hidden = first.dropout(first.mlp(first.layer_norm3(hidden))) + hidden
    for layer in encoder.layers[1:]:
        hidden = layer(hidden, prompt_feats=prompt, vision_pos_encoding=prefix.pos, prompt_cross_attn_mask=cross_mask)
    return hidden


def _detr(model: Any, prefix: ImagePrefix, prompt: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, Any]:
    encoded = encode_prompts(model, prefix, prompt, mask)
    decoded = model.detr_decoder(vision_features=encoded, text_features=prompt, vision_pos_encoding=prefix.pos,
                                 text_mask=mask, spatial_shapes=prefix.spatial_shapes)
    return encoded, decoded


def presence_logits(model: Any, prefix: ImagePrefix, prompt: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Presence logits [n, 1] of the DETR decoder's last layer (no scoring, no mask decoder)."""
    return _detr(model, prefix, prompt, mask)[1].presence_logits[-1]


def mask_levels(fpn: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
    """The backbone levels the mask decoder reads: every FPN level but the last (0.5x), finest first."""
    return list(fpn[:-1])


def _split_mask_decoder(model: Any, terms: PixelTerms, queries: torch.Tensor, encoded: torch.Tensor,
                        hw: tuple[int, int], prompt: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``Sam3MaskDecoder.forward`` step by step, with the pixel decoder of :mod:`.pixel_decoder`.

    Returns (pred_masks [n, Q, H, W], semantic_seg [n, 1, H, W]).
    """
    md = model.mask_decoder
    normed = md.prompt_cross_attn_norm(encoded)
    cross_mask = _cross_mask(md.config, normed, prompt, mask)
    attn, _ = md.prompt_cross_attn(query=normed, key=prompt, value=prompt, attention_mask=cross_mask)
    encoded = encoded + md.prompt_cross_attn_dropout(attn)
    n, _, d = encoded.shape
    coarse = encoded[:, :hw[0] * hw[1]].transpose(1, 2).reshape(n, d, hw[0], hw[1])
    pixels = embed_pixels(md.pixel_decoder, terms, coarse)
    instance = md.instance_projection(pixels)
    pred_masks = torch.einsum("bqc,bchw->bqhw", md.mask_embedder(queries), instance)
    return pred_masks, md.semantic_projection(pixels)


def decode_prompts(model: Any, fpn: tuple[torch.Tensor, ...], prefix: ImagePrefix, prompt: torch.Tensor,
                   mask: torch.Tensor | None, terms: PixelTerms | None = None) -> PromptOutputs:
    """The full prompt-conditioned pass for n prompts on one image.

    Args:
        fpn: the image's FPN levels [1, D, h_l, w_l], finest first (the last, 0.5x, level is unused, as in
            ``Sam3Model.forward``); never expanded to n.
        prompt: [n, L, D]; mask: bool [n, L] or None.
        terms: the image's :func:`.pixel_decoder.pixel_terms` to run the pixel decoder split (equal to
            float round-off in fp32); None = the model's own mask decoder.
    """
    encoded, decoded = _detr(model, prefix, prompt, mask)
    queries = decoded.intermediate_hidden_states[-1]
    logits = model.dot_product_scoring(decoder_hidden_states=queries[None], text_features=prompt, text_mask=mask)
    if terms is None:
        masks = model.mask_decoder(decoder_queries=queries, backbone_features=mask_levels(fpn),
                                   encoder_hidden_states=encoded, prompt_features=prompt, prompt_mask=mask)
        pred_masks, semantic = masks.pred_masks, masks.semantic_seg
    else:
        hw = (int(fpn[-2].shape[-2]), int(fpn[-2].shape[-1]))
        pred_masks, semantic = _split_mask_decoder(model, terms, queries, encoded, hw, prompt, mask)
    return PromptOutputs(pred_masks=pred_masks, pred_logits=logits[0].squeeze(-1), semantic_seg=semantic,
                         presence_logits=decoded.presence_logits[-1])
