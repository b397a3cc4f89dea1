"""ACDC (Adverse Conditions Dataset with Correspondences) validation: real fog, night, rain and snow.

One dataset per condition, ``acdc-fog``, ``acdc-night``, ``acdc-rain``, ``acdc-snow`` (100, 106, 100
and 100 validation images, 1080x1920), under one root ``ACDC/``:
``rgb_anon/<condition>/val/<sequence>/<frame>_rgb_anon.png`` with
``gt/<condition>/val/<sequence>/<frame>_gt_labelTrainIds.png``: Cityscapes' 19 train ids, 255 = ignore.
The prompts are Cityscapes' (``configs/vocab/cityscapes.txt``), and so are the methods' per-dataset
defaults (``methods/defaults.py``), so a real condition and the synthetic corruption that imitates it
are evaluated the same way.

``dark-zurich``: Dark Zurich validation (Sakaridis et al., 50 night images, 1080x1920, the same label
set), as simple: ``DarkZurich/rgb_anon/val/night/<sequence>/*_rgb_anon.png`` with
``gt/val/night/<sequence>/*_gt_labelTrainIds.png`` (the layout refign's loader reads, github
brdav/refign 4efc6a8 ``data_modules/datasets/darkzurich.py``).
"""

from __future__ import annotations

from ..registry import DATASETS
from .mmseg import LAYOUTS, Layout, MMSegDataset

__all__ = ["ACDC_CONDITIONS", "ACDC_VAL_SIZES", "DarkZurichDataset", "acdc_layout"]

ACDC_CONDITIONS = ("fog", "night", "rain", "snow")
ACDC_VAL_SIZES = {"fog": 100, "night": 106, "rain": 100, "snow": 100}


def acdc_layout(condition: str) -> Layout:
    """The files of one ACDC condition's validation split under the ACDC root."""
    return Layout(f"rgb_anon/{condition}/val", f"gt/{condition}/val", "_rgb_anon.png", "_gt_labelTrainIds.png", None, False)


def _register(condition: str) -> type[MMSegDataset]:
    name = f"acdc-{condition}"
    cls_name = f"Acdc{condition.capitalize()}Dataset"
    cls = type(cls_name, (MMSegDataset,), {
        "name": name, "default_root": "ACDC", "layout": acdc_layout(condition), "vocab_name": "cityscapes",
        "split_size": ACDC_VAL_SIZES[condition], "__module__": __name__, "__qualname__": cls_name,
        "__doc__": f"{name}: ACDC {condition} validation ({ACDC_VAL_SIZES[condition]} images), Cityscapes train ids.",
    })  # fmt: skip
    LAYOUTS[name] = cls.layout
    DATASETS.register(name)(cls)
    globals()[cls_name] = cls  # a module-level name, so instances pickle into loader workers
    return cls


for _c in ACDC_CONDITIONS:
    _register(_c)


@DATASETS.register("dark-zurich")
class DarkZurichDataset(MMSegDataset):
    """dark-zurich: Dark Zurich validation (50 night images), Cityscapes train ids."""

    name = "dark-zurich"
    default_root = "DarkZurich"
    layout = Layout("rgb_anon/val/night", "gt/val/night", "_rgb_anon.png", "_gt_labelTrainIds.png", None, False)
    vocab_name = "cityscapes"
    split_size = 50


LAYOUTS["dark-zurich"] = DarkZurichDataset.layout
