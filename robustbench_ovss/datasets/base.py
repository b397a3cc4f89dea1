"""The Dataset contract (DESIGN §4).

A dataset is a class registered in ``DATASETS`` and constructed by the runner as
``cls(root=..., vocab=..., **options)``: ``root`` is the dataset's own directory (already joined with
the data root), ``vocab`` an optional path to a vocabulary file that replaces the default one,
``options`` per-dataset keyword arguments from ``[datasets.options.NAME]`` in the config.
Constructors must be cheap and must not import torch; they validate the layout and raise
``DataError`` naming the missing file and what to do.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from ..errors import ConfigError


class Dataset:
    """Base class. Subclasses fill the attributes and implement ``__len__``/``__getitem__``.

    Attributes:
        name: registry name ("voc21").
        classes: one alias list per label id, the prompts of the reference methods.
        ignore_index: label value not evaluated (255 unless the dataset says otherwise: 65535 for the
            detectron2-prepared uint16 labels of ade847 and pc459).
        bg_idx: label id of the background class, or None.
        prob_thd: reference background threshold (0.0 = no background rule).
        default_root: directory name under the data root ("VOC2012"); "" when the dataset needs no files.
        split_size: number of images of the standard split (None when it has no fixed size).
        OPTION_DEFAULTS: options ``[datasets.options.NAME]`` takes through ``**options`` (name -> default),
            besides the constructor's named keywords; None when undeclared (the constructor checks them).
    """

    name: ClassVar[str] = ""
    default_root: ClassVar[str] = ""
    split_size: ClassVar[int | None] = None
    OPTION_DEFAULTS: ClassVar[dict[str, Any] | None] = None
    ignore_index: int = 255
    classes: list[list[str]]
    bg_idx: int | None = None
    prob_thd: float = 0.0

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def class_names(self) -> list[str]:
        return [aliases[0] for aliases in self.classes]

    @property
    def fingerprint(self) -> str:
        """Hash of the split list and file sizes (str, hex); changes when the data on disk changes."""
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, k: int) -> tuple[str, np.ndarray, np.ndarray]:
        """Image k as ``(image_id, image uint8 [H, W, 3] RGB, label [H, W])``: an unsigned integer label map
        wide enough for the class count (uint8, or uint16 beyond 255 classes) holding class ids and
        ``ignore_index``."""
        raise NotImplementedError


def declared_options(cls: type) -> dict[str, Any] | None:
    """Options a dataset class takes (name -> default): its constructor's named keywords besides
    ``root`` and ``vocab``, plus ``OPTION_DEFAULTS``; None when it also takes undeclared ``**options``."""
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]  # type: ignore[misc]
    named = {p.name: p.default for p in params
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in ("root", "vocab")}  # fmt: skip
    takes_more = any(p.kind is p.VAR_KEYWORD for p in params)
    extra = getattr(cls, "OPTION_DEFAULTS", None)
    if takes_more and extra is None:
        return None
    return {**named, **(extra or {})}


def check_options(name: str, cls: type, options: Mapping[str, Any], where: str) -> None:
    """Check ``[datasets.options.NAME]`` against what the dataset class declares, before any data is
    read: unknown keys, and values of another type than the option's default (one-line ConfigError)."""
    allowed = declared_options(cls)
    if allowed is None:
        return
    key = f"[datasets.options.{name}]"
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: {key} unknown option(s) {', '.join(unknown)} "
                          f"(allowed: {', '.join(sorted(allowed)) or 'none'})")  # fmt: skip
    for opt, val in options.items():
        default = allowed[opt]
        if isinstance(default, bool):
            ok, want = isinstance(val, bool), "true or false"
        elif isinstance(default, int):
            ok, want = isinstance(val, int) and not isinstance(val, bool), "an integer"
        elif isinstance(default, float):
            ok, want = isinstance(val, (int, float)) and not isinstance(val, bool), "a number"
        elif isinstance(default, str):
            ok, want = isinstance(val, str), "a string"
        else:  # None, lists, sizes given as int or [h, w]: the constructor checks them
            continue
        if not ok:
            raise ConfigError(f"{where}: {key} {opt} must be {want}, got {val!r}")
