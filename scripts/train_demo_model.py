#!/usr/bin/env python
"""Train the demo model: a tiny SAM 3 (transformers ``Sam3Model``) on the synthetic benchmark.

Deterministic for a given seed, thread count and step count (CPU). Writes a Hugging Face checkpoint
directory (config.json, model.safetensors, tokenizer files, training_meta.json) and, in --log-dir, the
training logs (train_log.csv, eval_log.csv) and curves (train_curve.csv, eval_curve.csv, curves.png, as
``robustbench_ovss.training.curves.combine`` draws them). See docs/demo-model.md. Needs the installed
package (scripts/install.sh).

    python scripts/train_demo_model.py --out robustbench_ovss/assets/demo-sam3 --steps 3000

Schedule: presence + semantic losses from step 0; the instance loss (Hungarian matching of queries to
the prompt's object instances) joins at ``--instance-start`` (fraction of the steps) and ramps up.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

try:  # the installed package: pyproject maps methods/ and corruptions/ into it, a bare checkout does not
    import robustbench_ovss.methods  # noqa: F401
except ModuleNotFoundError as exc:
    if exc.name not in ("robustbench_ovss", "robustbench_ovss.methods"):
        raise
    sys.exit("train_demo_model.py: the robustbench_ovss package is not installed; run scripts/install.sh first")

import numpy as np
import torch

import robustbench_ovss
from robustbench_ovss.backends.tiny import build_tokenizer, tiny_word_list
from robustbench_ovss.training.curves import combine
from robustbench_ovss.training.loop import StepConfig, TextBank, evaluate, lr_at, train_step
from robustbench_ovss.training.model import PresenceHook, build_model, count_parameters, demo_config, save_checkpoint
from robustbench_ovss.vocab import canonicalize
from robustbench_ovss.vocab.wordnet import hypernyms_for

DEMO_ASSET = Path(robustbench_ovss.__file__).resolve().parent / "assets" / "demo-sam3"


def make_tokenizer(names: list[str], hypernyms: list[list[str]]):
    """The backend's word-level tokenizer over its word list plus the class names and hypernyms."""
    return build_tokenizer(tiny_word_list(list(names) + [h for hs in hypernyms for h in hs]))


def fmt_row(row: dict) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())


def contrastive_stage(args, model, bank, num_classes: int, val, log_dir: Path, rng) -> None:
    """Stage 0 (``--contrastive-steps``): align vision tokens and texts before the detector losses."""
    from robustbench_ovss.training.contrastive import (
        contrastive_step,
        dense_contrastive_loss,
        grid_tokens_and_texts,
        token_targets,
    )
    from robustbench_ovss.training.data import render

    log_scale = torch.nn.Parameter(torch.tensor(float(np.log(10.0))))
    params = [p for n_, p in model.named_parameters()
              if n_.startswith(("vision_encoder.", "text_encoder.", "text_projection."))]
    opt = torch.optim.AdamW([{"params": params, "weight_decay": args.weight_decay},
                             {"params": [log_scale], "weight_decay": 0.0}], lr=args.lr)
    low = args.image_size * 2 // 3

    @torch.no_grad()
    def val_acc(size: int) -> float:
        model.eval()
        level, text = grid_tokens_and_texts(model, bank, val, size)
        tg = token_targets(val, tuple(level.shape[-2:]), num_classes)
        keep = tg >= 0
        tok = torch.nn.functional.normalize(level.permute(0, 2, 3, 1)[keep], dim=-1)
        pred = (tok @ torch.nn.functional.normalize(text, dim=-1).T).argmax(-1)
        loss = dense_contrastive_loss(level, text, tg, log_scale)
        fg = tg[keep] > 0
        print(f"[contrastive eval] size {size}: val token accuracy {(pred == tg[keep]).float().mean():.3f} "
              f"(concept tokens {(pred == tg[keep])[fg].float().mean():.3f}) loss {float(loss):.3f}", flush=True)
        return float((pred == tg[keep]).float().mean())

    with open(log_dir / "contrastive_log.csv", "w", newline="") as f:
        w = None
        for k in range(args.contrastive_steps):
            lr = args.lr * min(1.0, (k + 1) / max(1, args.warmup))
            for g in opt.param_groups:
                g["lr"] = lr
            first = args.scene_offset + 50_000_000 + k * args.contrastive_images
            scenes = render(range(first, first + args.contrastive_images), "train", args.scene_size,
                            args.vocab_size, args.seed)
            size = low if rng.random() < args.low_prob else args.image_size
            row = {"step": k, "lr": lr, **contrastive_step(model, opt, bank, scenes, num_classes, size, log_scale)}
            if w is None:
                w = csv.DictWriter(f, fieldnames=list(row))
                w.writeheader()
            w.writerow(row)
            if k % 50 == 0:
                f.flush()
                print(f"[c{k}] {fmt_row(row)}", flush=True)
            if k and k % 500 == 0:
                val_acc(args.image_size)
    val_acc(args.image_size)
    val_acc(low)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(DEMO_ASSET))
    ap.add_argument("--log-dir", default=None, help="where logs and curves go (default: OUT-logs beside OUT)")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--max-minutes", type=float, default=0.0, help="stop early (and save) after this long")
    ap.add_argument("--stop-at", type=int, default=0,
                    help="stop after this many steps of the --steps schedule (reproduces a time-limited run)")
    ap.add_argument("--vocab-size", type=int, default=120)
    ap.add_argument("--n-train", type=int, default=64, help="toy pool size (--toy only)")
    ap.add_argument("--n-val", type=int, default=12)
    ap.add_argument("--image-size", type=int, default=252)
    ap.add_argument("--scene-size", type=int, default=256)
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--prompts", type=int, default=16,
                    help="prompts per image at full size; inference asks 121 prompts with ~3%% present, and "
                         "16 (vs 8) cut held-out false positives by half (docs/demo-model.md, stage 3)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--hold", type=float, default=0.6)
    ap.add_argument("--instance-start", type=float, default=0.35)
    ap.add_argument("--instance-weight", type=float, default=1.0)
    ap.add_argument("--contrastive-steps", type=int, default=0,
                    help="stage 0: this many steps of dense image-text contrastive alignment first "
                         "(training/contrastive.py), then the SAM 3 losses")
    ap.add_argument("--contrastive-images", type=int, default=8, help="scenes per contrastive step")
    ap.add_argument("--rank-weight", type=float, default=0.0,
                    help="weight of the cross-entropy across an image's prompts (losses.prompt_softmax_loss)")
    ap.add_argument("--extra-prob", type=float, default=0.5)
    ap.add_argument("--low-prob", type=float, default=0.25)
    ap.add_argument("--low-prompts", type=int, default=0, help="prompts per image at the preview size (0 = --prompts)")
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--vit-hidden", type=int, default=96)
    ap.add_argument("--vit-layers", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--detr-layers", type=int, default=2)
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--init-from", default=None, help="start from this checkpoint dir (a stage-2 run)")
    ap.add_argument("--init-partial", action="store_true",
                    help="with --init-from: take only the tensors whose name and shape match (other widths)")
    ap.add_argument("--scene-offset", type=int, default=0, help="first scene index of the train stream")
    ap.add_argument("--decay-start", type=int, default=0,
                    help="step where the LR starts its linear decay to 5%% (overrides --hold); 0 = --hold")
    ap.add_argument("--decay-end", type=int, default=0,
                    help="step where the linear decay reaches 5%% (default: --stop-at or --steps)")
    ap.add_argument("--anneal-minutes", type=float, default=0.0,
                    help="with --max-minutes: start the decay this many minutes before the budget ends "
                         "(the step is recorded in training_meta.json as --decay-start/--stop-at)")
    ap.add_argument("--hard-negatives", action="store_true",
                    help="half the negatives share a colour with a present concept (synthetic styles)")
    ap.add_argument("--toy", action="store_true", help="train on the toy stand-in scenes (tests only)")
    ap.add_argument("--save-every", type=int, default=500)
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    out = Path(args.out)
    log_dir = Path(args.log_dir) if args.log_dir else out.parent / (out.name + "-logs")
    log_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()

    if args.toy:
        from robustbench_ovss.training.toy import toy_scenes

        k = args.vocab_size
        names = ["background"] + [f"concept{i}" for i in range(1, k)]
        pool = toy_scenes(args.n_train, args.scene_size, k - 1, seed=args.seed)
        val = toy_scenes(args.n_val, args.scene_size, k - 1, seed=args.seed + 1000)

        def batch_scenes(step):
            idx = np.random.default_rng([args.seed, step]).choice(len(pool), size=args.images, replace=False)
            return [pool[i] for i in idx]
    else:
        from robustbench_ovss.training.data import class_names, render

        names = class_names(args.vocab_size)
        # held-out: split "val" of another seed than the suite's demo (seed 0), and never the train stream
        val = render(range(args.n_val), "val", args.scene_size, args.vocab_size, args.seed + 1000)

        def batch_scenes(step):
            # fresh scenes every step: scene k of the ("train", seed) stream, k = step * images + b
            first = args.scene_offset + step * args.images
            return render(range(first, first + args.images), "train", args.scene_size, args.vocab_size, args.seed)
    num_classes = len(names)
    confusable = None
    if args.hard_negatives and not args.toy:
        from robustbench_ovss.training.data import confusable_labels, hard_negative_pool

        confusable = confusable_labels(args.vocab_size)
    texts = [canonicalize(n) for n in names]
    hyps = hypernyms_for(texts, 2)  # ActiveSAM's source; names it cannot answer are masked (one warning)
    print(f"[data] {num_classes} classes, {len(val)} val scenes "
          f"in {time.time() - t0:.0f}s", flush=True)

    if args.init_from and not args.init_partial:
        # the checkpoint's own tokenizer: its ids index the embedding rows loaded below (the package's word
        # list has grown since the shipped model's stages were trained, so a new one would not fit them)
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(args.init_from)
    else:
        tokenizer = make_tokenizer(names + texts, hyps)
    unk = [t for t in texts + [h for hs in hyps for h in hs]
           if tokenizer.unk_token_id in tokenizer(t)["input_ids"]]
    if unk:
        print(f"[warn] texts with unknown words: {unk[:10]}", flush=True)
    config = demo_config(
        tokenizer, image_size=args.image_size, vit_hidden=args.vit_hidden, vit_layers=args.vit_layers,
        hidden=args.hidden, text_hidden=args.hidden, detr_layers=args.detr_layers, num_queries=args.queries,
    )
    model = build_model(config, seed=args.seed)
    if args.init_from:
        from transformers import Sam3Model

        src = Sam3Model.from_pretrained(args.init_from)
        if args.init_partial:
            # e.g. a wider DETR / text / mask decoder on the same ViT: take every tensor whose shape matches
            own = model.state_dict()
            take = {k: v for k, v in src.state_dict().items() if k in own and own[k].shape == v.shape}
            model.load_state_dict(take, strict=False)
            missing = f"{len(take)} of {len(own)} tensors taken"
        else:
            missing = model.load_state_dict(src.state_dict(), strict=True)
        print(f"[init] weights from {args.init_from} ({missing})", flush=True)
        del src
    n_params = count_parameters(model)
    print(f"[model] {n_params / 1e6:.2f} M parameters", flush=True)
    hook = PresenceHook(model)
    bank = TextBank.build(tokenizer, texts, hyps)
    decay, no_decay = [], []
    for n_, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "norm" in n_ or "embed" in n_ else decay).append(p)
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr, betas=(0.9, 0.999),
    )
    cfg = StepConfig(images_per_step=args.images, prompts_per_image=args.prompts, size=args.image_size,
                     low_size=args.image_size * 2 // 3, low_prob=args.low_prob, extra_prob=args.extra_prob,
                     low_prompts=args.low_prompts, rank_weight=args.rank_weight)
    inst_start = int(args.instance_start * args.steps)

    train_csv = log_dir / "train_log.csv"
    eval_csv = log_dir / "eval_log.csv"
    tf = open(train_csv, "w", newline="")
    tw = None
    ef = open(eval_csv, "w", newline="")
    ew = None
    meta = {
        "script": "scripts/train_demo_model.py", "args": vars(args), "parameters": n_params,
        "classes": names, "prompt_texts": texts, "torch": torch.__version__,
    }

    def do_eval(step):
        nonlocal ew
        te = time.time()
        m = evaluate(model, bank, val, num_classes, size=args.image_size, preview_size=args.image_size * 2 // 3)
        m = {"step": step, "elapsed_min": round((time.time() - t0) / 60, 2), **{k: round(v, 4) for k, v in m.items()}}
        if ew is None:
            ew = csv.DictWriter(ef, fieldnames=list(m))
            ew.writeheader()
        ew.writerow(m)
        ef.flush()
        print(f"[eval {step}] {json.dumps(m)} ({time.time() - te:.0f}s)", flush=True)
        return m

    if args.contrastive_steps:
        contrastive_stage(args, model, bank, num_classes, val, log_dir, rng)

    step = 0
    last = None
    t_train = time.time()
    decay_start = args.decay_start
    decay_end = args.decay_end or args.stop_at or args.steps
    recent: list[float] = []
    for step in range(args.steps):
        if decay_start:
            if step < args.warmup:
                lr = args.lr * (step + 1) / args.warmup
            else:
                t = min(1.0, max(0.0, (step - decay_start) / max(1, decay_end - decay_start)))
                lr = args.lr * (1.0 - 0.95 * t)
        else:
            lr = lr_at(step, args.steps, args.lr, args.warmup, hold_frac=args.hold)
        for g in opt.param_groups:
            g["lr"] = lr
        if step >= inst_start:
            ramp = min(1.0, (step - inst_start + 1) / max(1, args.warmup * 2))
            cfg.instance_weight = args.instance_weight * ramp
        ts = time.time()
        bs = batch_scenes(step)
        neg_pool = hard_negative_pool(bs, confusable) if confusable else None
        s = train_step(model, opt, hook, bank, bs, num_classes, cfg, rng, negative_pool=neg_pool)
        recent = (recent + [time.time() - ts])[-100:]
        if (args.anneal_minutes and args.max_minutes and not decay_start
                and (time.time() - t0) / 60 >= args.max_minutes - args.anneal_minutes):
            decay_start = step + 1
            decay_end = decay_start + int(args.anneal_minutes * 60 / max(1e-3, float(np.mean(recent))))
            args.stop_at = decay_end
            print(f"[anneal] linear decay from step {decay_start} to {decay_end}", flush=True)
        row = {"step": step, "lr": lr, "sec": round(time.time() - ts, 3), **s}
        row.setdefault("matched", 0)
        if tw is None:
            tw = csv.DictWriter(tf, fieldnames=list(row), extrasaction="ignore")
            tw.writeheader()
        tw.writerow(row)
        if step % 25 == 0:
            tf.flush()
            print(f"[{step}] {fmt_row(row)}", flush=True)
        if args.eval_every and step > 0 and step % args.eval_every == 0:
            last = do_eval(step)
        if args.save_every and step > 0 and step % args.save_every == 0:
            meta.update(step=step, last_eval=last)
            save_checkpoint(model, tokenizer, out, meta)
        if args.stop_at and step + 1 >= args.stop_at:
            print(f"[stop] --stop-at {args.stop_at}", flush=True)
            break
        if args.max_minutes and (time.time() - t0) / 60 > args.max_minutes:
            print(f"[stop] time budget reached at step {step}", flush=True)
            break
    tf.flush()
    last = do_eval(step + 1)
    meta.update(step=step + 1, last_eval=last, decay_start=decay_start, decay_end=decay_end,
                reproduce=(f"--decay-start {decay_start} --decay-end {decay_end} --stop-at {step + 1}"
                           if decay_start else f"--stop-at {step + 1}"), train_minutes=round((time.time() - t_train) / 60, 1),
                seconds_per_step=round((time.time() - t_train) / max(1, step + 1), 3))
    model.eval()
    save_checkpoint(model, tokenizer, out, meta)
    tf.close()
    ef.close()
    combine([(out.name, log_dir, step + 1)], log_dir)
    print(f"[done] {out} in {(time.time() - t0) / 60:.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
