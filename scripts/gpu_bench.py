#!/usr/bin/env python
"""Images/s of SegEarth-OV3-style vs ActiveSAM-style decoding on the real-size SAM 3 (random weights, GPU).

    python scripts/gpu_bench.py                      # one CUDA GPU, bf16 autocast, ADE20K-sized vocabulary
    python scripts/gpu_bench.py --images 5 --json out.json

No checkpoint is needed: ``Sam3Config()`` (the 840 M-parameter architecture) is built directly on the GPU
with random weights and wrapped in the project's backend (``robustbench_ovss.bench.random_backend``), so
the timed code is exactly what the methods run. ``ovss-bench bench`` times the methods themselves on a
config's datasets and estimates the config's whole grid; this script times the two decoding patterns. Per image, with the model time synchronised around each image:

- ``segearth-ov3`` style: ViT@1008 once, then the 150 prompts one decoder call each;
- ``activesam`` style: presence preview at 672 (ViT + 1x FPN level, 150 prompts in buckets of 32),
  then ViT@1008 and K prompts in buckets of 32 (with the 4 appended tokens); K defaults to what ActiveSAM's
  0.8-quantile rule keeps of the vocabulary (``flops.default_active``: 30 of 150);

plus the peak GPU memory per prompt of a decode bucket and two equality checks (bucketed = one per call,
presence-only = full forward's presence) in bf16. Random weights make timings, not accuracy, meaningful.
Designed to finish in well under 4 minutes on one H100 (``--max-seconds`` stops timing loops early).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch


def ade20k_prompts(n: int) -> list[str]:
    from importlib import resources

    text = resources.files("robustbench_ovss.configs").joinpath("vocab", "ade20k.txt").read_text(encoding="utf-8")
    names = [a.strip() for line in text.splitlines() for a in line.split(",") if a.strip()]
    while len(names) < n:
        names += [f"{x} {len(names)}" for x in names[: n - len(names)]]
    return names[:n]


def build_backend(device: str, dtype: str):
    from robustbench_ovss.bench import random_backend

    return random_backend("real", device, dtype)


def timed(backend, fn, images, warmup: int, deadline: float) -> tuple[float, int]:
    for img in images[:warmup]:
        fn(img)
    backend.synchronize()
    done, total = 0, 0.0
    for img in images[warmup:]:
        if time.perf_counter() > deadline and done:
            break
        t0 = time.perf_counter()
        fn(img)
        backend.synchronize()
        total += time.perf_counter() - t0
        done += 1
    return total, done


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"])
    ap.add_argument("--vocab", type=int, default=150, help="prompts (ADE20K = 150)")
    ap.add_argument("--active", type=int, default=None, help="prompts decoded (default: the quantile rule's count)")
    ap.add_argument("--bucket", type=int, default=32)
    ap.add_argument("--images", type=int, default=5, help="timed images per style")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--max-seconds", type=float, default=150.0, help="stop timing loops after this long")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--checkpoint", default=None,
                    help="load this checkpoint instead of a random real-size model (e.g. builtin:tiny-random for a CPU dry run)")
    args = ap.parse_args(argv)
    if args.active is None:
        from robustbench_ovss.flops import default_active

        args.active = default_active(args.vocab)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device", file=sys.stderr)
        return 2
    t_start = time.perf_counter()
    if args.checkpoint:
        from robustbench_ovss.backends.sam3 import Sam3Backend

        backend = Sam3Backend(args.checkpoint, device=args.device, dtype=args.dtype)
    else:
        backend = build_backend(args.device, args.dtype)
    build_s = time.perf_counter() - t_start
    prompts = ade20k_prompts(args.vocab)
    rng = np.random.default_rng(0)
    images = [(rng.random((512, 683, 3)) * 255).astype(np.uint8) for _ in range(args.images + args.warmup)]
    preview = round(backend.native_size * 2 / 3 / backend.switch.patch_size) * backend.switch.patch_size
    bare = backend.encode_text(prompts)
    extra = torch.randn(len(prompts), 4, bare.features.shape[-1], generator=torch.Generator().manual_seed(0)) * 0.1
    expanded = backend.encode_text(prompts, extra)
    deadline = time.perf_counter() + args.max_seconds
    n = len(prompts)

    def segearth(img):
        feats = backend.encode_image(img)
        for _, dec in backend.decode_iter(feats, bare, range(n), 1):
            dec.mask_logits.sigmoid().amax()  # consume like a fusion step would

    def activesam(img):
        active = list(range(n))
        if n > args.active:
            prev = backend.encode_image(img, preview, presence_only=True)
            presence = backend.presence(prev, bare, range(n), args.bucket)
            active = sorted(torch.topk(presence, args.active).indices.tolist())
        feats = backend.encode_image(img)
        for _, dec in backend.decode_iter(feats, expanded, active, args.bucket):
            dec.mask_logits.sigmoid().amax()

    results = {"device": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else args.device,
               "model": backend.identity,
               "dtype": args.dtype, "vocab": n, "active": args.active, "bucket": args.bucket, "build_s": round(build_s, 1),
               "torch": torch.__version__}
    for name, fn in (("activesam", activesam), ("segearth-ov3", segearth)):
        before = dict(backend.counters)
        total, done = timed(backend, fn, images, args.warmup, deadline)
        calls = {k: (backend.counters[k] - before[k]) / max(1, done + args.warmup) for k in ("decoder_calls", "presence_calls")}
        results[name] = {"images": done, "seconds": round(total, 3), "images_per_s": round(done / total, 3) if total else None,
                         **{k: round(v, 1) for k, v in calls.items()}}
        print(f"{name}: {done} images in {total:.2f} s -> {done / total:.3f} images/s; per image {calls}", flush=True)
    if results["segearth-ov3"]["images_per_s"] and results["activesam"]["images_per_s"]:
        results["speedup"] = round(results["activesam"]["images_per_s"] / results["segearth-ov3"]["images_per_s"], 2)
    # memory per prompt and bf16 equality checks
    feats = backend.encode_image(images[0])
    if args.device.startswith("cuda"):
        peaks = {}
        for k in (1, args.bucket):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            list(backend.decode_iter(feats, bare, range(k), k))
            torch.cuda.synchronize()
            peaks[k] = torch.cuda.max_memory_allocated() - base
        results["peak_gb"] = {str(k): round(v / 2**30, 3) for k, v in peaks.items()}
        results["gb_per_prompt"] = round((peaks[args.bucket] - peaks[1]) / (args.bucket - 1) / 2**30, 3)
    one = backend.decode(feats, bare, range(8), 1)
    many = backend.decode(feats, bare, range(8), 8)
    results["max_abs_diff_bucket_vs_single"] = {f: float((getattr(one, f) - getattr(many, f)).abs().max())
                                                for f in ("mask_logits", "scores", "semantic_logits", "presence")}
    prev = backend.encode_image(images[0], presence_only=True)
    results["max_abs_diff_presence_only"] = float((backend.presence(prev, bare, range(8), 8) - many.presence).abs().max())
    results["total_s"] = round(time.perf_counter() - t_start, 1)
    text = json.dumps(results, indent=1)
    print(text)
    out = args.json or (Path(os.environ["OUT"]) / "gpu_bench.json" if os.environ.get("OUT") else None)
    if out:
        out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
