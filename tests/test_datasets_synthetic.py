"""The synthetic benchmark: determinism, scene properties, concept appearance, options."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from robustbench_ovss.datasets.synthetic import (
    PALETTE,
    TEXTURES,
    SyntheticDataset,
    concept_names,
    concept_style,
    render_batch,
    render_scene,
)
from robustbench_ovss.errors import ConfigError
from robustbench_ovss.registry import DATASETS

SIDE = 96


def _digest(ds, ks) -> str:
    h = hashlib.sha256()
    for k in ks:
        image_id, image, label = ds[k]
        h.update(image_id.encode() + image.tobytes() + label.tobytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def scenes():
    return render_batch(range(120), size=SIDE)


def test_registered_and_contract() -> None:
    cls = DATASETS.get("synthetic")
    assert cls is SyntheticDataset and cls.default_root == ""
    ds = cls(n_images=5, size=64, vocab_size=30)
    assert len(ds) == 5 and ds.num_classes == 31 and ds.classes[0] == ["background"]
    assert ds.classes[1] == [concept_names()[0]] and ds.bg_idx == 0 and ds.prob_thd == 0.4
    image_id, image, label = ds[4]
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert label.shape == (64, 64) and label.dtype == np.uint8 and label.max() <= 30
    assert image_id == "val-s0-000004" and ds[-1][0] == image_id
    with pytest.raises(IndexError):
        ds[5]


def test_same_seed_same_bytes_in_process() -> None:
    a = SyntheticDataset(n_images=4, size=80, seed=3)
    b = SyntheticDataset(n_images=4, size=80, seed=3)
    assert _digest(a, range(4)) == _digest(b, range(4))
    assert a.fingerprint == b.fingerprint
    assert _digest(a, [2, 1]) == _digest(b, [2, 1])  # random access does not depend on order


def test_same_seed_same_bytes_across_processes() -> None:
    code = (
        "import hashlib\n"
        "from robustbench_ovss.datasets.synthetic import SyntheticDataset\n"
        "ds = SyntheticDataset(n_images=3, size=(72, 88), seed=11, vocab_size=200)\n"
        "h = hashlib.sha256()\n"
        "for k in range(3):\n"
        "    i, im, lb = ds[k]; h.update(i.encode() + im.tobytes() + lb.tobytes())\n"
        "print(h.hexdigest())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == _digest(SyntheticDataset(n_images=3, size=(72, 88), seed=11, vocab_size=200), range(3))


def test_seed_and_split_change_the_scenes() -> None:
    base = _digest(SyntheticDataset(n_images=2, size=64), range(2))
    assert _digest(SyntheticDataset(n_images=2, size=64, seed=1), range(2)) != base
    assert _digest(SyntheticDataset(n_images=2, size=64, split="train"), range(2)) != base
    fps = {SyntheticDataset(**kw).fingerprint for kw in ({}, {"seed": 1}, {"split": "train"}, {"vocab_size": 50})}
    assert len(fps) == 4


def test_labels_match_instances(scenes) -> None:
    for s in scenes:
        n = len(s.instance_labels)
        masks = s.instance_masks()
        assert masks.shape == (n, SIDE, SIDE) and masks.dtype == bool
        assert (masks.sum(0) <= 1).all()  # disjoint
        assert np.array_equal(masks.any(0), s.label != 0)  # union = every non-background pixel
        for m, lab, vis in zip(masks, s.instance_labels, s.visible):
            assert (s.label[m] == lab).all() and m.sum() == vis
        assert set(np.unique(s.label).tolist()) - {0} == {c + 1 for c in s.concepts}
        assert s.label.max() <= 120


def test_one_to_five_concepts_per_image(scenes) -> None:
    counts = Counter(len(s.concepts) for s in scenes)
    assert set(counts) <= {1, 2, 3, 4, 5}
    assert counts[1] > 0 and counts[5] > 0
    assert all(1 <= len(s.instance_labels) <= 10 for s in scenes)
    assert any(len(s.instance_labels) > len(s.concepts) for s in scenes)  # several instances of a concept


def test_object_scales_from_2_to_40_percent(scenes) -> None:
    frac = np.array([a / SIDE**2 for s in scenes for a in s.areas])
    assert frac.min() >= 0.012 and frac.max() <= 0.43
    assert (frac < 0.04).mean() > 0.1 and (frac > 0.25).mean() > 0.05


def test_occlusion_present_but_bounded(scenes) -> None:
    vis = np.array([v / a for s in scenes for v, a in zip(s.visible, s.areas)])
    assert (vis < 0.95).mean() > 0.2  # many objects are partly hidden
    assert vis.min() >= 0.3  # but every object keeps at least 30% visible


def test_cluttered_textured_background(scenes) -> None:
    for s in scenes[:20]:
        bg = s.image[s.label == 0].astype(np.float32)
        if len(bg) < 500:
            continue
        assert bg.std(axis=0).mean() > 4  # not a flat colour
        hsv_sat = (bg.max(1) - bg.min(1)) / np.maximum(bg.max(1), 1)
        assert np.median(hsv_sat) < 0.45  # muted, unlike the concept palette


def test_vocab_size_and_background_option() -> None:
    ds = SyntheticDataset(n_images=6, size=64, vocab_size=12, max_concepts=3, background=False)
    assert ds.num_classes == 12 and ds.bg_idx is None and ds.prob_thd == 0.0
    assert [a[0] for a in ds.classes] == list(concept_names()[:12])
    for k in range(6):
        label = ds[k][2]
        assert set(np.unique(label).tolist()) <= set(range(12)) | {255}
        assert 255 in label
    big = SyntheticDataset(n_images=1, vocab_size=300, size=48)
    assert big.num_classes == 301


def test_non_square_size() -> None:
    _, image, label = SyntheticDataset(n_images=1, size=[60, 100])[0]
    assert image.shape == (60, 100, 3) and label.shape == (60, 100)


def test_concept_appearance_needs_colour_and_texture() -> None:
    styles = [concept_style(c) for c in range(300)]
    # the first 16 concepts all have different primary colours (cheap to learn at small vocabularies)
    assert len({s.primary for s in styles[:16]}) == 16
    # the default 120-concept vocabulary is exactly the 120 unordered colour pairs, so every colour
    # appears in 15 concepts (colour alone cannot name a concept) but the pair does
    pairs = [frozenset((s.primary, s.secondary)) for s in styles[:120]]
    assert len(set(pairs)) == 120
    prim = Counter(s.primary for s in styles[:120])
    assert len(prim) == 16 and min(prim.values()) >= 7
    assert all(sum(col in pr for pr in pairs) == 15 for col in prim)
    # (colours, texture) tells concepts apart for up to 240 concepts; colour-swap-symmetric textures
    # compare the unordered pair (swapping their colours gives the same look)
    symmetric = {"stripes", "checker", "waves", "rings"}
    looks = [
        (frozenset((s.primary, s.secondary)) if s.texture in symmetric else (s.primary, s.secondary), s.texture)
        for s in styles
    ]
    assert len(set(looks[:240])) == 240
    keys = [(s.primary, s.secondary, s.texture) for s in styles]
    assert len(set(keys[:240])) == 240
    assert all(s.primary != s.secondary for s in styles)
    # textures of one primary colour differ within the first 120 concepts
    for p in range(16):
        ts = [styles[c].texture for c in range(p, 120, 16)]
        assert len(set(ts)) == len(ts)
    assert {s.texture for s in styles} == set(TEXTURES)
    assert all(0.035 <= s.period <= 0.07 for s in styles)
    assert {tuple(map(float, c)) for c in PALETTE} >= {s.secondary for s in styles}


def test_objects_show_their_two_colours() -> None:
    s = render_scene(5, size=256)
    for lab, m in zip(s.instance_labels, s.instance_masks()):
        if m.sum() < 800:
            continue
        st = concept_style(lab - 1)
        px = s.image[m].astype(np.float32)
        d_p = np.linalg.norm(px - np.array(st.primary), axis=1)
        d_s = np.linalg.norm(px - np.array(st.secondary), axis=1)
        near = np.minimum(d_p, d_s) < 110
        assert near.mean() > 0.7


@pytest.mark.parametrize(
    "opts,needle",
    [
        ({"colour": 1}, "unknown option"),
        ({"vocab_size": 0}, "vocab_size must be within 1..300"),
        ({"vocab_size": 301}, "vocab_size must be within 1..300"),
        ({"max_concepts": 6}, "max_concepts"),
        ({"min_concepts": 3, "max_concepts": 2}, "min_concepts"),
        ({"n_images": 0}, "n_images must be >= 1"),
        ({"size": 8}, "size must be within"),
        ({"size": [1, 2, 3]}, "size must be an integer or"),
        ({"seed": "a"}, "seed must be an integer"),
        ({"background": "yes"}, "background must be true or false"),
    ],
)
def test_bad_options(opts: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        SyntheticDataset(**opts)


def test_vocab_override_renames(tmp_path) -> None:
    v = tmp_path / "v.txt"
    v.write_text("".join(f"thing{i}\n" for i in range(11)))
    ds = SyntheticDataset(vocab=str(v), vocab_size=10)
    assert ds.classes[10] == ["thing10"]
    from robustbench_ovss.errors import DataError

    with pytest.raises(DataError, match="11 lines but dataset 'synthetic' has 121"):
        SyntheticDataset(vocab=str(v))


def test_render_scene_for_training() -> None:
    s = render_scene(0, split="train", seed=5, size=(64, 80), vocab_size=40, max_concepts=2)
    assert s.image.shape == (64, 80, 3) and s.instance_map.dtype == np.uint8
    assert 1 <= len(s.concepts) <= 2 and all(c < 40 for c in s.concepts)
    assert len(s.instance_concepts) == len(s.instance_labels) == len(s.areas) == len(s.visible)


def test_pickles_for_worker_processes() -> None:
    import pickle

    ds = SyntheticDataset(n_images=2, size=48)
    assert _digest(pickle.loads(pickle.dumps(ds)), range(2)) == _digest(ds, range(2))
