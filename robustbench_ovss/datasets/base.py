"""The Dataset contract (DESIGN §4).

A dataset is a class registered in ``DATASETS`` and constructed by the runner as
``cls(root=..., vocab=..., **options)``: ``root`` is the dataset's own directory (already joined with
the data root), ``vocab`` an optional path to a vocabulary file that replaces the default one,
``options`` per-dataset keyword arguments from ``[datasets.options.NAME]`` in the config.
Constructors must be cheap and must not import torch; they validate the layout and raise
``DataError`` naming the missing file and what to do.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np


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
    """

    name: ClassVar[str] = ""
    default_root: ClassVar[str] = ""
    split_size: ClassVar[int | None] = None
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
