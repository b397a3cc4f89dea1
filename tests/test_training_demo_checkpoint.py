"""The shipped demo checkpoint (robustbench_ovss/assets/demo-sam3) loads as builtin:demo through the sam3 backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

ASSET = Path(__file__).resolve().parents[1] / "robustbench_ovss" / "assets" / "demo-sam3"


def test_demo_checkpoint_is_small_and_complete():
    names = {p.name for p in ASSET.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= names
    assert sum(p.stat().st_size for p in ASSET.iterdir()) < 8 * 1024 * 1024


def test_builtin_demo_loads_and_decodes():
    from robustbench_ovss.backends.sam3 import Sam3Backend
    from robustbench_ovss.datasets.synthetic import render_scene

    torch.set_num_threads(1)
    be = Sam3Backend("builtin:demo")
    assert be.identity.startswith("builtin:demo@")
    assert be.geometry_cls is False  # trained without the geometry CLS token (config.json says so)
    assert be.native_size == 168
    scene = render_scene(0, split="val", size=256, vocab_size=120)
    texts = ["background", "apple", "balloon"]
    feats = be.encode_image(scene.image)
    dec = be.decode(feats, be.encode_text(texts), [0, 1, 2], bucket_size=3)
    assert dec.mask_logits.shape[:2] == (3, 20) and dec.semantic_logits.shape == (3, 24, 24)
    assert torch.isfinite(dec.presence).all()
    # background covers most of a synthetic scene: the trained model says it is present
    assert float(dec.presence[0]) > 0.5
    assert np.isfinite(dec.scores.numpy()).all()


def test_builtin_demo_finds_the_concepts_of_held_out_scenes():
    """The trained model ranks the concepts present in held-out scenes above the absent ones (its
    presence head reads the text): each present concept is in the top 25 of 121, as ActiveSAM needs."""
    from robustbench_ovss.backends.sam3 import Sam3Backend
    from robustbench_ovss.datasets.synthetic import SyntheticDataset

    torch.set_num_threads(1)
    be = Sam3Backend("builtin:demo")
    ds = SyntheticDataset(vocab_size=120, n_images=3)
    texts = [aliases[0] for aliases in ds.classes]
    text = be.encode_text(texts)
    hits = total = 0
    for k in range(3):
        scene = ds.render(k)
        dec = be.decode(be.encode_image(scene.image), text, list(range(len(texts))), bucket_size=64)
        top = set(torch.argsort(dec.presence.float(), descending=True)[:25].tolist())
        present = set(scene.instance_labels)
        hits += len(present & top)
        total += len(present)
    assert hits / total >= 0.8, (hits, total)


def test_demo_config_is_the_shipped_architecture(tmp_path):
    """The training builds the demo model with the backend's ``tiny_config`` (``training.model.demo_config``):
    at the shipped sizes (168 px, widths 64) it writes the shipped config.json, field for field."""
    import json

    from transformers import AutoTokenizer

    from robustbench_ovss.training.model import demo_config

    config = demo_config(AutoTokenizer.from_pretrained(ASSET), image_size=168, vit_hidden=64, hidden=64, text_hidden=64)
    config.save_pretrained(tmp_path)
    built = json.loads((tmp_path / "config.json").read_text())
    shipped = json.loads((ASSET / "config.json").read_text())
    written_by_the_model = {"architectures", "dtype", "transformers_version"}  # save of the model, not the config
    assert {k: v for k, v in built.items() if k not in written_by_the_model} == \
        {k: v for k, v in shipped.items() if k not in written_by_the_model}
