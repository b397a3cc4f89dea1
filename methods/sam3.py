"""``sam3``: vanilla SAM 3 over the full vocabulary, instance outputs only.

This is *our* definition of the "SAM 3" row: the ActiveSAM release ships no code for it. It is the
SegEarth-OV3 pipeline (:mod:`.segearth_ov3`) without the semantic head: per prompt, the kept instance
masks (score ``sigmoid(pred_logits) * presence`` above the per-dataset ``confidence_threshold``) give
``max_q sigmoid(mask_q) * score_q``, times presence; max over aliases, argmax, ``prob_thd`` background.
"""

from __future__ import annotations

from typing import Any, ClassVar

from robustbench_ovss.registry import METHODS

from .segearth_ov3 import FullVocabularyFusion

__all__ = ["VanillaSAM3"]


@METHODS.register("sam3")
class VanillaSAM3(FullVocabularyFusion):
    """Vanilla SAM 3 (our definition): instance masks x score x presence, no semantic head."""

    name = "sam3"
    version = "2"  # 2: postprocess_dtype; Meta's numerics in the backend
    description = "vanilla SAM 3 (our definition): instance masks x score x presence, full vocabulary"
    use_semantic: ClassVar[bool] = False
    defaults: ClassVar[dict[str, Any]] = {
        "confidence_threshold": None,  # None = SegEarth-OV3's per-dataset table (methods/defaults.py)
        "prob_thd": None,  # None = the dataset's prob_thd
        "bucket_size": 1,  # prompts per decoder pass; "auto" = by device (methods/common.py)
        "postprocess_dtype": "auto",  # auto = bf16 under a bf16 (autocast) run, as SegEarth-OV-3's release; else fp32
    }
