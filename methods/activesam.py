"""``activesam``: ActiveSAM (arXiv 2606.16996) on a frozen SAM 3 (DESIGN §6).

Per dataset (``setup``, timed as setup work):

1. *Canonicalisation* (switch ``canonicalize``): every text the model encodes - prompts and hypernym
   phrases, in the preview and the full pass - goes through :func:`robustbench_ovss.vocab.canonicalize`.
2. *Prompt expansion* (switch ``expansion``): ``neighbor_tokens`` neighbour tokens then
   ``hypernym_tokens`` WordNet-hypernym tokens appended to every prompt of the full-resolution pass
   (:mod:`robustbench_ovss.vocab.expansion`); hypernyms are looked up on the canonicalised name, as
   the release does whatever the switch; missing ones are masked.

Per image (``predict``):

3. *Preview* (switch ``preview``): presence of every bare prompt (canonicalised, nothing appended) on
   the image encoded at ``preview_resolution`` (None = round(2/3 x the backend's native size): 672 on
   the real 1008 model), in buckets of ``bucket_size`` ("auto": 32 on CUDA, 8 on a CPU); skipped when
   the vocabulary has ``<= max_active`` prompts.
4. *Active set* :func:`select_active`: prompts scoring ``>=`` the ``quantile`` (0.8) of the presence
   scores, at most ``max_active`` (40), at least ``min_active`` (1).
5. *Full-resolution decoding* of the active prompts only, in contiguous buckets of ``bucket_size``
   ("auto": 32 on CUDA as the release; on a CPU 1 with one thread, 8 with more), one decoder call per
   bucket, fused as SegEarth-OV3 (:mod:`.fusion`) with ``confidence_threshold`` 0.3; prompts outside
   the active set score 0.
6. *Margin-aware background calibration* (switch ``mabc``) :func:`margin_calibration`; off = the plain
   ``prob_thd`` rule of SegEarth-OV3. No background rule where the dataset has no background class.

With the four switches off and the same confidence threshold the output equals ``segearth-ov3``'s.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import torch

from robustbench_ovss.backends.base import Decoded
from robustbench_ovss.errors import ConfigError
from robustbench_ovss.method import MethodContext
from robustbench_ovss.registry import METHODS
from robustbench_ovss.vocab import canonicalize as canonicalize_name

from .common import Sam3MethodBase, contiguous_buckets
from .defaults import ACTIVESAM_CONFIDENCE
from .fusion import ClassScoreAccumulator, fuse_prompts, instance_scores, postprocess_dtype, threshold_background
from .segearth_ov3 import DTYPE_NAMES, check_postprocess_dtype
from .streaming import StreamingLabels

__all__ = ["ActiveSAM", "select_active", "margin_calibration", "preview_size"]


# -- pure maths -----------------------------------------------------------------------------------
def select_active(
    presence: torch.Tensor, quantile: float = 0.8, max_active: int = 40, min_active: int = 1
) -> torch.LongTensor:
    """ActiveSAM's active prompt set A(I) from preview presence scores.

    Args:
        presence: float [N] presence probability per prompt.
        quantile: tau = ``torch.quantile(presence, quantile)`` (linear interpolation).
        max_active: keep at most this many (the top by score); also: N <= max_active keeps all.
        min_active: keep at least the top ``min_active`` prompts.
    Returns:
        int64 [K] sorted prompt indices. Ties in score go to the lower index.
    """
    scores = presence.detach().float().reshape(-1).cpu()
    n = scores.numel()
    if n <= max_active:
        return torch.arange(n, dtype=torch.long)
    order = torch.sort(scores, descending=True, stable=True).indices  # rank by score, lower index first
    tau = torch.quantile(scores, float(quantile))
    kept = order[scores[order] >= tau]
    if kept.numel() > max_active:
        kept = kept[:max_active]
    if kept.numel() < min_active:
        kept = order[: min(int(min_active), n)]
    return torch.sort(kept).values


def margin_calibration(
    scores: torch.Tensor, prob_thd: float, bg_idx: int | None, exponent: float = 1.25
) -> torch.LongTensor:
    """Margin-aware background calibration (MABC).

    Args:
        scores: float [C, H, W] class scores.
        prob_thd: the dataset's background threshold; the calibrated threshold is ``prob_thd ** exponent``.
        bg_idx: background label id; None = no background class (plain argmax).
        exponent: threshold exponent (1.25).
    Returns:
        int64 [H, W]: argmax over classes, with ``bg_idx`` where ``c = s1 * sqrt(max(s1 - s2, 0))``
        is below ``prob_thd ** exponent`` (s1 >= s2 the two best class scores). Plain argmax when
        ``bg_idx`` is None, ``prob_thd <= 0`` or C < 2 (as the release).
    """
    pred = scores.argmax(dim=0)
    if bg_idx is None or prob_thd <= 0 or scores.shape[0] < 2:
        return pred
    top2 = torch.topk(scores.float(), k=2, dim=0).values
    s1, s2 = top2[0], top2[1]
    confidence = s1 * (s1 - s2).clamp_min(0).sqrt()
    pred[confidence < float(prob_thd) ** float(exponent)] = int(bg_idx)
    return pred


def _accepts_kw(fn: Any, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def preview_size(native_size: int, resolution: int | None = None) -> int:
    """Preview resolution: ``resolution`` or round(2/3 * native) (1008 -> 672, 336 -> 224)."""
    return int(resolution) if resolution is not None else int(round(native_size * 2 / 3))


# -- the method -----------------------------------------------------------------------------------
@METHODS.register("activesam")
class ActiveSAM(Sam3MethodBase):
    """ActiveSAM: expansion, low-resolution preview, active set, bucketed decoding, fusion, MABC."""

    name = "activesam"
    version = "2"  # 2: postprocess_dtype, preview ranked in its dtype, fp32 expansion; Meta's numerics in the backend
    description = "ActiveSAM: prompt expansion, presence preview, active class set, bucketed decoding, MABC"
    defaults: ClassVar[dict[str, Any]] = {
        # switches (ablations)
        "canonicalize": True,
        "expansion": True,
        "preview": True,
        "mabc": True,
        # 1. prompt expansion
        "neighbor_tokens": 2,
        "neighbor_temperature": 1.0,
        "hypernym_tokens": 2,
        "hypernym_source": "auto",  # auto | nltk | debian | table | none (same hypernyms from each)
        # 2./3. preview and active set
        "preview_resolution": None,  # None = round(2/3 * backend.native_size): 672 on the real model
        "quantile": 0.8,  # tau = 0.8-quantile of the preview presence (release: 1 - quantile_alpha 0.2)
        "max_active": 40,  # also: preview skipped when the vocabulary has <= max_active prompts
        "min_active": 1,
        # 4. decoding and fusion
        "bucket_size": "auto",  # prompts per call: 32 on CUDA (the release's); a CPU: measured (methods/common.py)
        "confidence_threshold": ACTIVESAM_CONFIDENCE,  # 0.3 on every dataset
        # 5. background
        "prob_thd": None,  # None = the dataset's prob_thd
        "mabc_exponent": 1.25,
        # precision: auto = bf16 under a bf16 (autocast) run, as the release on CUDA; fp32 otherwise
        "postprocess_dtype": "auto",
    }
    _numeric = {
        "neighbor_tokens": (0, None, True, False),
        "neighbor_temperature": (1e-6, None, False, False),
        "hypernym_tokens": (0, None, True, False),
        "preview_resolution": (1, None, True, True),
        "quantile": (0.0, 1.0, False, False),
        "max_active": (1, None, True, False),
        "min_active": (1, None, True, False),
        "confidence_threshold": (0.0, 1.0, False, True),
        "prob_thd": (0.0, 1.0, False, True),
        "mabc_exponent": (0.0, None, False, False),
    }
    _switches = ("canonicalize", "expansion", "preview", "mabc")

    def __init__(self, **params: Any):
        super().__init__(**params)
        from robustbench_ovss.vocab.wordnet import SOURCES

        if self.params["hypernym_source"] not in SOURCES:
            raise ConfigError(
                f"method 'activesam': param hypernym_source must be one of {', '.join(SOURCES)}, "
                f"got {self.params['hypernym_source']!r}"
            )
        if self.params["min_active"] > self.params["max_active"]:
            raise ConfigError("method 'activesam': min_active must not exceed max_active")
        check_postprocess_dtype(self.name, self.params["postprocess_dtype"])

    def _encoded(self, text: str) -> str:
        return canonicalize_name(text) if self.params["canonicalize"] else text

    def setup(self, ctx: MethodContext) -> None:
        self._setup_common(ctx)
        p = self.params
        backend = self.backend
        conf = p["confidence_threshold"]
        self.conf = ACTIVESAM_CONFIDENCE if conf is None else float(conf)
        self.texts = [self._encoded(t) for t in self.prompts]
        self.bare_text = backend.encode_text(self.texts)
        self.hypernyms: list[list[str]] = [[] for _ in self.prompts]
        hyp_kind = "off"
        if p["expansion"] and (p["neighbor_tokens"] > 0 or p["hypernym_tokens"] > 0):
            from robustbench_ovss.vocab.expansion import ExpansionTokens
            from robustbench_ovss.vocab.wordnet import get_hypernym_source

            found: list[list[str]] = [[] for _ in self.prompts]
            if p["hypernym_tokens"] > 0:
                source = get_hypernym_source(p["hypernym_source"])
                hyp_kind = source.kind
                # looked up on the canonicalised name, as the release does whatever the switch
                names = [canonicalize_name(t) for t in self.prompts]
                with warnings.catch_warnings():
                    warnings.simplefilter("always")
                    found = source.lookup_many(names, p["hypernym_tokens"], context=f"vocabulary of {ctx.dataset}")
            self.hypernyms = [[self._encoded(h) for h in hyps] for hyps in found]
            # the release computes similarity, softmax and projection in fp32 outside autocast (its
            # memory-bank precompute; TF32 matmuls on CUDA where Meta's builder enables them); the text
            # encoder inside text_embeddings_1024 still runs in the backend's dtype, as there
            with torch.autocast(device_type=backend.device.type, enabled=False):
                tokens = ExpansionTokens.build(
                    self.texts,
                    self.hypernyms,
                    embed=backend.text_embeddings_1024,
                    project=backend.project,
                    num_neighbours=p["neighbor_tokens"],
                    num_hypernyms=p["hypernym_tokens"],
                    temperature=p["neighbor_temperature"],
                )
            self.expansion_tokens = tokens
            self.full_text = backend.encode_text(self.texts, tokens.features, tokens.mask)
        else:
            self.expansion_tokens = None
            self.full_text = self.bare_text
        n = len(self.prompts)
        self.run_preview = bool(p["preview"]) and n > p["max_active"]
        self.preview_res = preview_size(backend.native_size, p["preview_resolution"])
        self.pp_dtype = postprocess_dtype(p["postprocess_dtype"], ctx.dtype)
        self._presence_only_kw = _accepts_kw(backend.encode_image, "presence_only")
        self._resolved = {
            "confidence_threshold": self.conf,
            "prob_thd": self.prob_thd,
            "preview_resolution": self.preview_res,
            "hypernym_source": hyp_kind,
            "postprocess_dtype": DTYPE_NAMES[self.pp_dtype],
            "bucket_size": self.bucket,
            "preview_bucket_size": self.preview_bucket,
        }
        self._stats = {}

    @torch.inference_mode()
    def class_scores(self, image: np.ndarray) -> torch.Tensor:
        """Fused class scores float32 [C, H, W] of ``image`` (steps 3-5; classes never decoded score 0);
        sets the per-image stats. The dense score map, and the oracle of :meth:`predict`."""
        hw = self._check_image(image)
        acc = ClassScoreAccumulator(self.num_classes, hw, self.backend.device)
        for chunk, dec in self._decoded(image):
            scores, presence = instance_scores(dec, self.pp_dtype)
            acc.add(fuse_prompts(dec.mask_logits, scores, dec.semantic_logits, presence, self.conf, hw),
                    self._class_index(chunk))
        return acc.scores

    def labels(self, scores: torch.Tensor) -> torch.Tensor:
        """Step 6: label map int64 [H, W] from class scores [C, H, W] (MABC or the plain prob_thd rule)."""
        if self.params["mabc"]:
            return margin_calibration(scores, self.prob_thd, self.bg_idx, self.params["mabc_exponent"])
        return threshold_background(scores, self.prob_thd, self.bg_idx)

    @torch.inference_mode()
    def predict(self, image: np.ndarray) -> torch.Tensor:
        """Labels int64 [H, W], equal to ``labels(class_scores(image))`` without the [C, H, W] map.

        The decoded prompts are folded into a running best, its class and (for MABC) the second-best class
        score (:mod:`.streaming`); classes never decoded score 0, which the running state's start stands
        for. Memory is a few [H, W] planes whatever C and the active set.
        """
        hw = self._check_image(image)
        mabc = bool(self.params["mabc"])
        # MABC needs the second best only where it applies (as margin_calibration: a background class,
        # prob_thd > 0, at least two classes); elsewhere it is plain argmax
        rule = self.bg_idx is not None and (not mabc or (self.prob_thd > 0 and self.num_classes >= 2))
        second = rule and mabc
        stream = StreamingLabels(hw, self.backend.device, self.num_classes, second=second, conf=self.conf,
                                 dtype=self.pp_dtype)
        for chunk, dec in self._decoded(image):
            stream.add_bucket(dec, self._class_index(chunk))
        self.fusion_counts = stream.counts
        return stream.labels(self.prob_thd, self.bg_idx if rule else None, mabc=second,
                             exponent=self.params["mabc_exponent"])

    def _decoded(self, image: np.ndarray) -> Iterator[tuple[list[int], Decoded]]:
        """Steps 3-5: preview and active set, then the active prompts decoded in buckets: (prompt indices,
        Decoded) per bucket, in prompt order; sets the per-image stats once all are decoded."""
        p = self.params
        backend = self.backend
        n = len(self.prompts)
        bucket = self.bucket
        if self.run_preview:
            preview_feats = self._encode_preview(image)
            presence = backend.presence(preview_feats, self.bare_text, list(range(n)), self.preview_bucket)
            # rank what the release's pruner ranks: sigmoid probabilities in the post-processing dtype
            # (bf16 there under CUDA autocast: sigmoid of a bf16 logit = the fp32 sigmoid rounded once)
            presence = presence.to(self.pp_dtype).float()
            active = select_active(presence, p["quantile"], p["max_active"], p["min_active"])
            del preview_feats
        else:
            active = torch.arange(n, dtype=torch.long)
        active_list = [int(i) for i in active.tolist()]
        feats = backend.encode_image(image)
        for chunk in contiguous_buckets(active_list, bucket):
            yield chunk, backend.decode(feats, self.full_text, chunk, bucket)
        self._stats = {
            "prompts_decoded": len(active_list),
            "prompts_previewed": n if self.run_preview else 0,
            "preview_skipped": not self.run_preview,
            "active": sorted({self.prompt_class[i] for i in active_list}),
        }

    def _encode_preview(self, image: np.ndarray) -> Any:
        # the preview needs only the DETR input level; backends that can skip the rest say so
        if self._presence_only_kw:
            return self.backend.encode_image(image, self.preview_res, presence_only=True)
        return self.backend.encode_image(image, self.preview_res)
