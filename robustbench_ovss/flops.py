"""``ovss-bench flops``: hardware-independent cost per image of each method on the real SAM 3 architecture.

The real architecture (``Sam3Config()`` defaults, 840 M parameters) is built on the meta device: no
weights, no memory, no arithmetic; ``torch.utils.flop_counter.FlopCounterMode`` counts the FLOPs of the
operations it would run. Per-prompt work does not depend on the other prompts (DESIGN §5), so each
component is counted once and scaled:

- image encoder (ViT + FPN neck + the geometry encoder's CLS token + the prompt-independent start of the
  DETR encoder and decoder, :func:`~robustbench_ovss.backends.prompt_pass.image_prefix`) once per resolution
  (1008 full; the 672 preview counts ViT + the 1x FPN level only, as
  ``encode_image(..., presence_only=True)`` computes);
- one prompt's full decode (the rest of the DETR encoder, DETR decoder, scoring, mask decoder) at the
  full resolution, as :func:`~robustbench_ovss.backends.prompt_pass.decode_prompts` runs it;
- one prompt's presence-only pass (DETR encoder + decoder) at the preview resolution;
- the text encoder per prompt, reported apart: it is cached setup work, not per-image work.

Per image: ``segearth-ov3`` and ``sam3`` = ViT@R + V x decode@R; ``activesam`` = (ViT@2R/3 + V x
presence@2R/3 when V > 40) + ViT@R + K x decode@R with the 4 appended tokens (K = active-set size;
default: what ActiveSAM's quantile rule keeps of V distinct preview scores, :func:`default_active`, e.g.
30 of ADE20K's 150 prompts). Counting runs without attention masks (the meta device cannot evaluate the mask
shortcut); masking changes no matmul size, so the counts are those of the masked run.

``FlopModel(once_per_image=False)`` counts the backend's previous path instead, one ``Sam3Model`` forward
per prompt (the first encoder layer's self-attention per prompt, scoring of every decoder layer, the box
head), for comparison.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from .errors import ConfigError, OvssError

TEXT_LENGTH = 32
GEOMETRY_TOKENS = 1  # the image-conditioned geometry CLS token every prompt carries (Meta's SAM 3)
PROMPT_LENGTH = TEXT_LENGTH + GEOMETRY_TOKENS
EXPANSION_TOKENS = 4  # ActiveSAM's 2 neighbour + 2 hypernym tokens (full-resolution pass only)
MAX_ACTIVE = 40
QUANTILE = 0.8
REFERENCE = "segearth-ov3"


class FlopModel:
    """FLOP counts of SAM 3's components for one architecture, cached per resolution.

    Args:
        config: a ``Sam3Config`` (default: the real SAM 3 architecture).
        once_per_image: count the backend's default path (image-only work once per image); False = one
            full ``Sam3Model`` forward per prompt (``Sam3Backend(once_per_image=False)``).
        pixel_decoder: "reference" (default: what runs under bf16, the CUDA default) or "split" (the
            pixel decoder's image-only half counted once per image, :mod:`.backends.pixel_decoder`: what
            runs in full fp32); with ``once_per_image`` only.
    """

    def __init__(self, config: Any = None, once_per_image: bool = True, pixel_decoder: str = "reference"):
        import torch
        from transformers import Sam3Config, Sam3Model

        from .backends.resolution import ResolutionSwitch

        self.config = config if config is not None else Sam3Config()
        with torch.device("meta"):
            self.model = Sam3Model(self.config).eval()
        self.switch = ResolutionSwitch(self.model.vision_encoder.backbone)
        self.native_size = self.switch.native_size
        self.once_per_image = bool(once_per_image)
        if pixel_decoder not in ("reference", "split"):
            raise ValueError(f"pixel_decoder must be 'reference' or 'split', got {pixel_decoder!r}")
        self.split_pixels = pixel_decoder == "split" and self.once_per_image
        self._terms: dict[int, Any] = {}
        self._hook = self.model.detr_encoder.register_forward_hook(_host_spatial_shapes, with_kwargs=True)
        self._vision: dict[tuple[int, bool], tuple[int, Any, Any]] = {}

    @staticmethod
    def _count(fn: Any) -> int:
        import torch
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            fn()
        return int(counter.get_total_flops())

    def _encode(self, size: int, presence_only: bool) -> tuple[int, Any, Any]:
        """(FLOPs, vision output, image prefix or None) of one image encoding; the outputs feed the
        per-prompt counts."""

        import torch
        from transformers.models.sam3.modeling_sam3 import Sam3VisionEncoderOutput

        from .backends.pixel_decoder import pixel_terms
        from .backends.prompt_pass import image_prefix, mask_levels
        from .backends.sam3 import geometry_cls_token

        key = (size, presence_only)
        if key not in self._vision:
            x = torch.empty(1, 3, size, size, device="meta")
            vision = self.model.vision_encoder
            box: dict[str, Any] = {}

            def run() -> None:
                with self.switch.at(size):
                    if not presence_only:
                        out = box["out"] = vision(x)
                        f, pos = out.fpn_hidden_states[-2], out.fpn_position_encoding[-2]
                    else:
                        hidden = vision.backbone(x).last_hidden_state
                        g = size // self.switch.patch_size
                        spatial = hidden.view(1, g, g, -1).permute(0, 3, 1, 2)
                        f = vision.neck.fpn_layers[len(vision.neck.fpn_layers) - 2](spatial)
                        pos = vision.neck.position_encoding(f.shape, f.device, f.dtype)
                        # the presence pass reads level -2, as the full forward does
                        box["out"] = Sam3VisionEncoderOutput(fpn_hidden_states=(f, None), fpn_position_encoding=(pos, None))
                    geometry_cls_token(self.model, f, pos)
                    if self.once_per_image:
                        box["prefix"] = image_prefix(self.model, f, pos)
                    if self.split_pixels and not presence_only:
                        levels = mask_levels(tuple(box["out"].fpn_hidden_states))
                        box["terms"] = pixel_terms(self.model.mask_decoder.pixel_decoder, levels)

            flops = self._count(run)
            self._vision[key] = (flops, box["out"], box.get("prefix"))
            if not presence_only:
                self._terms[size] = box.get("terms")
        return self._vision[key]

    def image(self, size: int, presence_only: bool = False) -> int:
        """FLOPs of one image encoding at ``size``: ViT + all FPN levels (or only the 1x level), the
        geometry token and, with ``once_per_image``, the prompt-independent start of the DETR encoder and
        decoder (and with ``pixel_decoder="split"`` the pixel decoder's image-only half)."""
        return self._encode(size, presence_only)[0]

    @lru_cache(maxsize=None)
    def prefix(self, size: int) -> int:
        """FLOPs of the prompt-independent start of the DETR encoder and decoder at ``size``
        (:func:`~robustbench_ovss.backends.prompt_pass.image_prefix`; part of :meth:`image` with
        ``once_per_image``, of every prompt's decode and presence pass without)."""
        from .backends.prompt_pass import image_prefix

        vision = self._encode(size, True)[1]
        return self._count(lambda: image_prefix(self.model, vision.fpn_hidden_states[0], vision.fpn_position_encoding[0]))

    def _text(self, length: int) -> Any:
        import torch
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        d = self.config.detr_encoder_config.hidden_size
        return BaseModelOutputWithPooling(pooler_output=torch.empty(1, length, d, device="meta"))

    @lru_cache(maxsize=None)
    def decode(self, size: int, text_length: int = PROMPT_LENGTH) -> int:
        """FLOPs of one prompt's full decode on image features of ``size``."""
        _, vision, prefix = self._encode(size, False)
        text = self._text(text_length)
        if prefix is None:
            return self._count(lambda: self.model(vision_embeds=vision, text_embeds=text, attention_mask=None))
        from .backends.prompt_pass import decode_prompts

        terms = self._terms.get(size)
        return self._count(lambda: decode_prompts(self.model, vision.fpn_hidden_states, prefix, text.pooler_output, None, terms))

    @lru_cache(maxsize=None)
    def presence(self, size: int, text_length: int = PROMPT_LENGTH) -> int:
        """FLOPs of one prompt's presence-only pass (1x FPN level -> DETR encoder -> DETR decoder)."""
        _, vision, prefix = self._encode(size, True)
        text = self._text(text_length).pooler_output
        lvl = len(vision.fpn_hidden_states) - 2
        if prefix is not None:
            from .backends.prompt_pass import presence_logits

            return self._count(lambda: presence_logits(self.model, prefix, text, None))

        def run() -> None:
            enc = self.model.detr_encoder(vision_features=[vision.fpn_hidden_states[lvl]], text_features=text,
                                          vision_pos_embeds=[vision.fpn_position_encoding[lvl]], text_mask=None)
            self.model.detr_decoder(vision_features=enc.last_hidden_state, text_features=enc.text_features,
                                    vision_pos_encoding=enc.pos_embeds_flattened, text_mask=None,
                                    spatial_shapes=enc.spatial_shapes)

        return self._count(run)

    @lru_cache(maxsize=None)
    def text(self, text_length: int = TEXT_LENGTH) -> int:
        """FLOPs of encoding one prompt with the text encoder (setup work, cached by the backend)."""
        import torch

        ids = torch.zeros(1, text_length, dtype=torch.long, device="meta")
        return self._count(lambda: self.model.get_text_features(input_ids=ids))


def _host_spatial_shapes(module: Any, args: Any, kwargs: Mapping[str, Any], out: Any) -> Any:
    """The DETR decoder reads grid sizes with ``.item()``; keep them on the host under the meta device."""
    import torch

    feats = kwargs.get("vision_features", args[0] if args else None)
    out.spatial_shapes = torch.tensor([list(f.shape[-2:]) for f in feats], dtype=torch.long)
    return out


def preview_resolution(size: int, patch: int = 14) -> int:
    """2/3 of ``size`` rounded to the patch grid (1008 -> 672, 336 -> 224)."""
    return max(patch, round(size * 2 / 3 / patch) * patch)


def default_active(vocab_size: int, quantile: float = QUANTILE, max_active: int = MAX_ACTIVE) -> int:
    """Active-set size ActiveSAM's rule gives for ``vocab_size`` distinct preview scores.

    The rule itself (:func:`robustbench_ovss.methods.activesam.select_active`: scores >= the
    ``quantile`` by linear interpolation, at most ``max_active``, all prompts when V <= max_active) is
    applied to V distinct scores; on a real image ties are rare, so this is the count decoded per image.
    """
    import torch

    from .methods.activesam import select_active

    scores = torch.arange(int(vocab_size), dtype=torch.float32)
    return int(select_active(scores, quantile, max_active).numel())


def method_flops(fm: FlopModel, vocab_size: int, active: int | None = None, resolution: int | None = None) -> dict[str, dict[str, float]]:
    """FLOPs per image of each built-in method.

    Returns:
        method -> {"flops": total, "prompts_decoded": n, "prompts_previewed": n}.
    """
    if vocab_size < 1:
        raise ConfigError(f"--vocab-size must be >= 1, got {vocab_size}")
    size = resolution or fm.native_size
    preview = preview_resolution(size, fm.switch.patch_size)
    k = default_active(vocab_size) if active is None else min(int(active), vocab_size)
    if k < 1:
        raise ConfigError(f"--active must be >= 1, got {active}")
    full = fm.image(size) + vocab_size * fm.decode(size, PROMPT_LENGTH)
    previewed = vocab_size if vocab_size > MAX_ACTIVE else 0
    active_cost = fm.image(size) + k * fm.decode(size, PROMPT_LENGTH + EXPANSION_TOKENS)
    if previewed:
        active_cost += fm.image(preview, presence_only=True) + previewed * fm.presence(preview, PROMPT_LENGTH)
    return {
        "segearth-ov3": {"flops": full, "prompts_decoded": vocab_size, "prompts_previewed": 0},
        "sam3": {"flops": full, "prompts_decoded": vocab_size, "prompts_previewed": 0},
        "activesam": {"flops": active_cost, "prompts_decoded": k, "prompts_previewed": previewed},
    }


def dataset_prompt_count(name: str) -> int:
    """Number of prompts of a registered dataset's packaged vocabulary: one per alias over all label
    ids (one per class for the large-vocabulary sets, which prompt each class by its first name)."""
    from .datasets.vocabulary import packaged_vocabulary
    from .registry import DATASETS

    cls = DATASETS.get(name)  # an unknown name: one line with "did you mean"
    vocab_name = getattr(cls, "vocab_name", "") or ("voc21" if name == "voc-sample" else name)
    try:
        vocab = packaged_vocabulary(vocab_name)
    except OvssError:
        raise ConfigError(f"dataset {name!r} has no packaged vocabulary (its classes are built at run time); "
                          "use --vocab-size N") from None  # fmt: skip
    first_only = bool(getattr(cls, "first_name_only", False))
    return len(vocab) if first_only else sum(len(aliases) for aliases in vocab)


def render_table(rows: Mapping[str, Mapping[str, float]], reference: str = REFERENCE) -> str:
    """Markdown table: method, prompts, TFLOPs/image, ratio to the reference (reference / method)."""
    ref = rows[reference]["flops"]
    lines = ["| method | prompts decoded | prompts previewed | TFLOPs/image | FLOP ratio vs " + reference + " |",
             "|---|---:|---:|---:|---:|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['prompts_decoded']} | {r['prompts_previewed']} | {r['flops'] / 1e12:.2f} | "
                     f"{ref / r['flops']:.2f}x |")
    return "\n".join(lines)


def cli_flops(args: Any) -> int:
    """``ovss-bench flops [--dataset D | --vocab-size N] [--active K] [--resolution R] [--pixel-decoder P]``."""
    if getattr(args, "dataset", None):
        vocab_size, source = dataset_prompt_count(args.dataset), f"dataset {args.dataset}"
    elif getattr(args, "vocab_size", None) is not None:
        if args.vocab_size < 1:
            raise ConfigError(f"--vocab-size must be >= 1, got {args.vocab_size}")
        vocab_size, source = int(args.vocab_size), "vocabulary size"
    else:
        vocab_size, source = 150, "vocabulary size (default, ADE20K)"
    if getattr(args, "active", None) is not None and args.active < 1:
        raise ConfigError(f"--active must be >= 1, got {args.active}")
    resolution = int(getattr(args, "resolution", None) or 1008)
    fm = FlopModel(pixel_decoder=getattr(args, "pixel_decoder", None) or "reference")
    if resolution % fm.switch.patch_size:
        raise ConfigError(f"--resolution {resolution} must be a multiple of the patch size {fm.switch.patch_size}")
    rows = method_flops(fm, vocab_size, getattr(args, "active", None), resolution)
    preview = preview_resolution(resolution, fm.switch.patch_size)
    print(f"SAM 3 (real architecture, meta device), {source}: {vocab_size} prompts, resolution {resolution}, preview {preview}, "
          f"pixel decoder {'split' if fm.split_pixels else 'reference'}")
    print(render_table(rows))
    k = rows["activesam"]["prompts_decoded"]
    if getattr(args, "active", None) is None:
        print(f"activesam decodes K = {k} of {vocab_size} prompts: the {QUANTILE:g}-quantile rule (at most {MAX_ACTIVE}; "
              f"all when V <= {MAX_ACTIVE}) on distinct preview scores; --active K sets another K")
    else:
        print(f"activesam decodes K = {k} of {vocab_size} prompts (--active)")
    print()
    print(f"components: image encoder @{resolution} {fm.image(resolution) / 1e12:.3f} TFLOPs; "
          f"preview encoder @{preview} (ViT + 1x FPN level) {fm.image(preview, True) / 1e12:.3f}; "
          f"decode/prompt {fm.decode(resolution) / 1e12:.3f} "
          f"(+{EXPANSION_TOKENS} tokens {fm.decode(resolution, PROMPT_LENGTH + EXPANSION_TOKENS) / 1e12:.3f}); "
          f"presence/prompt @{preview} {fm.presence(preview) / 1e12:.3f}; "
          f"text encoder/prompt (setup, cached) {fm.text() / 1e9:.1f} GFLOPs")
    print(f"the image-only start of the DETR encoder (its first self-attention) and decoder (its first layer up to "
          f"the text) runs once per image "
          f"(in the image encoder above): {fm.prefix(resolution) / 1e9:.1f} GFLOPs @{resolution}, "
          f"{fm.prefix(preview) / 1e9:.1f} @{preview}, which a forward per prompt would repeat for every prompt")
    speedup = rows[REFERENCE]["flops"] / rows["activesam"]["flops"]
    if not math.isfinite(speedup):
        raise ConfigError("FLOP count failed")
    return 0
