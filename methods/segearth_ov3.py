"""``segearth-ov3``: SegEarth-OV3 (arXiv 2512.08730) on natural-image benchmarks (DESIGN §6).

Every alias of the full vocabulary is a prompt, decoded one prompt per decoder pass (``bucket_size``
1, as the reference's per-prompt loop; a larger bucket gives the same output faster) on image features
encoded once at the backend's native resolution. Fusion (:mod:`.fusion`): instance masks scored
``sigmoid(pred_logits) * presence`` above the per-dataset ``confidence_threshold``, max with the
semantic head, times presence, max over aliases, argmax, and pixels whose best score is below
``prob_thd`` become background (only where the dataset has a background class).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import torch

from robustbench_ovss.backends.base import Decoded
from robustbench_ovss.errors import ConfigError
from robustbench_ovss.method import MethodContext
from robustbench_ovss.registry import METHODS

from .common import Sam3MethodBase, contiguous_buckets
from .defaults import reference_confidence
from .fusion import POSTPROCESS_DTYPES, ClassScoreAccumulator, fuse_prompts, instance_scores, postprocess_dtype, threshold_background
from .streaming import StreamingLabels

__all__ = ["SegEarthOV3", "FullVocabularyFusion", "check_postprocess_dtype"]

DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16"}


def check_postprocess_dtype(method: str, value: Any) -> None:
    """ConfigError unless ``value`` is one of :data:`POSTPROCESS_DTYPES`."""
    if value not in POSTPROCESS_DTYPES:
        raise ConfigError(f"method {method!r}: param postprocess_dtype must be one of {', '.join(POSTPROCESS_DTYPES)}, got {value!r}")


class FullVocabularyFusion(Sam3MethodBase):
    """Decode every prompt of the vocabulary at full resolution and fuse (shared by segearth-ov3, sam3)."""

    use_semantic: ClassVar[bool] = True
    _numeric = {
        "confidence_threshold": (0.0, 1.0, False, True),
        "prob_thd": (0.0, 1.0, False, True),
    }

    def __init__(self, **params: Any):
        super().__init__(**params)
        check_postprocess_dtype(self.name, self.params["postprocess_dtype"])

    def setup(self, ctx: MethodContext) -> None:
        self._setup_common(ctx)
        conf = self.params["confidence_threshold"]
        self.conf = reference_confidence(ctx.dataset) if conf is None else float(conf)
        self.pp_dtype = postprocess_dtype(self.params["postprocess_dtype"], ctx.dtype)
        self.text = self.backend.encode_text(self.prompts)
        self._resolved = {"confidence_threshold": self.conf, "prob_thd": self.prob_thd,
                          "postprocess_dtype": DTYPE_NAMES[self.pp_dtype], "bucket_size": self.bucket}
        self._stats = {}

    @torch.inference_mode()
    def class_scores(self, image: np.ndarray) -> torch.Tensor:
        """Fused class scores float32 [C, H, W] of ``image``; sets the per-image stats.

        The dense score map (and the oracle of :meth:`predict`, which keeps only a running best)."""
        hw = self._check_image(image)
        acc = ClassScoreAccumulator(self.num_classes, hw, self.backend.device)
        for chunk, dec in self._decoded(image):
            semantic = dec.semantic_logits if self.use_semantic else None
            scores, presence = instance_scores(dec, self.pp_dtype)
            acc.add(fuse_prompts(dec.mask_logits, scores, semantic, presence, self.conf, hw), self._class_index(chunk))
        return acc.scores

    @torch.inference_mode()
    def predict(self, image: np.ndarray) -> torch.Tensor:
        """Labels int64 [H, W], equal to ``labels(class_scores(image))`` without the [C, H, W] map.

        A running per-pixel best score and its class (:mod:`.streaming`): prompts come in ascending class
        order (aliases of a class are consecutive) and a later prompt wins only with a strictly higher
        score, so ties go to the lowest class id as argmax gives them; the start (score 0, class 0) is
        argmax's answer where every class scores 0. Prompts, instances and semantic maps that provably
        cannot beat the running best are not resized (:mod:`.bounds`).
        """
        hw = self._check_image(image)
        stream = StreamingLabels(hw, self.backend.device, self.num_classes, second=False, conf=self.conf,
                                 dtype=self.pp_dtype)
        for chunk, dec in self._decoded(image):
            stream.add_bucket(dec, self._class_index(chunk), semantic=self.use_semantic)
        self.fusion_counts = stream.counts
        return stream.labels(self.prob_thd, self.bg_idx)

    def _decoded(self, image: np.ndarray) -> Iterator[tuple[list[int], Decoded]]:
        """Decode every prompt in buckets: (prompt indices, Decoded) per bucket, in prompt order; sets the
        per-image stats once all are decoded."""
        backend = self.backend
        bucket = self.bucket
        # the SegEarth-OV-3 release encodes its prompts again for every image (no text cache): same
        # values, but its speed includes the text encoder; the option reproduces that protocol
        text = backend.encode_text(self.prompts, cache=False) if self.params.get("reencode_text") else self.text
        feats = backend.encode_image(image)
        for chunk in contiguous_buckets(range(len(self.prompts)), bucket):
            yield chunk, backend.decode(feats, text, chunk, bucket)
        self._stats = {"prompts_decoded": len(self.prompts)}

    def labels(self, scores: torch.Tensor) -> torch.Tensor:
        """Label map int64 [H, W]: argmax, and ``bg_idx`` where the best score is below ``prob_thd``."""
        return threshold_background(scores, self.prob_thd, self.bg_idx)



@METHODS.register("segearth-ov3")
class SegEarthOV3(FullVocabularyFusion):
    """SegEarth-OV3: instance x score fused with the semantic head, times presence, full vocabulary."""

    name = "segearth-ov3"
    version = "2"  # 2: postprocess_dtype, reencode_text; Meta's numerics in the backend
    description = "SegEarth-OV3: SAM 3 instance + semantic heads x presence, full vocabulary, one prompt per pass"
    defaults: ClassVar[dict[str, Any]] = {
        "confidence_threshold": None,  # None = per-dataset reference table (methods/defaults.py)
        "prob_thd": None,  # None = the dataset's prob_thd
        "bucket_size": 1,  # prompts per decoder pass; 1 = the reference's per-prompt loop; "auto" = by device
        "reencode_text": False,  # True = encode the prompts again on every image, as the release (speed protocol)
        "postprocess_dtype": "auto",  # auto = bf16 under a bf16 (autocast) run, as the release on CUDA; else fp32
    }
    _switches = ("reencode_text",)
