"""The ``sam3`` backend: one loaded SAM 3 (transformers ``Sam3Model``) serving every method of a run.

Operations (DESIGN §4, §5):

- ``encode_image(image, size)``: ViT + FPN neck at ``size`` (RoPE buffers switched for that call only,
  :mod:`.resolution`); the result is reused for any number of decodes.
- ``encode_text(texts, extra_tokens, extra_mask)``: per-token prompt features [N, 32(+E), 256] and masks,
  cached by exact string; the text encoder runs once per new string (``counters["text_encoder_calls"]``
  counts its forward calls).
- ``decode(features, text, indices, bucket_size)``: one prompt-conditioned pass per bucket of prompts
  on the cached image features; per prompt instance mask logits, instance scores sigmoid(pred_logits) *
  presence, semantic logits and presence. By default (``once_per_image=True``) the work that precedes
  the prompt (the first DETR-encoder layer's self-attention over the image tokens, the DETR decoder's
  first layer up to its text cross-attention) is done once per encoded image and no FPN level is copied
  per prompt (:mod:`.prompt_pass`); with
  ``once_per_image=False`` every bucket is one ``Sam3Model`` forward with the features expanded along
  the batch, the oracle the fast path is tested against. Where convolutions run in full fp32 the
  pixel decoder's image-only half is also computed once per image (``pixel_decoder="auto"``,
  :mod:`.pixel_decoder`; equal to float round-off).
- ``presence(...)``: ViT -> 1x FPN level -> DETR encoder -> DETR decoder, no mask decoder; equals the
  presence of the full forward.
- ``text_embeddings_1024`` / ``project``: ActiveSAM's prompt-expansion inputs.

A CUDA out-of-memory error in a bucket halves the bucket and retries (``counters["oom_backoffs"]``); the
smaller bucket is kept for later calls of the same kind. ``dtype="bf16"`` means autocast (never
``.to(bfloat16)``, which would also round the RoPE position buffers).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from ..errors import ConfigError
from ..registry import BACKENDS
from . import prompt_pass
from .base import Decoded, ImageFeatures, TextFeatures
from .checkpoint import checkpoint_identity, hf_directory, load_model, resolve_checkpoint
from .numerics import NumericsReport, apply_numerics, checkpoint_numerics, resolve_numerics
from .pixel_decoder import PixelTerms, pixel_terms
from .preprocess import image_to_pixels, tokenize
from .prompt_pass import ImagePrefix
from .resolution import ResolutionSwitch
from .text_pooling import input_token_embeddings, masked_mean

log = logging.getLogger(__name__)
T = TypeVar("T")
TEXT_BATCH = 256  # prompts per text-encoder forward when filling the cache
GEOMETRY_CLS_CONFIG_KEY = "ovss_geometry_cls"
DECODED_FIELDS = ("mask_logits", "scores", "semantic_logits", "presence", "logits", "presence_logits")
COUNTERS = ("text_encoder_calls", "image_encoder_calls", "decoder_calls", "presence_calls", "oom_backoffs")


@dataclass
class Sam3ImagePayload:
    """Backend-specific part of :class:`ImageFeatures`.

    Attributes:
        fpn: per FPN level [1, C, h_l, w_l] (finest first, all 4 levels; None where not computed).
        pos: per level sine position encodings of the same shapes.
        presence_only: True when only the 1x level (the DETR input) was computed.
        geometry_token: the geometry encoder's CLS output for this image [1, 1, D], appended to every
            prompt (None when the backend runs with ``geometry_cls=False``).
        prefix: the DETR encoder's image-only start for this image (:func:`.prompt_pass.image_prefix`;
            None when the backend runs with ``once_per_image=False``).
        pixel_terms: the pixel decoder's image-only terms (:func:`.pixel_decoder.pixel_terms`), computed
            at the first decode with ``pixel_decoder="split"``; ``pixel_terms_tried`` says they were
            asked for (None then means the architecture cannot be split).
    """

    fpn: tuple[torch.Tensor | None, ...]
    pos: tuple[torch.Tensor | None, ...]
    presence_only: bool = False
    geometry_token: torch.Tensor | None = None  # [1, 1, D] image-conditioned geometry CLS token
    prefix: ImagePrefix | None = None
    pixel_terms: PixelTerms | None = None
    pixel_terms_tried: bool = False


@dataclass
class _TextEntry:
    features: torch.Tensor  # [L, D] float32, after the text projection
    mask: torch.Tensor  # [L] bool
    pooled_input: torch.Tensor  # [H_text] mean of token embeddings (before the transformer) over valid tokens
    pooled_hidden: torch.Tensor  # [H_text] mean of the encoder's last hidden states over valid tokens


def resolve_device(device: str | torch.device) -> torch.device:
    """"auto" -> cuda when available else cpu; a CUDA device without CUDA is a ConfigError."""
    text = str(device)
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(text)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {text!r} requested but torch.cuda.is_available() is False (CPU build of torch?)")
    return dev


def resolve_dtype(dtype: str, device: torch.device) -> str:
    """"auto" -> "bf16" on CUDA, "fp32" elsewhere; accepts fp32/float32 and bf16/bfloat16."""
    text = str(dtype).lower()
    if text == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    aliases = {"fp32": "fp32", "float32": "fp32", "bf16": "bf16", "bfloat16": "bf16"}
    if text not in aliases:
        raise ConfigError(f"dtype {dtype!r} is not supported: expected auto, fp32 or bf16 (bf16 = autocast)")
    return aliases[text]


PIXEL_DECODERS = ("auto", "split", "reference")


def resolve_pixel_decoder(choice: str, dtype: str, device: torch.device, once_per_image: bool = True) -> str:
    """"auto" -> "split" where convolutions run in full fp32, else "reference" (see :mod:`.pixel_decoder`).

    Full fp32 means ``dtype == "fp32"`` and, on CUDA, ``torch.backends.cudnn.allow_tf32`` off (Meta's
    numerics turn it on for Ampere and newer). Without ``once_per_image`` the model's own forward runs,
    so the result is "reference" whatever is asked.
    """
    if choice not in PIXEL_DECODERS:
        raise ConfigError(f"pixel_decoder {choice!r} is not supported: expected one of {', '.join(PIXEL_DECODERS)}")
    if not once_per_image:
        return "reference"
    if choice != "auto":
        return choice
    full_fp32 = dtype == "fp32" and not (device.type == "cuda" and torch.backends.cudnn.allow_tf32)
    return "split" if full_fp32 else "reference"


def geometry_cls_token(model: Any, feats: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Geometry encoder output for an empty box prompt: its CLS token attended to the image, [B, 1, D].

    Meta's ``SequenceGeometryEncoder`` with no points or boxes encodes just ``cls_embed`` (final_proj +
    norm, the cross-attention layers over the 1x FPN level ``feats`` [B, D, h, w] with position encoding
    ``pos``, the output norm), and Meta's model appends it to every text prompt. transformers'
    ``Sam3GeometryEncoder`` holds the same modules but is only run for box prompts (and needs
    torchvision's roi_align there), so the CLS-only path is composed here from its submodules.
    """
    geo = model.geometry_encoder
    vision = feats.flatten(2).transpose(1, 2)
    vision_pos = pos.flatten(2).transpose(1, 2)
    token = geo.cls_embed.weight.detach().view(1, 1, -1).to(vision.dtype).expand(vision.shape[0], -1, -1)
    token = geo.prompt_layer_norm(geo.final_proj(token))
    for layer in geo.layers:
        token = layer(prompt_feats=token, vision_feats=vision, vision_pos_encoding=vision_pos, prompt_mask=None)
    return geo.output_layer_norm(token)


@BACKENDS.register("sam3")
class Sam3Backend:
    """SAM 3 behind the :class:`~robustbench_ovss.backends.base.Backend` contract.

    Args:
        checkpoint: HF directory, Meta ``sam3.pt`` file, hub id (local cache only unless
            ``allow_download``) or ``builtin:tiny-random`` (:mod:`.checkpoint`).
        device: "cpu", "cuda", "cuda:N" or "auto".
        dtype: "fp32", "bf16" (autocast) or "auto" (bf16 on CUDA, fp32 on CPU).
        allow_download: let a hub id download when it is not cached (and the hub is reachable).
        geometry_cls: append the image-conditioned CLS token of SAM 3's geometry encoder to every prompt,
            as Meta's SAM 3 (and so both reference methods) does even without boxes; transformers'
            ``Sam3Model`` runs the geometry encoder only when boxes are given. False = transformers'
            text-only behaviour. None (default) = True unless the checkpoint's config.json sets
            ``"ovss_geometry_cls": false`` (a model trained without the token).
        numerics: "meta" = Meta's SAM 3 numerics (LayerNorm eps 1e-5 everywhere, raw presence logits,
            TF32 on Ampere+ CUDA as Meta's builder sets it), what the reference methods compute;
            "transformers" = transformers' ``Sam3Model`` as its config builds it; "auto" (default) =
            what the checkpoint's config.json declares in ``ovss_numerics`` ("meta" when absent, as
            in every checkpoint from Meta or the hub). See :mod:`.numerics`.
        once_per_image: True (default) = the prompt-independent start of the DETR encoder and decoder once
            per encoded image and no per-prompt copies of the FPN levels (:mod:`.prompt_pass`); False = one full
            ``Sam3Model`` forward per bucket (the previous path, kept as the oracle). Both compute the
            same outputs up to float round-off (tested to 1e-5), so, like the bucket size, the choice is
            not part of the identity.
        pixel_decoder: "split" = each pixel-decoder convolution's image-only half once per image and the
            prompt's half at the coarse resolution (:mod:`.pixel_decoder`, with ``once_per_image``;
            equal to float round-off in fp32); "reference" = the model's own mask decoder; "auto"
            (default) = "split" where the convolutions run in full fp32 (dtype fp32, and on CUDA with
            TF32 convolutions off), else "reference" (in bf16 or TF32 the split rounds other numbers).
            The resolved value is ``self.pixel_decoder``; like the bucket size it is not part of the
            identity.
    """

    def __init__(self, checkpoint: str, device: str = "cpu", dtype: str = "fp32", allow_download: bool = False,
                 geometry_cls: bool | None = None, numerics: str = "auto", once_per_image: bool = True,
                 pixel_decoder: str = "auto"):
        dev = resolve_device(device)
        resolved = resolve_checkpoint(checkpoint, allow_download=allow_download)
        directory = hf_directory(resolved)
        model, tokenizer = load_model(directory, resolved.spec)
        self._setup(model, tokenizer, dev, resolve_dtype(dtype, dev), checkpoint_identity(resolved, directory),
                    geometry_cls, numerics, once_per_image, pixel_decoder)
        self.checkpoint_dir = directory

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any, device: str = "cpu", dtype: str = "fp32",
                   identity: str = "in-memory", geometry_cls: bool | None = None, numerics: str = "auto",
                   once_per_image: bool = True, pixel_decoder: str = "auto") -> Sam3Backend:
        """Wrap a freshly built ``Sam3Model`` and tokenizer (benchmarks, random real-size models).

        The model's modules are changed in place to run ``numerics``.
        """
        self = cls.__new__(cls)
        dev = resolve_device(device)
        self._setup(model.eval(), tokenizer, dev, resolve_dtype(dtype, dev), identity, geometry_cls, numerics,
                    once_per_image, pixel_decoder)
        self.checkpoint_dir = None
        return self

    def _setup(self, model: Any, tokenizer: Any, device: torch.device, dtype: str, identity: str,
               geometry_cls: bool | None, numerics: str = "auto", once_per_image: bool = True,
               pixel_decoder: str = "auto") -> None:
        self.device = device
        self.dtype = dtype
        self.once_per_image = bool(once_per_image)
        if geometry_cls is None:  # a checkpoint trained without the token says so in its config.json
            geometry_cls = bool(getattr(model.config, GEOMETRY_CLS_CONFIG_KEY, True))
        self.geometry_cls = bool(geometry_cls)
        self.numerics = resolve_numerics(numerics, model.config)
        # outputs differ without the token or with other numerics than the checkpoint declares, so the
        # identity (part of every unit key) says so
        if not self.geometry_cls:
            identity = f"{identity}#no-geometry-cls"
        if self.numerics != checkpoint_numerics(model.config):
            identity = f"{identity}#numerics={self.numerics}"
        self.identity = identity
        self.model = model.to(device).eval()
        self.numerics_report: NumericsReport = apply_numerics(self.model, self.numerics, device)
        self.pixel_decoder = resolve_pixel_decoder(pixel_decoder, dtype, device, self.once_per_image)
        self.tokenizer = tokenizer
        self.config = model.config
        self.switch = ResolutionSwitch(self.model.vision_encoder.backbone)
        self.native_size = self.switch.native_size
        self.text_length = int(self.config.text_config.max_position_embeddings)
        self.num_queries = int(self.config.detr_decoder_config.num_queries)
        self.presence_level = len(self.model.vision_encoder.neck.fpn_layers) - 2  # the DETR input (1x)
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self.bucket_caps: dict[str, int] = {}
        self._text_cache: dict[str, _TextEntry] = {}

    def __repr__(self) -> str:
        return (f"Sam3Backend({self.identity!r}, device={str(self.device)!r}, dtype={self.dtype!r}, "
                f"numerics={self.numerics!r}, once_per_image={self.once_per_image}, "
                f"pixel_decoder={self.pixel_decoder!r}, native_size={self.native_size})")

    # -- helpers ---------------------------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.dtype == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def synchronize(self) -> None:
        """Wait for queued device work (for timing)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def clear_text_cache(self) -> None:
        """Forget every cached prompt (the next encode_text re-runs the text encoder)."""
        self._text_cache.clear()

    # -- images ----------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_image(self, image: np.ndarray, size: int | None = None, *, presence_only: bool = False) -> ImageFeatures:
        """Encode uint8 RGB [H, W, 3] at ``size`` x ``size`` (default ``native_size``).

        Args:
            image: uint8 [H, W, 3] numpy array (or torch tensor), RGB.
            size: square input resolution in pixels, a multiple of the patch size (14 real).
            presence_only: compute only the 1x FPN level (enough for :meth:`presence`, not for decode).
        Returns:
            ImageFeatures whose payload holds the FPN levels [1, C, h, w] (autocast dtype under bf16).
        """
        size = self.switch.check_size(self.native_size if size is None else size)
        pixels = image_to_pixels(image, size, self.device)
        with self.switch.at(size), self._autocast():
            if presence_only:
                payload = self._encode_levels(pixels, [self.presence_level])
            else:
                out = self.model.vision_encoder(pixels)
                payload = Sam3ImagePayload(tuple(out.fpn_hidden_states), tuple(out.fpn_position_encoding))
            if self.geometry_cls:
                payload.geometry_token = self._geometry_token(payload)
            if self.once_per_image:
                payload.prefix = self._image_prefix(payload)
        self.counters["image_encoder_calls"] += 1
        return ImageFeatures(size=size, image_hw=(int(image.shape[0]), int(image.shape[1])), payload=payload)

    def _encode_levels(self, pixels: torch.Tensor, levels: Sequence[int]) -> Sam3ImagePayload:
        vision = self.model.vision_encoder
        hidden = vision.backbone(pixels).last_hidden_state  # [1, g*g, D]
        g = pixels.shape[-1] // self.switch.patch_size
        spatial = hidden.view(hidden.shape[0], g, g, -1).permute(0, 3, 1, 2)
        n = len(vision.neck.fpn_layers)
        fpn: list[torch.Tensor | None] = [None] * n
        pos: list[torch.Tensor | None] = [None] * n
        for i in levels:
            f = vision.neck.fpn_layers[i](spatial)
            fpn[i] = f
            pos[i] = vision.neck.position_encoding(f.shape, f.device, f.dtype)
        return Sam3ImagePayload(tuple(fpn), tuple(pos), presence_only=len(levels) < n)

    def _geometry_token(self, payload: Sam3ImagePayload) -> torch.Tensor:
        lvl = self.presence_level
        return geometry_cls_token(self.model, payload.fpn[lvl], payload.pos[lvl])

    def _image_prefix(self, payload: Sam3ImagePayload) -> ImagePrefix:
        lvl = self.presence_level
        return prompt_pass.image_prefix(self.model, payload.fpn[lvl], payload.pos[lvl])

    def _pixel_terms(self, payload: Sam3ImagePayload) -> PixelTerms | None:
        """The payload's pixel-decoder terms with ``pixel_decoder="split"`` (computed at the first decode)."""
        if self.pixel_decoder != "split":
            return None
        if not payload.pixel_terms_tried:
            levels = prompt_pass.mask_levels(payload.fpn)  # type: ignore[arg-type]
            with torch.no_grad(), self._autocast():
                payload.pixel_terms = pixel_terms(self.model.mask_decoder.pixel_decoder, levels)
            payload.pixel_terms_tried = True
        return payload.pixel_terms

    def _prefix(self, payload: Sam3ImagePayload) -> ImagePrefix:
        """The payload's prefix, computed now (and kept) for features encoded without it."""
        if payload.prefix is None:
            with torch.no_grad(), self._autocast():
                payload.prefix = self._image_prefix(payload)
        return payload.prefix

    # -- texts -----------------------------------------------------------------------------------
    def _ensure_text(self, texts: Sequence[str]) -> None:
        missing = list(dict.fromkeys(t for t in texts if t not in self._text_cache))
        self._text_cache.update(self._run_text_encoder(missing))

    def _run_text_encoder(self, texts: Sequence[str]) -> dict[str, _TextEntry]:
        """Encode distinct ``texts`` (``TEXT_BATCH`` per forward); nothing is cached here."""
        entries: dict[str, _TextEntry] = {}
        for start in range(0, len(texts), TEXT_BATCH):
            chunk = list(texts[start:start + TEXT_BATCH])
            ids, attn = tokenize(self.tokenizer, chunk, self.text_length, self.device)
            with torch.no_grad(), self._autocast():  # no_grad: cached tensors stay ordinary tensors
                out = self.model.get_text_features(input_ids=ids, attention_mask=attn, return_dict=True)
                tok = input_token_embeddings(self.model, ids)
            self.counters["text_encoder_calls"] += 1
            valid = attn.bool()
            pooled_input = masked_mean(tok.float(), valid)
            pooled_hidden = masked_mean(out.last_hidden_state.float(), valid)
            feats = out.pooler_output.float()
            for i, text in enumerate(chunk):
                entries[text] = _TextEntry(feats[i].clone(), valid[i].clone(), pooled_input[i].clone(), pooled_hidden[i].clone())
        return entries

    @staticmethod
    def _check_texts(texts: Sequence[str]) -> tuple[str, ...]:
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, not a single string")
        out = tuple(texts)
        bad = [t for t in out if not isinstance(t, str)]
        if bad:
            raise TypeError(f"texts must be strings, got {type(bad[0]).__name__}")
        return out

    def encode_text(
        self,
        texts: Sequence[str],
        extra_tokens: torch.Tensor | None = None,
        extra_mask: torch.Tensor | None = None,
        *,
        cache: bool = True,
    ) -> TextFeatures:
        """Prompt features of ``texts`` (cached by exact string), optionally with appended tokens.

        Args:
            texts: N prompts; each distinct string runs through the text encoder once per backend.
            cache: False = run the text encoder on every distinct string now and keep nothing (the same
                values; the SegEarth-OV-3 release re-encodes its prompts for every image).
            extra_tokens: float [N, E, D] tokens already in the prompt space (D = 256 real), appended
                after the 32 text positions.
            extra_mask: bool [N, E], True = attend (default all True).
        Returns:
            TextFeatures with features float32 [N, 32 + E, D] and mask bool [N, 32 + E] on the device.
        """
        texts = self._check_texts(texts)
        if cache:
            self._ensure_text(texts)
            table = self._text_cache
        else:
            table = self._run_text_encoder(list(dict.fromkeys(texts)))
        d = int(self.model.text_projection.out_features)
        if texts:
            feats = torch.stack([table[t].features for t in texts])
            mask = torch.stack([table[t].mask for t in texts])
        else:
            feats = torch.zeros(0, self.text_length, d, device=self.device)
            mask = torch.zeros(0, self.text_length, dtype=torch.bool, device=self.device)
        if extra_tokens is not None:
            extra = extra_tokens.to(self.device, torch.float32)
            if extra.ndim != 3 or extra.shape[0] != len(texts) or extra.shape[2] != d:
                raise ValueError(f"extra_tokens must be [N={len(texts)}, E, {d}], got {tuple(extra.shape)}")
            if extra_mask is None:
                emask = torch.ones(extra.shape[:2], dtype=torch.bool, device=self.device)
            else:
                emask = extra_mask.to(self.device).bool()
                if tuple(emask.shape) != tuple(extra.shape[:2]):
                    raise ValueError(f"extra_mask must be [{extra.shape[0]}, {extra.shape[1]}], got {tuple(emask.shape)}")
            feats = torch.cat([feats, extra], dim=1)
            mask = torch.cat([mask, emask], dim=1)
        elif extra_mask is not None:
            raise ValueError("extra_mask given without extra_tokens")
        return TextFeatures(texts, feats, mask)

    def text_embeddings_1024(self, texts: Sequence[str], pooling: str = "input") -> torch.Tensor:
        """One vector per text before the 1024 -> 256 projection, mean over valid (non-padding) tokens.

        Args:
            texts: N strings (encoded once and cached, sharing the cache of :meth:`encode_text`).
            pooling: "input" (default) = the token embeddings fed to the text transformer, which is what
                the ActiveSAM release pools (``language_embeds`` of SAM 3's VETextEncoder);
                "hidden" = the text encoder's final hidden states.
        Returns:
            float32 [N, H_text] (1024 real) on the device.
        """
        texts = self._check_texts(texts)
        if pooling not in ("input", "hidden"):
            raise ValueError(f"pooling must be 'input' or 'hidden', got {pooling!r}")
        self._ensure_text(texts)
        if not texts:
            return torch.zeros(0, int(self.config.text_config.hidden_size), device=self.device)
        attr = "pooled_input" if pooling == "input" else "pooled_hidden"
        return torch.stack([getattr(self._text_cache[t], attr) for t in texts])

    @torch.no_grad()
    def project(self, x: torch.Tensor) -> torch.Tensor:
        """SAM 3's text projection (linear with bias): float [..., H_text] -> float32 [..., D]."""
        layer = self.model.text_projection
        return layer(x.to(device=self.device, dtype=layer.weight.dtype)).float()

    # -- prompts x image -------------------------------------------------------------------------
    def _bucketed(self, kind: str, indices: Sequence[int], bucket_size: int, fn: Callable[[list[int]], T]) -> Iterator[tuple[list[int], T]]:
        """Run ``fn`` on contiguous chunks of ``indices``; on CUDA OOM halve the chunk and retry."""
        idx = [int(i) for i in indices]
        if bucket_size < 1:
            raise ValueError(f"bucket_size must be >= 1, got {bucket_size}")
        size = min(int(bucket_size), self.bucket_caps.get(kind, int(bucket_size)))
        pos = 0
        while pos < len(idx):
            chunk = idx[pos:pos + size]
            oom = False
            try:
                out = fn(chunk)
            except torch.cuda.OutOfMemoryError:
                if size == 1:
                    raise
                oom = True
            if oom:  # retry outside the except block so the failed bucket's tensors can be freed
                size = max(1, size // 2)
                self.bucket_caps[kind] = size
                self.counters["oom_backoffs"] += 1
                log.warning("CUDA out of memory in a %s bucket of %d prompts; retrying with %d", kind, len(chunk), size)
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                continue
            yield chunk, out
            pos += len(chunk)

    def _select(self, text: TextFeatures, chunk: list[int], payload: Sam3ImagePayload) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt features [n, L(+1), D] and mask [n, L(+1)] of ``chunk``, with the geometry token appended."""
        n = len(text)
        bad = [i for i in chunk if not 0 <= i < n]
        if bad:
            raise IndexError(f"prompt index {bad[0]} out of range for {n} prompts")
        idx = torch.as_tensor(chunk, dtype=torch.long, device=self.device)
        feats = text.features.to(self.device).index_select(0, idx)
        mask = text.mask.to(self.device).bool().index_select(0, idx)
        if payload.geometry_token is not None:
            k = len(chunk)
            feats = torch.cat([feats, payload.geometry_token.to(feats.dtype).expand(k, -1, -1)], dim=1)
            mask = torch.cat([mask, torch.ones(k, 1, dtype=torch.bool, device=mask.device)], dim=1)
        return feats, mask

    @staticmethod
    def _payload(features: ImageFeatures) -> Sam3ImagePayload:
        if not isinstance(features.payload, Sam3ImagePayload):
            raise TypeError("features must come from Sam3Backend.encode_image")
        return features.payload

    def _forward_bucket(self, payload: Sam3ImagePayload, feats: torch.Tensor, mask: torch.Tensor) -> Any:
        """One ``Sam3Model`` forward on the image features expanded to the bucket (``once_per_image=False``)."""
        from transformers.modeling_outputs import BaseModelOutputWithPooling
        from transformers.models.sam3.modeling_sam3 import Sam3VisionEncoderOutput

        n = feats.shape[0]
        vision = Sam3VisionEncoderOutput(
            fpn_hidden_states=tuple(f.expand(n, -1, -1, -1) for f in payload.fpn),  # views; the model copies them
            fpn_position_encoding=tuple(p.expand(n, -1, -1, -1) for p in payload.pos),
        )
        return self.model(vision_embeds=vision, text_embeds=BaseModelOutputWithPooling(pooler_output=feats), attention_mask=mask)

    def _decode_bucket(self, payload: Sam3ImagePayload, text: TextFeatures, chunk: list[int]) -> Decoded:
        feats, mask = self._select(text, chunk, payload)
        n = len(chunk)
        with torch.no_grad(), self._autocast():
            if self.once_per_image:
                out: Any = prompt_pass.decode_prompts(self.model, payload.fpn, self._prefix(payload), feats, mask,  # type: ignore[arg-type]
                                                      self._pixel_terms(payload))
            else:
                out = self._forward_bucket(payload, feats, mask)
        self.counters["decoder_calls"] += 1
        presence_logits = out.presence_logits.float().reshape(n)
        logits = out.pred_logits.float()
        presence = torch.sigmoid(presence_logits)
        return Decoded(
            mask_logits=out.pred_masks.float(),
            scores=torch.sigmoid(logits) * presence[:, None],
            semantic_logits=out.semantic_seg.float()[:, 0],
            presence=presence,
            logits=logits,
            presence_logits=presence_logits,
        )

    def decode_iter(self, features: ImageFeatures, text: TextFeatures, indices: Sequence[int],
                    bucket_size: int) -> Iterator[tuple[list[int], Decoded]]:
        """Like :meth:`decode`, one (prompt indices, Decoded) pair per decoder call, to bound memory."""
        payload = self._payload(features)
        if payload.presence_only:
            raise ValueError("these image features were encoded with presence_only=True; encode again to decode")
        yield from self._bucketed("decode", indices, bucket_size, lambda c: self._decode_bucket(payload, text, c))

    def decode(self, features: ImageFeatures, text: TextFeatures, indices: Sequence[int], bucket_size: int) -> Decoded:
        """Full decode of prompts ``text[indices]``, one decoder call per contiguous bucket.

        Returns:
            Decoded (float32, rows in the order of ``indices``): mask_logits [n, Q, h, w], scores [n, Q],
            semantic_logits [n, h, w], presence [n]; h = w = size / 14 * 4 (288 at 1008).
        """
        parts = [d for _, d in self.decode_iter(features, text, indices, bucket_size)]
        if not parts:
            payload = self._payload(features)
            h, w = payload.fpn[0].shape[-2:]
            z = torch.zeros
            return Decoded(z(0, self.num_queries, h, w, device=self.device), z(0, self.num_queries, device=self.device),
                           z(0, h, w, device=self.device), z(0, device=self.device),
                           z(0, self.num_queries, device=self.device), z(0, device=self.device))
        if len(parts) == 1:
            return parts[0]
        return Decoded(*(torch.cat([getattr(p, f) for p in parts]) for f in DECODED_FIELDS))

    def _presence_bucket(self, payload: Sam3ImagePayload, text: TextFeatures, chunk: list[int]) -> torch.Tensor:
        feats, mask = self._select(text, chunk, payload)
        n = len(chunk)
        lvl = self.presence_level
        with torch.no_grad(), self._autocast():
            if self.once_per_image:
                logits = prompt_pass.presence_logits(self.model, self._prefix(payload), feats, mask)
            else:
                enc = self.model.detr_encoder(
                    vision_features=[payload.fpn[lvl].expand(n, -1, -1, -1)], text_features=feats,
                    vision_pos_embeds=[payload.pos[lvl].expand(n, -1, -1, -1)], text_mask=mask,
                )
                logits = self.model.detr_decoder(
                    vision_features=enc.last_hidden_state, text_features=enc.text_features,
                    vision_pos_encoding=enc.pos_embeds_flattened, text_mask=mask, spatial_shapes=enc.spatial_shapes,
                ).presence_logits[-1]
        self.counters["presence_calls"] += 1
        return torch.sigmoid(logits.float()).reshape(n)

    def presence(self, features: ImageFeatures, text: TextFeatures, indices: Sequence[int], bucket_size: int) -> torch.Tensor:
        """Presence probabilities float32 [n] of ``text[indices]``, skipping the mask decoder.

        ViT -> 1x FPN level -> DETR encoder -> DETR decoder (last layer's presence token), one call per
        bucket; equal to the presence of :meth:`decode` / the full forward on the same features.
        """
        payload = self._payload(features)
        if payload.fpn[self.presence_level] is None:
            raise ValueError("image features lack the 1x FPN level")
        parts = [p for _, p in self._bucketed("presence", indices, bucket_size, lambda c: self._presence_bucket(payload, text, c))]
        return torch.cat(parts) if parts else torch.zeros(0, device=self.device)
