"""Benchmarks: loaders registered in ``robustbench_ovss.registry.DATASETS`` (see ``base.Dataset``).

Built-ins: the eight mmseg-layout benchmarks (:mod:`.mmseg`), ``synthetic`` (:mod:`.synthetic`) and
``voc-sample`` (:mod:`.voc_sample`). Nothing in this package imports torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import Dataset
from .vocabulary import load_vocabulary, packaged_vocabulary

__all__ = ["Dataset", "dataset_root", "describe", "load_vocabulary", "packaged_vocabulary"]


def dataset_root(data_root: str | Path, cls: Any) -> str:
    """Where a dataset class reads from under ``data_root``: ``data_root/<its folder>``, or ``data_root``
    itself when that already is the dataset's folder (``/data/VOC2012`` as well as ``/data``)."""
    folder = getattr(cls, "default_root", "") or ""
    root = Path(data_root)
    if folder and root.name == folder and not (root / folder).exists():
        return str(root)
    return str(root / folder)


def describe(name: str, data_root: str | Path = "data") -> dict[str, Any]:
    """What ``ovss-bench ls datasets`` shows about dataset ``name``, without scanning its files.

    Returns:
        ``{"name", "num_classes", "classes" (same count), "size" (split size, n_images, or None),
        "root" (str, "" when the dataset needs no files), "found" (bool: root directory exists, or
        no files are needed)}``.
    """
    from ..registry import DATASETS

    cls = DATASETS.get(name)
    default_root = getattr(cls, "default_root", "") or ""
    num_classes: int | None = None
    size: int | None = getattr(cls, "split_size", None)
    if name == "synthetic":
        defaults = cls.OPTION_DEFAULTS  # type: ignore[attr-defined]
        num_classes = defaults["vocab_size"] + (1 if defaults["background"] else 0)
        size = defaults["n_images"]
    elif name == "voc-sample":
        num_classes = len(packaged_vocabulary("voc21"))
    elif getattr(cls, "vocab_name", ""):
        num_classes = len(packaged_vocabulary(cls.vocab_name))  # type: ignore[attr-defined]
    elif isinstance(getattr(cls, "classes", None), list):
        num_classes = len(cls.classes)  # type: ignore[attr-defined]
    root = str(Path(data_root) / default_root) if default_root else ""
    found = Path(root).is_dir() if default_root else True
    return {"name": name, "num_classes": num_classes, "classes": num_classes if num_classes is not None else "?",
            "size": size, "root": root, "found": found}  # fmt: skip
