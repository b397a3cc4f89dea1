"""The large-vocabulary OVSS benchmarks as the open-vocabulary community prepares them (detectron2 layouts).

CAT-Seg, SAN and SED prepare ADE20K-Full and Pascal Context-459 into uint16 TIFF label maps with
65535 = ignore, class ids 0..C-1 (``datasets/prepare_ade20k_full.py`` and
``datasets/prepare_pascal_context_459.py`` of CAT-Seg; sources and commits in docs/datasets.md and the
vocabulary files' provenance there):

* ``ade847``: ``ADE20K_2021_17_01/images_detectron2/validation/*.jpg`` and
  ``annotations_detectron2/validation/*.tif``, 2000 images (short side resized to 512 by the
  preparation), 847 classes;
* ``pc459``: ``VOC2010/JPEGImages/*.jpg`` and ``annotations_detectron2/pc459_val/*.tif``, 5104 images,
  459 classes; JPEGImages holds all of VOC2010, so the split is the set of label maps.

ADE20K-Full names are WordNet-style synonym lists ("bus, autobus, coach, charabanc, ..."). By default
each class is prompted with its first name only (``synonyms = false``: 847 prompts, the vocabulary size
equals the class count, as for the other benchmarks); ``[datasets.options.ade847] synonyms = true``
makes every synonym an alias (its score is the max over them, as for any alias list). Several classes
share a first name (837 distinct first names; "bag" names three classes); they get identical prompts and argmax gives their pixels
to the lower id, as in the reference evaluations that prompt by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..registry import DATASETS
from .mmseg import LAYOUTS, Layout, MMSegDataset

__all__ = ["ADE847_LAYOUT", "PC459_LAYOUT", "ADE847Dataset", "PC459Dataset"]

DETECTRON2_IGNORE = 65535
ADE847_LAYOUT = Layout("images_detectron2/validation", "annotations_detectron2/validation", ".jpg", ".tif", None,
                       False, ignore_index=DETECTRON2_IGNORE)
PC459_LAYOUT = Layout("JPEGImages", "annotations_detectron2/pc459_val", ".jpg", ".tif", None, False,
                      ignore_index=DETECTRON2_IGNORE, list_from="labels")


class _SynonymDataset(MMSegDataset):
    """An mmseg-style dataset whose vocabulary lines may be synonym lists; option ``synonyms``."""

    first_name_only = True  # by default (synonyms = false): one prompt per class

    def __init__(self, root: str | Path | None = None, vocab: str | Path | None = None, synonyms: bool = False,
                 **options: Any):
        if not isinstance(synonyms, bool):
            raise ConfigError(f"[datasets.options.{self.name}] synonyms must be true or false, got {synonyms!r}")
        super().__init__(root=root, vocab=vocab, **options)
        self.synonyms = synonyms
        if not synonyms:
            self.classes = [[aliases[0]] for aliases in self.classes]


@DATASETS.register("ade847")
class ADE847Dataset(_SynonymDataset):
    """ade847: ADE20K-Full validation, 847 classes, detectron2 layout (uint16 TIFs, 65535 = ignore)."""

    name = "ade847"
    default_root = "ADE20K_2021_17_01"
    layout = ADE847_LAYOUT
    vocab_name = "ade847"
    split_size = 2000


@DATASETS.register("pc459")
class PC459Dataset(_SynonymDataset):
    """pc459: Pascal Context validation with 459 classes, detectron2 layout (uint16 TIFs, 65535 = ignore)."""

    name = "pc459"
    default_root = "VOC2010"
    layout = PC459_LAYOUT
    vocab_name = "pc459"
    split_size = 5104  # the ids of CAT-Seg's datasets/pascalcontext_val.txt


LAYOUTS.update(ade847=ADE847_LAYOUT, pc459=PC459_LAYOUT)
