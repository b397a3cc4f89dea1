"""The Method contract (DESIGN §4): what every segmentation method, built-in or plugin, implements.

A method is a class registered in ``robustbench_ovss.registry.METHODS``::

    from robustbench_ovss.method import Method
    from robustbench_ovss.registry import METHODS

    @METHODS.register("my-method")
    class MyMethod(Method):
        version = "1"
        defaults = {"threshold": 0.5}     # every constant, with its default
        needs_backend = False             # True to receive the shared SAM 3 backend in ctx

        def setup(self, ctx): ...
        def predict(self, image): ...     # uint8 HxWx3 -> LongTensor[H, W] in [0, C)

The runner constructs it with the config's params (unknown keys are errors), calls ``setup`` once
per dataset, then ``predict`` per image and ``stats`` right after each ``predict``. A method never
sees the label.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from .errors import ConfigError, MethodOutputError
from .hashing import stable_hash


@dataclass(frozen=True)
class MethodContext:
    """What a method learns about the run in ``setup``.

    Attributes:
        vocabulary: one alias list per label id, e.g. ``[["background"], ["aeroplane"], ...]``.
        bg_idx: label id of the background class, or None when the dataset has none.
        prob_thd: the dataset's reference background threshold (0.0 = no background rule).
        dataset: registry name of the dataset ("voc21").
        device: torch device string ("cpu", "cuda:0").
        dtype: "fp32" or "bf16" (bf16 = autocast on CUDA).
        backend: the run's shared backend instance (None when no method of the run needs one).
        class_names: display name per label id (first alias by default).
    """

    vocabulary: list[list[str]]
    bg_idx: int | None
    prob_thd: float
    dataset: str
    device: str = "cpu"
    dtype: str = "fp32"
    backend: Any = None
    class_names: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.vocabulary)


class Method:
    """Base class of segmentation methods. Subclasses set ``defaults`` and implement ``predict``."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    defaults: ClassVar[dict[str, Any]] = {}
    needs_backend: ClassVar[bool] = False
    description: ClassVar[str] = ""

    def __init__(self, **params: Any):
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            allowed = ", ".join(sorted(self.defaults)) or "none"
            raise ConfigError(
                f"method {self.name or type(self).__name__!r}: unknown param(s) {', '.join(unknown)} (allowed: {allowed})"
            )
        self.params: dict[str, Any] = {**self.defaults, **params}
        self.ctx: MethodContext | None = None

    # -- the contract ---------------------------------------------------------------------------
    def setup(self, ctx: MethodContext) -> None:
        """Prepare for a dataset (encode texts, resolve per-dataset defaults). Called once per dataset."""
        self.ctx = ctx

    def predict(self, image: np.ndarray) -> Any:
        """Segment one image.

        Args:
            image: uint8 [H, W, 3] RGB on the CPU.
        Returns:
            torch.LongTensor [H, W] (any device) with values in [0, C).
        """
        raise NotImplementedError

    def stats(self) -> dict[str, Any]:
        """Per-image extras of the last ``predict`` (e.g. ``prompts_decoded``, ``active``)."""
        return {}

    def resolved_params(self) -> dict[str, Any]:
        """Parameters as used on the current dataset (per-dataset defaults filled in); recorded per unit."""
        return dict(self.params)

    # -- identity -------------------------------------------------------------------------------
    @property
    def params_hash(self) -> str:
        """Short hash of name, version and params (as configured, before per-dataset resolution)."""
        return params_hash(self.name, self.version, self.params)


def params_hash(name: str, version: str, params: dict[str, Any]) -> str:
    """Short hash of a method's identity: name, version and params as configured (before per-dataset
    resolution)."""
    return stable_hash({"name": name, "version": version, "params": params}, compact=False)


def check_prediction(pred: Any, shape: tuple[int, int], num_classes: int, method: str) -> Any:
    """Validate a ``predict`` result; returns it as a LongTensor or raises ``MethodOutputError``."""
    import torch

    if not isinstance(pred, torch.Tensor):
        raise MethodOutputError(f"method {method!r} returned {type(pred).__name__}, expected a torch.LongTensor [H, W]")
    if pred.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise MethodOutputError(f"method {method!r} returned dtype {pred.dtype}, expected an integer tensor")
    if tuple(pred.shape) != tuple(shape):
        raise MethodOutputError(f"method {method!r} returned shape {tuple(pred.shape)}, expected {tuple(shape)}")
    if pred.numel():
        lo, hi = int(pred.min()), int(pred.max())
        if lo < 0 or hi >= num_classes:
            raise MethodOutputError(f"method {method!r} returned labels in [{lo}, {hi}], expected [0, {num_classes})")
    return pred.long()
