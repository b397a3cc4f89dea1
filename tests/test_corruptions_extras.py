"""Extra shifts through albumentations: seeded, severity-scaled, no global RNG use; preset configs."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from robustbench_ovss.corruptions import corrupt
from robustbench_ovss.corruptions import extras
from robustbench_ovss.registry import EXTRA_CORRUPTION_NAMES, IMAGENET_C_NAMES
from test_corruptions_api import _image


@pytest.mark.parametrize("name", EXTRA_CORRUPTION_NAMES)
def test_extras_deterministic_per_seed_and_different_across_seeds(name: str) -> None:
    img = _image(64, 96, seed=2)
    a = corrupt(img, name, 3, seed=2**63 + 5)  # full 64-bit per-image seeds are accepted
    assert np.array_equal(a, corrupt(img, name, 3, seed=2**63 + 5))
    assert not np.array_equal(a, corrupt(img, name, 3, seed=6))
    assert not np.array_equal(a, img)


def test_extras_leave_python_and_numpy_global_rngs_alone() -> None:
    img = _image(32, 40)
    random.seed(1)
    np.random.seed(1)
    expected = (random.random(), np.random.rand())
    random.seed(1)
    np.random.seed(1)
    for name in EXTRA_CORRUPTION_NAMES:
        corrupt(img, name, 5, 3)
    assert (random.random(), np.random.rand()) == expected


def test_severity_table_orders_strength() -> None:
    img = _image(96, 128, seed=8)

    def mad(name: str, s: int) -> float:
        return float(np.mean([np.abs(corrupt(img, name, s, k).astype(float) - img).mean() for k in range(3)]))

    for name in EXTRA_CORRUPTION_NAMES:
        strengths = [mad(name, s) for s in (1, 3, 5)]
        assert strengths[0] < strengths[1] < strengths[2], (name, strengths)
    means = [corrupt(img, "low_light", s, 0).mean() for s in range(1, 6)]
    assert all(a > b for a, b in zip(means, means[1:])), means


def test_pipeline_is_albumentations_compose_with_the_seed() -> None:
    import albumentations as A

    p = extras.pipeline("rain", 64, 96, 4, seed=11)
    assert isinstance(p, A.Compose) and p.seed == 11
    assert [type(t).__name__ for t in extras.pipeline("low_light", 64, 96, 1, 0).transforms] == [
        "RandomBrightnessContrast", "ShotNoise",
    ]  # fmt: skip


def test_docs_table_lists_every_extra() -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "corruptions.md").read_text()
    for name in (*EXTRA_CORRUPTION_NAMES, *IMAGENET_C_NAMES, "glass_blur_fast"):
        assert f"`{name}`" in doc, name


@pytest.mark.parametrize("config", ["paper-corruption", "imagenet-c", "full-grid"])
def test_preset_configs_validate(config: str) -> None:
    from robustbench_ovss.config import load_config

    path = Path(__file__).resolve().parent.parent / "configs" / f"{config}.toml"
    cfg = load_config(path)
    assert cfg.datasets.names == ("voc20", "voc21", "cityscapes", "ade20k", "context60", "coco_stuff")
    assert [m.name for m in cfg.methods] == ["activesam", "segearth-ov3", "sam3"]
    assert cfg.report.reference == "segearth-ov3" and cfg.backend.checkpoint == "facebook/sam3"
    if config == "paper-corruption":
        assert cfg.corruptions.names == ("gaussian_noise", "motion_blur", "jpeg_compression", "fog")
        assert cfg.corruptions.severities == (5,)
    elif config == "imagenet-c":
        assert cfg.corruptions.names == IMAGENET_C_NAMES[:15] and cfg.corruptions.severities == (1, 2, 3, 4, 5)
    else:
        assert set(cfg.corruptions.names) == {*IMAGENET_C_NAMES, *EXTRA_CORRUPTION_NAMES}
    assert load_config(config).corruptions == cfg.corruptions  # also found as a packaged config
