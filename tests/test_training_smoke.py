"""Two training steps of the demo-model code on a micro config: the loss moves, the checkpoint reloads
through the ``sam3`` backend and gives the same outputs as the trained model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robustbench_ovss.backends.preprocess import images_to_pixels
from robustbench_ovss.backends.tiny import build_tokenizer
from robustbench_ovss.training.batching import sample_prompts
from robustbench_ovss.training.loop import StepConfig, TextBank, train_step
from robustbench_ovss.training.model import PresenceHook, build_model, demo_config, forward_prompts, save_checkpoint
from robustbench_ovss.training.toy import toy_scenes

SIZE = 112  # 8x8 patches = one 8x8 window


def _micro(seed=0):
    names = ["background", "red stripes", "blue dots", "green waves"]
    tok = build_tokenizer(sorted({w for n in names for w in n.split()} | {"pattern", "thing"}))
    cfg = demo_config(tok, image_size=SIZE, vit_hidden=32, vit_layers=1, hidden=32, text_hidden=32, detr_layers=1,
                      num_queries=4)
    model = build_model(cfg, seed=seed)
    bank = TextBank.build(tok, names, [["pattern"], ["pattern", "thing"], [], ["thing"]])
    return names, tok, model, bank


def _fixed_loss(model, bank, scenes, hook):
    from robustbench_ovss.training.batching import make_targets
    from robustbench_ovss.training.losses import presence_loss, semantic_loss

    rng = np.random.default_rng(123)
    pb = sample_prompts(scenes, 4, 4, rng)
    with torch.no_grad():
        feats, mask = bank.encode(model, with_extra=False)
        out = forward_prompts(model, images_to_pixels([s.image for s in scenes], SIZE), feats[pb.class_id],
                              mask[pb.class_id], pb.image_index)
        sem, valid, _ = make_targets(scenes, pb, tuple(out.semantic_seg.shape[-2:]))
        return float(presence_loss(out.presence_logits, pb.present)
                     + semantic_loss(out.semantic_seg[:, 0], sem, pb.present, valid=valid))


def test_two_steps_change_loss_and_checkpoint_reloads_through_backend(tmp_path):
    torch.manual_seed(0)
    names, tok, model, bank = _micro()
    hook = PresenceHook(model)
    scenes = toy_scenes(4, SIZE, num_concepts=3, seed=0)
    before = _fixed_loss(model, bank, scenes, hook)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    cfg = StepConfig(images_per_step=2, prompts_per_image=4, size=SIZE, low_prob=0.0, extra_prob=1.0,
                     instance_weight=1.0)
    rng = np.random.default_rng(0)
    logs = [train_step(model, opt, hook, bank, scenes[:2], 4, cfg, rng),
            train_step(model, opt, hook, bank, scenes[2:], 4, cfg, rng)]
    for s in logs:
        assert np.isfinite(s["loss"]) and s["extra"] == 1 and s["prompts"] == 8
    after = _fixed_loss(model, bank, scenes, hook)
    assert after != pytest.approx(before, rel=1e-6)
    hook.remove()

    out = save_checkpoint(model.eval(), tok, tmp_path / "ck", meta={"test": True})
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    assert (out / "tokenizer.json").is_file()

    from robustbench_ovss.backends.sam3 import Sam3Backend

    be = Sam3Backend(checkpoint=str(out), device="cpu", dtype="fp32")
    assert be.native_size == SIZE
    image = scenes[0].image
    feats = be.encode_image(image)
    text = be.encode_text(names)
    dec = be.decode(feats, text, list(range(len(names))), bucket_size=2)
    # the same thing with the in-memory trained model
    with torch.no_grad():
        f, m = bank.encode(model, with_extra=False)
        ref = forward_prompts(model, images_to_pixels([image], SIZE), f, m, torch.zeros(len(names), dtype=torch.long))
    torch.testing.assert_close(dec.presence, ref.presence_logits[:, 0].sigmoid(), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(dec.semantic_logits, ref.semantic_seg[:, 0], atol=1e-3, rtol=1e-3)
    # presence-only path at the native size equals the full decode's presence
    pres = be.presence(feats, text, list(range(len(names))), bucket_size=4)
    torch.testing.assert_close(pres, dec.presence, atol=1e-5, rtol=1e-5)


def test_script_runs_two_toy_steps(tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "train_demo_model.py"
    spec = importlib.util.spec_from_file_location("train_demo_model", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "demo"
    rc = mod.main(["--toy", "--steps", "2", "--vocab-size", "4", "--n-train", "4", "--n-val", "2",
                   "--scene-size", "112", "--image-size", "168", "--images", "2", "--prompts", "3",
                   "--vit-hidden", "32", "--vit-layers", "1", "--hidden", "32", "--detr-layers", "1",
                   "--queries", "4", "--eval-every", "0", "--save-every", "0", "--warmup", "1",
                   "--instance-start", "0.5", "--threads", "1", "--out", str(out)])
    assert rc == 0
    assert (out / "model.safetensors").is_file() and (out / "training_meta.json").is_file()
    logs = tmp_path / "demo-logs"
    assert (logs / "train_log.csv").read_text().count("\n") == 3  # header + 2 steps
    assert (logs / "eval_log.csv").read_text().count("\n") == 2  # header + final eval


def test_script_runs_from_any_directory_and_needs_the_installed_package(tmp_path):
    """The script imports the installed package (never the checkout by path): ``--help`` works from
    another directory, and without the package (``python -S``: no site-packages) it says, in one line,
    to run scripts/install.sh."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "train_demo_model.py"
    ok = subprocess.run([sys.executable, str(script), "--help"], cwd=tmp_path, capture_output=True, text=True,
                        timeout=120)
    assert ok.returncode == 0 and "--init-from" in ok.stdout, ok.stderr
    bare = subprocess.run([sys.executable, "-S", str(script), "--help"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert bare.returncode == 1 and bare.stdout == ""
    assert bare.stderr.strip().count("\n") == 0 and "scripts/install.sh" in bare.stderr


def test_appended_tokens_in_training_equal_activesams_at_inference(tmp_path):
    """Training appends ActiveSAM's 4 tokens built exactly as the method builds them through the backend
    (same pooling, neighbours, hypernyms and projection), so the full pass sees in training what it sees
    at inference."""
    from robustbench_ovss.backends.sam3 import Sam3Backend
    from robustbench_ovss.vocab.expansion import ExpansionTokens

    names, tok, model, bank = _micro()
    out = save_checkpoint(model.eval(), tok, tmp_path / "ck")
    with torch.no_grad():
        feats, mask = bank.encode(model, with_extra=True)
    be = Sam3Backend(checkpoint=str(out), device="cpu", dtype="fp32")
    ref = ExpansionTokens.build(names, bank.hypernyms, embed=be.text_embeddings_1024, project=be.project)
    assert feats.shape[1] == mask.shape[1] == bank.ids.shape[1] + 4
    torch.testing.assert_close(mask[:, -4:], ref.mask)
    got = feats[:, -4:] * mask[:, -4:, None]
    torch.testing.assert_close(got, ref.features * ref.mask[..., None], atol=1e-5, rtol=1e-5)
