"""Fusion of SAM 3's per-prompt outputs into a label map, shared by the three built-in methods.

The order of operations follows the SegEarth-OV-3 release (``segearthov3_segmentor.py`` with its
``sam3/model/sam3_image_processor.py::_forward_grounding``), which ActiveSAM's
``activesam/model/processor.py`` repeats:

1. keep the instances whose score ``sigmoid(pred_logits) * presence`` exceeds ``conf`` (strictly);
2. resize the kept mask *logits* from the model grid to the image size (bilinear,
   ``align_corners=False``), *then* apply the sigmoid - the resize happens on logits, not on
   probabilities; the semantic-head logits are treated the same way (resize, then sigmoid);
3. ``inst = max_q sigmoid(mask_q) * score_q`` over the kept instances (0 where none is kept);
4. ``prob = max(inst, sigmoid(semantic))`` (the ``sam3`` row: ``prob = inst``);
5. ``prob *= presence``;
6. class score = max over the class's aliases (prompts); prompts never decoded score 0;
7. argmax over classes (first index wins ties, as ``torch.argmax``), then the background rule.

Because step 2 already works at the image size, the reference's final "resize to the original shape"
is a no-op and is not repeated here.

Precision (each method's ``postprocess_dtype`` parameter, :func:`instance_scores`). Both releases run
their model and this post-processing inside ``torch.autocast("cuda", torch.bfloat16)``, so the model's
outputs are bf16. There, ``sigmoid(pred_logits)``, ``sigmoid(presence_logits)`` and their product are
computed in bf16 (sigmoid and mul are not on autocast's lists: they keep their input's dtype), and so is
the confidence comparison: a Python threshold is rounded to bf16, 0.3 acts as 0.30078125. The bilinear
resize is on autocast's fp32 list (torch >= 2.4), so masks and the semantic map are resized and passed
through the sigmoid in fp32; the mask x score product (an fp32 map times a bf16 0-dim tensor), the fold
into an fp32 ``zeros`` tensor, the presence product, argmax and the background rules are fp32 as well.
So only the scores and presence differ: handing :func:`fuse_prompts` bf16 ``scores`` and ``presence``
reproduces that order exactly; fp32 ones (the default, and every CPU run) keep everything in fp32.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from robustbench_ovss.backends.base import Decoded

__all__ = [
    "POSTPROCESS_DTYPES",
    "postprocess_dtype",
    "instance_scores",
    "resize_logits",
    "instance_probability",
    "fuse_prompts",
    "alias_max",
    "ClassScoreAccumulator",
    "threshold_background",
    "PromptFuser",
    "tail_free",
]


POSTPROCESS_DTYPES = ("auto", "fp32", "bf16")


def postprocess_dtype(param: str, run_dtype: str) -> torch.dtype:
    """The dtype of a method's post-processing.

    Args:
        param: the method's ``postprocess_dtype``: "auto" | "fp32" | "bf16".
        run_dtype: the run's dtype, "fp32" or "bf16" (bf16 = autocast).
    Returns:
        ``param`` as a torch dtype; "auto" = bfloat16 when the run is under bf16 autocast (what the
        reference post-processing sees there), float32 otherwise.
    """
    if param not in POSTPROCESS_DTYPES:
        raise ValueError(f"postprocess_dtype must be one of {', '.join(POSTPROCESS_DTYPES)}, got {param!r}")
    if param == "auto":
        param = "bf16" if run_dtype == "bf16" else "fp32"
    return torch.bfloat16 if param == "bf16" else torch.float32


def instance_scores(dec: Decoded, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Instance scores [n, Q] and presence [n] of decoded prompts in ``dtype``.

    float32: the backend's ``scores`` and ``presence``. Another dtype: ``sigmoid(logits) *
    sigmoid(presence_logits)`` computed in that dtype from the raw logits, as the references do on
    their bf16 outputs (needs a backend that fills ``Decoded.logits`` and ``presence_logits``).
    """
    if dtype == torch.float32:
        return dec.scores.float(), dec.presence.float()
    if dec.logits is None or dec.presence_logits is None:
        raise ValueError(f"post-processing in {dtype} needs the raw logits, which this backend's Decoded lacks")
    presence = dec.presence_logits.to(dtype).sigmoid()
    return dec.logits.to(dtype).sigmoid() * presence[:, None], presence


def resize_logits(logits: torch.Tensor, out_hw: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize (``align_corners=False``) of logits ``[..., h, w]`` to ``[..., H, W]`` (float32).

    A no-op copy-free return when the grid already has the output size.
    """
    logits = logits.float()
    if tuple(logits.shape[-2:]) == tuple(out_hw):
        return logits
    lead = logits.shape[:-2]
    flat = logits.reshape(-1, 1, *logits.shape[-2:])
    if flat.shape[0] == 0:
        return logits.new_zeros((*lead, *out_hw))
    out = F.interpolate(flat, size=tuple(out_hw), mode="bilinear", align_corners=False)
    return out.reshape(*lead, *out_hw)


def instance_probability(
    mask_logits: torch.Tensor, scores: torch.Tensor, conf: float, out_hw: tuple[int, int]
) -> torch.Tensor:
    """Instance-head probability map of one prompt.

    Args:
        mask_logits: float [Q, h, w] instance mask logits on the model grid.
        scores: [Q] instance scores (``sigmoid(pred_logits) * presence``), float32 or bf16; the
            comparison with ``conf`` happens in their dtype, the product with the masks in float32.
        conf: keep instances with ``score > conf``.
        out_hw: (H, W) of the image.
    Returns:
        float32 [H, W]: ``max_q sigmoid(resize(mask_q)) * score_q`` over kept instances, 0 if none.
    """
    keep = scores > conf
    if not bool(keep.any()):
        return torch.zeros(out_hw, dtype=torch.float32, device=mask_logits.device)
    probs = resize_logits(mask_logits[keep], out_hw).sigmoid_()  # [k, H, W]
    probs.mul_(scores[keep].float()[:, None, None])
    return probs.amax(dim=0)


def fuse_prompts(
    mask_logits: torch.Tensor,
    scores: torch.Tensor,
    semantic_logits: torch.Tensor | None,
    presence: torch.Tensor,
    conf: float,
    out_hw: tuple[int, int],
) -> torch.Tensor:
    """Per-prompt score maps at the image size.

    Args:
        mask_logits: float [n, Q, h, w] instance mask logits.
        scores: [n, Q] instance scores, float32 or bf16 (:func:`instance_scores`).
        semantic_logits: float [n, h', w'] semantic-head logits, or None for instance outputs only.
        presence: [n] presence probabilities, float32 or bf16.
        conf: instance confidence threshold (strict ``>``, in the dtype of ``scores``).
        out_hw: (H, W) of the image.
    Returns:
        float32 [n, H, W] = ``max(inst, sigmoid(resize(semantic))) * presence`` (``inst * presence``
        without a semantic map), computed in float32.
    """
    n = mask_logits.shape[0]
    out = torch.empty((n, *out_hw), dtype=torch.float32, device=mask_logits.device)
    for i in range(n):
        prob = instance_probability(mask_logits[i], scores[i], conf, out_hw)
        if semantic_logits is not None:
            prob = torch.maximum(prob, resize_logits(semantic_logits[i], out_hw).sigmoid())
        out[i] = prob * presence[i].float()
    return out


GRAIN = 32768  # ATen's GRAIN_SIZE: elementwise ops on fewer elements run on one thread
VECTOR_CHUNK = 64  # floats; a multiple of the vectorised loops' step (16 on AVX2, 32 on AVX-512)


def tail_free(numel: int, device: torch.device | str) -> bool:
    """Whether an elementwise op on ``numel`` contiguous floats computes every element in the vectorised
    loop (so the same element gets the same bits whatever the tensor around it).

    On CUDA every element is computed alike. On the CPU, ATen splits the range over the intra-op threads
    (``at::parallel_for``: ``divup(n, tasks)`` elements each, ``tasks = min(threads, divup(n, GRAIN))``)
    and finishes each share with a scalar loop; the scalar and vectorised sigmoid differ in the last bit
    (libm vs Sleef exp). With every share a multiple of :data:`VECTOR_CHUNK` there is no scalar tail.
    """
    if torch.device(device).type == "cuda":
        return True
    if numel % VECTOR_CHUNK:
        return False
    threads = torch.get_num_threads()
    if numel < GRAIN or threads == 1:
        return True
    tasks = min(threads, -(-numel // GRAIN))
    return (-(-numel // tasks)) % VECTOR_CHUNK == 0


class PromptFuser:
    """One prompt's fused map at the image size, in reused buffers: bit-identical to a row of
    :func:`fuse_prompts`.

    Every full-resolution op is the one :func:`fuse_prompts` runs, on a tensor of the same shape (the
    bilinear resize through its ``out=`` form; the sigmoid of the kept instances on one stacked
    ``[k, H, W]`` tensor, as there), so the values agree bit for bit on any device and thread count.
    What goes is the allocation: on the CPU a fresh multi-megabyte tensor is page-faulted in on first
    touch, about half the cost of a resize or a sigmoid at 1024 x 2048.

    Where :func:`tail_free` holds for the stack and for its pieces (always on CUDA; on the CPU for image
    sizes such as 1024 x 2048) no element depends on its neighbours, and the fuser also processes the
    instances ``chunk`` at a time (the max is exact: this bounds the stack's memory) and accepts a
    subset of the kept instances from a caller that has proven the others cannot change its result
    (:mod:`.bounds`). Elsewhere it keeps the full stack, as :func:`fuse_prompts` does.

    Args:
        out_hw: (H, W) of the image.
        device: where the buffers live.
        chunk: instances per stacked resize where chunking is exact.
    """

    def __init__(self, out_hw: tuple[int, int], device: torch.device | str, chunk: int = 8):
        self.out_hw = (int(out_hw[0]), int(out_hw[1]))
        self.numel = self.out_hw[0] * self.out_hw[1]
        self.device = torch.device(device)
        self.chunk = max(1, int(chunk))
        self._stack: torch.Tensor | None = None  # [capacity, H, W]
        self._inst = torch.empty(self.out_hw, dtype=torch.float32, device=self.device)
        self._part = torch.empty(self.out_hw, dtype=torch.float32, device=self.device)
        self._sem = torch.empty(self.out_hw, dtype=torch.float32, device=self.device)
        self.fused_instances = 0  # instances resized by the last ``fuse``

    def _stacked(self, k: int) -> torch.Tensor:
        if self._stack is None or self._stack.shape[0] < k:
            self._stack = None  # free the old one first
            self._stack = torch.empty((k, *self.out_hw), dtype=torch.float32, device=self.device)
        return self._stack[:k]

    def _resize_into(self, logits: torch.Tensor, out: torch.Tensor) -> None:
        """:func:`resize_logits` of ``logits`` ([k, h, w] or [h, w]) written into ``out`` of the same rank."""
        logits = logits.float()
        if tuple(logits.shape[-2:]) == self.out_hw:
            out.copy_(logits.reshape(out.shape))
            return
        flat = logits.reshape(-1, 1, *logits.shape[-2:])
        torch._C._nn.upsample_bilinear2d(flat, self.out_hw, False, None, None,
                                         out=out.view(flat.shape[0], 1, *self.out_hw))

    def exact_subsets(self, kept: int) -> bool:
        """Whether fusing a subset of ``kept`` instances, or ``chunk``-sized pieces, gives the full stack's bits."""
        return tail_free(kept * self.numel, self.device) and all(
            tail_free(k * self.numel, self.device) for k in range(1, min(self.chunk, kept) + 1))

    def _instances(self, mask_logits: torch.Tensor, scores: torch.Tensor, step: int, out: torch.Tensor) -> None:
        """``max_q sigmoid(resize(mask_q)) * score_q`` over the given instances into ``out``, ``step`` at a time."""
        k = mask_logits.shape[0]
        for start in range(0, k, step):
            part = self._stacked(min(step, k - start))
            self._resize_into(mask_logits[start:start + step], part)
            part.sigmoid_()
            part.mul_(scores[start:start + step].float()[:, None, None])
            if start == 0:
                torch.amax(part, dim=0, out=out)
            else:
                torch.amax(part, dim=0, out=self._part)
                torch.maximum(out, self._part, out=out)

    def fuse(
        self,
        mask_logits: torch.Tensor,
        scores: torch.Tensor,
        semantic_logits: torch.Tensor | None,
        presence: torch.Tensor,
        conf: float,
        subset: torch.Tensor | None = None,
    ) -> torch.Tensor | None:
        """The fused map float32 [H, W] of one prompt, or None where it is 0 everywhere.

        Args:
            mask_logits: float [Q, h, w]; scores: [Q] (float32 or bf16); presence: 0-dim;
            semantic_logits: float [h', w'], or None: none (the ``sam3`` row) or one the caller has
                proven cannot change its result.
            conf: instances with ``score > conf`` (in the dtype of ``scores``) are kept.
            subset: bool [Q], kept instances the caller needs (the others proven irrelevant); used only
                where :meth:`exact_subsets` holds, else every kept instance is fused.
        Returns:
            A view of an internal buffer, valid until the next call; None when no instance is fused and
            there is no semantic map (the map is then ``0 * presence``: zeros).
        """
        keep = scores > conf
        kept = int(keep.sum())
        exact = kept > 0 and self.exact_subsets(kept)
        if subset is not None and exact:
            keep = keep & subset
        idx = keep.nonzero().flatten()
        self.fused_instances = int(idx.numel())
        if idx.numel() == 0 and semantic_logits is None:
            return None
        out = self._inst
        if idx.numel():
            self._instances(mask_logits[idx], scores[idx], self.chunk if exact else idx.numel(), out)
        else:
            out.zero_()
        if semantic_logits is not None:
            self._resize_into(semantic_logits, self._sem)
            self._sem.sigmoid_()
            torch.maximum(out, self._sem, out=out)
        out.mul_(presence.float())
        return out


def alias_max(prompt_scores: torch.Tensor, prompt_class: Sequence[int] | torch.Tensor, num_classes: int) -> torch.Tensor:
    """Class scores from prompt scores: the max over each class's prompts (0 for a class with none).

    Args:
        prompt_scores: float [P, H, W] (non-negative).
        prompt_class: [P] label id of each prompt.
        num_classes: C.
    Returns:
        float32 [C, H, W].
    """
    acc = ClassScoreAccumulator(num_classes, tuple(prompt_scores.shape[-2:]), prompt_scores.device)
    acc.add(prompt_scores, prompt_class)
    return acc.scores


class ClassScoreAccumulator:
    """Running alias max: ``scores[c] = max(scores[c], prompt score)`` as prompts are decoded.

    Keeps memory at [C, H, W] however many prompts (aliases) a vocabulary has. Starts at 0, so a
    class none of whose prompts is decoded scores 0 (ActiveSAM: prompts outside the active set).
    """

    def __init__(self, num_classes: int, out_hw: tuple[int, int], device: torch.device | str = "cpu"):
        self.scores = torch.zeros((num_classes, *out_hw), dtype=torch.float32, device=device)

    def add(self, prompt_scores: torch.Tensor, prompt_class: Sequence[int] | torch.Tensor) -> None:
        """Fold float [n, H, W] maps of prompts whose label ids are ``prompt_class`` [n] into the scores."""
        classes = [int(c) for c in (prompt_class.tolist() if isinstance(prompt_class, torch.Tensor) else prompt_class)]
        for i, c in enumerate(classes):
            torch.maximum(self.scores[c], prompt_scores[i], out=self.scores[c])


def threshold_background(class_scores: torch.Tensor, prob_thd: float, bg_idx: int | None) -> torch.LongTensor:
    """Argmax with SegEarth-OV3's background rule.

    Args:
        class_scores: float [C, H, W].
        prob_thd: pixels whose best score is ``< prob_thd`` become ``bg_idx``.
        bg_idx: background label id; None = no background rule (plain argmax).
    Returns:
        int64 [H, W].
    """
    if class_scores.shape[0] == 0:
        raise ValueError("class_scores has no classes")
    pred = class_scores.argmax(dim=0)  # first maximal index on ties
    if bg_idx is not None:
        pred[class_scores.amax(dim=0) < prob_thd] = int(bg_idx)
    return pred
