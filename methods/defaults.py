"""Per-dataset reference defaults of the built-in methods (DESIGN §6).

A method parameter whose value is ``None`` means "the per-dataset reference default": it is resolved
in ``setup`` from these tables (or from the dataset's own ``prob_thd``) and reported by
``resolved_params()``.

Sources (released configs, one file per benchmark):
- SegEarth-OV-3 ``configs/cfg_<dataset>.py``: ``confidence_threshold`` and ``prob_thd`` per dataset;
  ``coco_object`` sets no confidence threshold, so the segmentor's constructor default 0.5 applies.
- ActiveSAM ``configs/base_config.py``: ``confidence_threshold=0.3`` for every dataset; its
  ``cfg_<dataset>.py`` files set ``prob_thd``/``bg_idx`` only on voc21 (.4), context60 (.1) and
  coco_object (.4) - the same values as the datasets' ``prob_thd`` here.
"""

from __future__ import annotations

import warnings
from types import MappingProxyType

__all__ = [
    "SEGEARTH_CONFIDENCE",
    "DEFAULT_CONFIDENCE",
    "ACTIVESAM_CONFIDENCE",
    "REFERENCE_PROB_THD",
    "DATASET_ALIASES",
    "reference_confidence",
]

#: SegEarth-OV-3's confidence threshold per benchmark (also used by the ``sam3`` row).
SEGEARTH_CONFIDENCE = MappingProxyType(
    {
        "voc21": 0.5,
        "voc20": 0.2,
        "context59": 0.3,
        "context60": 0.3,
        "coco_object": 0.5,
        "coco_stuff": 0.2,
        "cityscapes": 0.3,
        "ade20k": 0.3,
    }
)

#: The reference segmentors' constructor default, used for datasets outside the table (synthetic,
#: custom vocabularies).
DEFAULT_CONFIDENCE = 0.5

#: ActiveSAM uses one confidence threshold on every dataset.
ACTIVESAM_CONFIDENCE = 0.3

#: The reference background thresholds (for documentation and a consistency test; the value used at
#: run time is the dataset's ``prob_thd`` unless the method's ``prob_thd`` parameter overrides it).
REFERENCE_PROB_THD = MappingProxyType({"voc21": 0.4, "context60": 0.1, "coco_object": 0.4})

#: Datasets without a reference config take the defaults of the benchmark they derive from. These are
#: our choices, not the releases': a sample of a benchmark takes that benchmark's; ACDC's real
#: conditions take Cityscapes' (so real and synthetic shift of the same scenes use the same thresholds);
#: ADE20K-Full takes ADE20K's and Pascal Context-459 Context59's (the same images, more classes).
DATASET_ALIASES = MappingProxyType({
    "voc-sample": "voc21",
    "acdc-fog": "cityscapes", "acdc-night": "cityscapes", "acdc-rain": "cityscapes", "acdc-snow": "cityscapes",
    "dark-zurich": "cityscapes",
    "ade847": "ade20k",
    "pc459": "context59",
})  # fmt: skip

#: Datasets of this project that deliberately use the segmentors' constructor default (no warning).
OWN_DATASETS = frozenset({"synthetic"})

_warned: set[str] = set()


def reference_confidence(dataset: str) -> float:
    """SegEarth-OV-3's confidence threshold for ``dataset``.

    A dataset outside the table and :data:`DATASET_ALIASES` gets the segmentors' constructor default
    0.5 and a warning (once per process) that names the fallback.
    """
    key = DATASET_ALIASES.get(dataset, dataset)
    if key not in SEGEARTH_CONFIDENCE and dataset not in OWN_DATASETS and dataset not in _warned:
        _warned.add(dataset)
        warnings.warn(f"no reference confidence_threshold for dataset {dataset!r}: using the segmentors' default "
                      f"{DEFAULT_CONFIDENCE}; set the method's confidence_threshold to choose one", stacklevel=2)
    return float(SEGEARTH_CONFIDENCE.get(key, DEFAULT_CONFIDENCE))
