"""Shared machinery of the SAM 3 methods: vocabulary flattening, parameter checks, image checks."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from robustbench_ovss.errors import ConfigError
from robustbench_ovss.method import Method, MethodContext

__all__ = ["Sam3MethodBase", "flatten_vocabulary", "contiguous_buckets", "AUTO_BUCKET", "resolve_bucket_size"]

#: ``bucket_size = "auto"``: prompts per call (presence preview, full decode) by device. CUDA: 32 for both,
#: ActiveSAM's reference value. A CPU (or any other device), measured with ``benchmarks/bench_buckets.py``
#: on the mid model (docs/methods.md#bucket-size): the presence-only pass is cheapest per prompt in
#: buckets of about 8; the full decode, on one intra-op thread, one prompt per call (larger buckets cost
#: 1.1-2.2x more per prompt at 32 and hold 40 MB per prompt); on more threads a single-prompt call leaves
#: them waiting, and buckets of 8 decode several times faster per prompt.
AUTO_BUCKET = {"cuda": (32, 32), "cpu": (8, 1), "cpu-threads": (8, 8)}


def flatten_vocabulary(vocabulary: Sequence[Sequence[str]]) -> tuple[list[str], list[int]]:
    """One prompt per alias: ``(prompts, label id of each prompt)``, in vocabulary order.

    Aliases are stripped of surrounding whitespace; empty aliases are dropped; a class left with no
    alias is an error (it could never be predicted).
    """
    prompts: list[str] = []
    prompt_class: list[int] = []
    for c, aliases in enumerate(vocabulary):
        kept = [a.strip() for a in aliases if a and a.strip()]
        if not kept:
            raise ConfigError(f"vocabulary entry {c} has no prompt text")
        prompts.extend(kept)
        prompt_class.extend([c] * len(kept))
    return prompts, prompt_class


def contiguous_buckets(indices: Sequence[int], bucket_size: int) -> Iterator[list[int]]:
    """Split ``indices`` into consecutive runs of at most ``bucket_size`` (the reference's scheduler)."""
    indices = list(indices)
    for start in range(0, len(indices), bucket_size):
        yield indices[start : start + bucket_size]


def resolve_bucket_size(value: int | str, device: Any, threads: int | None = None) -> tuple[int, int]:
    """Prompts per call (presence preview, full decode): ``value`` for both, or for ``"auto"``
    :data:`AUTO_BUCKET` of the device type (on a CPU also by ``threads``, default torch's intra-op threads)."""
    if value != "auto":
        return int(value), int(value)
    kind = getattr(device, "type", str(device).split(":")[0])
    if kind == "cuda":
        return AUTO_BUCKET["cuda"]
    if threads is None:
        import torch

        threads = torch.get_num_threads()
    return AUTO_BUCKET["cpu"] if threads <= 1 else AUTO_BUCKET["cpu-threads"]


def _check_bucket_size(value: Any, method: str) -> None:
    if value == "auto":
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"method {method!r}: param bucket_size must be an integer >= 1 or \"auto\", got {value!r}")


def _check_number(name: str, value: Any, *, lo: float | None = None, hi: float | None = None,
                  integer: bool = False, allow_none: bool = False, method: str = "") -> None:
    if value is None and allow_none:
        return
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type:
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"method {method!r}: param {name} must be {kind}{' or null' if allow_none else ''}, got {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(f"method {method!r}: param {name}={value!r} is outside [{lo}, {hi}]")


class Sam3MethodBase(Method):
    """Base of the built-in SAM 3 methods: flattens the vocabulary and validates inputs.

    Subclasses declare ``_numeric`` (param -> (lo, hi, integer, allow_none)) and ``_switches``
    (boolean params) for validation at construction, so a bad config fails before any model loads.
    """

    needs_backend = True
    _numeric: Mapping[str, tuple[float | None, float | None, bool, bool]] = {}
    _switches: tuple[str, ...] = ()

    def __init__(self, **params: Any):
        super().__init__(**params)
        for key, (lo, hi, integer, allow_none) in self._numeric.items():
            _check_number(key, self.params[key], lo=lo, hi=hi, integer=integer, allow_none=allow_none, method=self.name)
        for key in self._switches:
            if not isinstance(self.params[key], bool):
                raise ConfigError(f"method {self.name!r}: param {key} must be true or false, got {self.params[key]!r}")
        if "bucket_size" in self.params:
            _check_bucket_size(self.params["bucket_size"], self.name)
        self._resolved: dict[str, Any] = {}
        self._stats: dict[str, Any] = {}

    # -- setup helpers ---------------------------------------------------------------------------
    def _setup_common(self, ctx: MethodContext) -> None:
        if ctx.backend is None:
            raise ConfigError(f"method {self.name!r} needs the SAM 3 backend, but the run built none")
        super().setup(ctx)
        self.backend = ctx.backend
        self.prompts, self.prompt_class = flatten_vocabulary(ctx.vocabulary)
        self.num_classes = ctx.num_classes
        self.bg_idx = ctx.bg_idx
        self.prob_thd = float(ctx.prob_thd if self.params.get("prob_thd") is None else self.params["prob_thd"])
        # the outputs do not depend on it (up to float rounding of batched matmuls), so "auto" is what
        # params_hash sees; resolved_params() records the numbers used
        self.preview_bucket, self.bucket = resolve_bucket_size(self.params.get("bucket_size", 1), self.backend.device)

    def resolved_params(self) -> dict[str, Any]:
        return {**self.params, **self._resolved}

    def stats(self) -> dict[str, Any]:
        return dict(self._stats)

    # -- predict helpers -------------------------------------------------------------------------
    def _check_image(self, image: np.ndarray) -> tuple[int, int]:
        if self.ctx is None:
            raise RuntimeError(f"method {self.name!r}: predict() before setup()")
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            got = f"{type(image).__name__} {getattr(image, 'dtype', '')} {getattr(image, 'shape', '')}"
            raise ValueError(f"method {self.name!r} expects a uint8 HxWx3 RGB array, got {got}")
        return int(image.shape[0]), int(image.shape[1])

    def _class_index(self, indices: Sequence[int]) -> list[int]:
        return [self.prompt_class[i] for i in indices]
