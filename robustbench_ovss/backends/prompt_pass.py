"""SAM 3's prompt-conditioned pass, split where the prompt first enters: image-only work once per image.

In Meta's SAM 3 (and in transformers' ``Sam3Model``, which ports it) the first thing that sees a prompt
is the cross-attention of the first DETR-encoder layer. Before it the encoder flattens the 1x FPN level
and its sine position encoding (one feature level, so no level embedding), and its first layer, which is
pre-norm, normalises the image tokens, adds the position encoding to queries and keys, runs
self-attention over the image tokens and adds the residual. Meta's builder turns off the option that
would add pooled text to the image features before the encoder, so all of that, and the layer's second
LayerNorm (the cross-attention's queries), is a function of the image alone: :func:`image_prefix`
computes it once per image (``docs/backend.md`` cites the code this was read from). The DETR decoder's
first layer, up to its text cross-attention, sees only learned tensors and the grid size (the queries,
the presence token, the reference boxes, their positions and box bias, the self-attention over the
queries): :func:`decoder_start` computes it with the prefix.

The per-prompt part (:func:`encode_prompts`, :func:`decode_queries`, :func:`presence_logits`,
:func:`decode_prompts`) continues from there with the model's own modules, in the order of
``Sam3DetrEncoderLayer.forward``, ``Sam3DetrDecoder.forward`` and ``Sam3Model.forward``, on a bucket of n
prompts:

- the image-only tensors stay [1, ...] and broadcast against the prompts' [n, ...] tensors (adds, the
  mask decoder's pixel decoder), so no FPN level and no position encoding is copied per prompt (the full
  forward's multi-level concatenation copies the 1x level and its encoding, and its mask decoder's
  ``clone`` every level, once per prompt); the one image-only tensor laid out per prompt is the first
  cross-attention's queries [n, h*w, D], made contiguous because a stride-0 batch takes another matmul
  path on the CPU under bf16 autocast and rounds differently from the full forward;
- only what the backend returns is computed: scoring on the last decoder layer (the forward scores every
  decoder layer, six in SAM 3, and keeps the last), no box head (boxes are not returned), no box
  refinement after the last decoder layer and no presence head but the last layer's;
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
import torch.nn.functional as F

from .pixel_decoder import PixelTerms, embed_pixels

@dataclass
class DecoderStart:
    """The DETR decoder's first layer up to its text cross-attention, for one feature-grid size.

    Its inputs are learned (the object queries, the presence token, the reference boxes) and the grid
    size, so nothing here sees the image or the prompt.

    Attributes:
        hidden: presence token and queries after the first layer's self-attention block (residual added,
            LayerNorm) [1, Q + 1, D].
        query_pos: the first layer's query position encoding, a zero row prepended for the presence
            token [1, Q + 1, D].
        vision_mask: the first layer's box relative position bias, a zero row prepended for the presence
            token [1, heads, Q + 1, h*w].
        reference_boxes: sigmoid of the learned reference points [1, Q, 4] (cx, cy, w, h).
    """

    hidden: torch.Tensor
    query_pos: torch.Tensor
    vision_mask: torch.Tensor
    reference_boxes: torch.Tensor


@dataclass
class ImagePrefix:
    """Image-only part of the DETR encoder's first layer, for one image.

    Attributes:
        pos: sine position encoding of the 1x FPN level, flattened [1, h*w, D].
        hidden: the first encoder layer's state after its self-attention block (residual added) [1, h*w, D].
        normed: ``hidden`` after the layer's second LayerNorm: the queries of its cross-attention [1, h*w, D].
        spatial_shapes: long [1, 2], (h, w) of the 1x level, on the host.
        decoder: the DETR decoder's prompt-independent start for this grid (:func:`decoder_start`).
    Under bf16 autocast the tensors have the dtypes autocast gives them, as in the full forward.
    """

    pos: torch.Tensor
    hidden: torch.Tensor
    normed: torch.Tensor
    spatial_shapes: torch.Tensor
    decoder: DecoderStart


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
    # on the host: the decoder reads the grid size as numbers (arange, RPB), so no device sync and no
    # meta tensor when FLOPs are counted
    shapes = torch.tensor([list(feats.shape[-2:])], dtype=torch.long)
    return ImagePrefix(pos=flat_pos, hidden=hidden, normed=layer.layer_norm2(hidden), spatial_shapes=shapes,
                       decoder=decoder_start(model, shapes))


def _pad_presence_row(x: torch.Tensor) -> torch.Tensor:
    """Prepend a zero row along dim -2 (the presence token's place, as the decoder does)."""
    return F.pad(x, (0, 0, 1, 0), mode="constant", value=0)


def decoder_start(model: Any, spatial_shapes: torch.Tensor) -> DecoderStart:
    """The DETR decoder's first layer up to its text cross-attention (``Sam3DetrDecoder.forward`` and
    ``Sam3DetrDecoderLayer.forward`` in order) for a feature grid of ``spatial_shapes`` [1, 2]."""
    dec = model.detr_decoder
    boxes = dec.reference_points.weight.unsqueeze(0).sigmoid()
    hidden = torch.cat([dec.presence_token.weight.unsqueeze(0), dec.query_embed.weight.unsqueeze(0)], dim=1)
    query_pos = _pad_presence_row(dec.ref_point_head(dec.position_encoding.encode_boxes(boxes)))
    shape = (spatial_shapes[0, 0], spatial_shapes[0, 1])
    vision_mask = _pad_presence_row(dec._get_rpb_matrix(boxes, shape))
    layer = dec.layers[0]
    with_pos = hidden + query_pos
    attn, _ = layer.self_attn(query=with_pos, key=with_pos, value=hidden, attention_mask=None)
    hidden = layer.self_attn_layer_norm(hidden + layer.self_attn_dropout(attn))
    return DecoderStart(hidden=hidden, query_pos=query_pos, vision_mask=vision_mask, reference_boxes=boxes)


def _after_self_attention(layer: Any, hidden: torch.Tensor, query_pos: torch.Tensor, prompt: torch.Tensor,
                          text_mask: Any, vision: torch.Tensor, vision_pos: torch.Tensor, vision_mask: torch.Tensor) -> torch.Tensor:
    """The rest of a ``Sam3DetrDecoderLayer`` after its self-attention block: text cross-attention,
    vision cross-attention with the box bias, MLP, each with its residual and LayerNorm."""
    attn, _ = layer.text_cross_attn(query=hidden + query_pos, key=prompt, value=prompt, attention_mask=text_mask)
    hidden = layer.text_cross_attn_layer_norm(hidden + layer.text_cross_attn_dropout(attn))
    attn, _ = layer.vision_cross_attn(query=hidden + query_pos, key=vision + vision_pos, value=vision,
                                      attention_mask=vision_mask)
    hidden = layer.vision_cross_attn_layer_norm(hidden + layer.vision_cross_attn_dropout(attn))
    return layer.mlp_layer_norm(hidden + layer.mlp_dropout(layer.mlp(hidden)))


def decode_queries(model: Any, prefix: ImagePrefix, encoded: torch.Tensor, prompt: torch.Tensor,
                   mask: torch.Tensor | None, need_queries: bool = True) -> tuple[torch.Tensor | None, torch.Tensor]:
    """The DETR decoder for n prompts from the image's :class:`DecoderStart`, last layer's outputs only.

    Args:
        encoded: the DETR encoder's output [n, h*w, D]; prompt: [n, L, D]; mask: bool [n, L] or None.
        need_queries: False (the presence pass) skips the last layer's query LayerNorm.
    Returns:
        (queries [n, Q, D] after the output LayerNorm, or None; presence logits [n, 1]) of the last
        layer, as ``Sam3DetrDecoder.forward``'s ``intermediate_hidden_states[-1]`` and
        ``presence_logits[-1]``. Box refinement runs for every layer but the last (whose boxes no output
        uses).
    """
    from transformers.models.sam3.modeling_sam3 import inverse_sigmoid

    dec = model.detr_decoder
    start = prefix.decoder
    n = encoded.shape[0]
    # contiguous, as the full forward's own [n, ...] tensors (a stride-0 batch may take another matmul path)
    hidden = start.hidden.expand(n, -1, -1).contiguous()
    text_mask = _cross_mask(dec.config, hidden, prompt, mask)
    shape = (prefix.spatial_shapes[0, 0], prefix.spatial_shapes[0, 1])
    boxes = start.reference_boxes.expand(n, -1, -1)
    last = len(dec.layers) - 1
    for i, layer in enumerate(dec.layers):
        if i == 0:
            hidden = _after_self_attention(layer, hidden, start.query_pos, prompt, text_mask, encoded, prefix.pos,
                                           start.vision_mask.expand(n, -1, -1, -1).contiguous())
        else:
            query_pos = dec.ref_point_head(dec.position_encoding.encode_boxes(boxes))
            vision_mask = _pad_presence_row(dec._get_rpb_matrix(boxes, shape))
            hidden = layer(hidden, query_pos=query_pos, text_features=prompt, vision_features=encoded,
                           vision_pos_encoding=prefix.pos, text_cross_attn_mask=text_mask,
                           vision_cross_attn_mask=vision_mask)
        if i < last:
            delta = dec.box_head(dec.output_layer_norm(hidden[:, 1:]))
            boxes = (delta + inverse_sigmoid(boxes)).sigmoid()
    cap = dec.clamp_presence_logit_max_val
    presence = dec.presence_head(dec.presence_layer_norm(hidden[:, :1])).squeeze(-1).clamp(min=-cap, max=cap)
    return (dec.output_layer_norm(hidden[:, 1:]) if need_queries else None), presence


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


def presence_logits(model: Any, prefix: ImagePrefix, prompt: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Presence logits [n, 1] of the DETR decoder's last layer (no scoring, no mask decoder)."""
    encoded = encode_prompts(model, prefix, prompt, mask)
    return decode_queries(model, prefix, encoded, prompt, mask, need_queries=False)[1]


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
    encoded = encode_prompts(model, prefix, prompt, mask)
    queries, presence = decode_queries(model, prefix, encoded, prompt, mask)
    logits = model.dot_product_scoring(decoder_hidden_states=queries[None], text_features=prompt, text_mask=mask)
    if terms is None:
        masks = model.mask_decoder(decoder_queries=queries, backbone_features=mask_levels(fpn),
                                   encoder_hidden_states=encoded, prompt_features=prompt, prompt_mask=mask)
        pred_masks, semantic = masks.pred_masks, masks.semantic_seg
    else:
        hw = (int(prefix.spatial_shapes[0, 0]), int(prefix.spatial_shapes[0, 1]))  # the 1x level: host numbers
        pred_masks, semantic = _split_mask_decoder(model, terms, queries, encoded, hw, prompt, mask)
    return PromptOutputs(pred_masks=pred_masks, pred_logits=logits[0].squeeze(-1), semantic_seg=semantic,
                         presence_logits=presence)
