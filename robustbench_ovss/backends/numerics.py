"""Which numerics a loaded ``Sam3Model`` runs: Meta's SAM 3 (the reference methods') or transformers'.

transformers' SAM 3 and Meta's (facebookresearch/sam3, vendored by the ActiveSAM and SegEarth-OV-3
releases) compute the same network from the same weights except in two places that change outputs
(measured side by side on identical random full-size weights; docs/backend.md has the table):

1. **LayerNorm epsilon.** Meta builds every LayerNorm of the image model with eps 1e-5 (the ViT through
   ``partial(nn.LayerNorm, eps=1e-5)`` in ``sam3/model/vitdet.py``; everything else with the
   ``nn.LayerNorm`` default). transformers' ViT reads its eps from
   ``vision_config.backbone_config.layer_norm_eps`` (default 1e-6; ``convert_sam3_to_hf.py`` keeps the
   default, so hub checkpoints carry 1e-6); its other SAM 3 LayerNorms are built with the 1e-5 default
   whatever their configs say, and the CLIP text encoder's default is 1e-5.
2. **Presence clamp.** transformers' DETR decoder clamps the presence logit to +-10
   (``Sam3DETRDecoder.clamp_presence_logit_max_val``); Meta's decoder computes that clamp out of place
   and discards it, so the references see the raw logit.

Under bf16 autocast (CUDA) a third place differs: Meta's DETR decoder layer runs its feed-forward block
with autocast disabled (``TransformerDecoderLayer.forward_ffn`` in ``sam3/model/decoder.py``), i.e. in
fp32 on its fp32 residual stream; transformers' ``Sam3DetrDecoderLayer.mlp`` runs in bf16 there.

"meta" therefore sets every ``nn.LayerNorm`` of the model to eps 1e-5, lifts the clamp (a clamp to
+-inf is the identity), runs each DETR decoder layer's MLP with autocast disabled, and on an
Ampere-or-newer CUDA device enables TF32 matmuls and convolutions, as Meta's model builder does at
import (``_setup_tf32`` in ``sam3/model_builder.py``). "transformers" leaves the model as transformers
built it from its config. Without autocast (fp32, every CPU run) the MLP change is a no-op.

A checkpoint says which numerics it was built or trained with in its config.json key ``ovss_numerics``
("meta" when absent: any checkpoint from Meta or the hub). The builtin checkpoints of this project were
trained with transformers' numerics and say "transformers".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

NUMERICS = ("auto", "meta", "transformers")
NUMERICS_CONFIG_KEY = "ovss_numerics"
META_LAYER_NORM_EPS = 1e-5
TRANSFORMERS_PRESENCE_CLAMP = 10.0


def checkpoint_numerics(config: Any) -> str:
    """The numerics a checkpoint declares (config key ``ovss_numerics``; absent = "meta")."""
    value = getattr(config, NUMERICS_CONFIG_KEY, None)
    if value is None:
        return "meta"
    if value not in ("meta", "transformers"):
        raise ConfigError(f"checkpoint config.json: {NUMERICS_CONFIG_KEY} must be 'meta' or 'transformers', got {value!r}")
    return str(value)


def resolve_numerics(requested: str, config: Any) -> str:
    """``[backend] numerics`` -> "meta" | "transformers" ("auto" follows the checkpoint)."""
    if requested not in NUMERICS:
        raise ConfigError(f"[backend] numerics must be one of {', '.join(NUMERICS)}, got {requested!r}")
    return checkpoint_numerics(config) if requested == "auto" else requested


@dataclass(frozen=True)
class NumericsReport:
    """What :func:`apply_numerics` set.

    Attributes:
        numerics: "meta" | "transformers".
        layer_norms: number of ``nn.LayerNorm`` modules whose eps was changed.
        presence_clamp: the presence-logit clamp now in force (inf = none).
        fp32_decoder_mlps: DETR decoder layers whose MLP now runs outside autocast.
        tf32_matmul, tf32_cudnn: torch's TF32 flags after the call (process-wide).
    """

    numerics: str
    layer_norms: int
    presence_clamp: float
    fp32_decoder_mlps: int
    tf32_matmul: bool
    tf32_cudnn: bool

    def to_dict(self) -> dict[str, Any]:
        return {"numerics": self.numerics, "layer_norms_changed": self.layer_norms,
                "presence_clamp": None if math.isinf(self.presence_clamp) else self.presence_clamp,
                "fp32_decoder_mlps": self.fp32_decoder_mlps,
                "tf32_matmul": self.tf32_matmul, "tf32_cudnn": self.tf32_cudnn}


def apply_numerics(model: Any, numerics: str, device: Any = None) -> NumericsReport:
    """Make a freshly loaded ``Sam3Model`` compute with ``numerics`` ("meta" or "transformers").

    "meta": eps 1e-5 on every LayerNorm, no presence clamp, the DETR decoder layers' MLPs outside
    autocast, TF32 on for a CUDA device of compute capability >= 8 (Meta's builder's rule).
    "transformers": nothing changes.
    """
    import torch

    if numerics not in ("meta", "transformers"):
        raise ValueError(f"numerics must be 'meta' or 'transformers', got {numerics!r}")
    changed = mlps = 0
    decoder = model.detr_decoder
    if numerics == "meta":
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm) and module.eps != META_LAYER_NORM_EPS:
                module.eps = META_LAYER_NORM_EPS
                changed += 1
        decoder.clamp_presence_logit_max_val = math.inf
        for layer in decoder.layers:
            if not getattr(layer.mlp, "_ovss_outside_autocast", False):
                layer.mlp.forward = _outside_autocast(layer.mlp.forward)
                layer.mlp._ovss_outside_autocast = True
            mlps += 1
        dev = torch.device(device) if device is not None else None
        if dev is not None and dev.type == "cuda" and torch.cuda.get_device_capability(dev)[0] >= 8:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
    return NumericsReport(
        numerics=numerics, layer_norms=changed, fp32_decoder_mlps=mlps,
        presence_clamp=float(getattr(decoder, "clamp_presence_logit_max_val", math.inf)),
        tf32_matmul=bool(torch.backends.cuda.matmul.allow_tf32), tf32_cudnn=bool(torch.backends.cudnn.allow_tf32),
    )


def _outside_autocast(forward: Any) -> Any:
    """``forward`` run with autocast disabled on its input's device type (Meta's ``forward_ffn``)."""
    import functools

    import torch

    @functools.wraps(forward)
    def run(hidden: Any, *args: Any, **kwargs: Any) -> Any:
        with torch.autocast(device_type=hidden.device.type, enabled=False):
            return forward(hidden, *args, **kwargs)

    return run
