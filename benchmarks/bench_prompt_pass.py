#!/usr/bin/env python
"""Image-only work once per image vs the full forward per prompt (issue #14, item 3), mid-size SAM 3 on the CPU.

The mid config of ``bench_backend.py`` (ViT 4 x 192 at 504 px, DETR width 128 with 2 encoder and 3
decoder layers, 50 queries, random weights, one torch thread), one 480 x 640 image. One model, wrapped
twice: ``Sam3Backend(once_per_image=True)`` (the default) and ``once_per_image=False`` (one ``Sam3Model``
forward per bucket, the previous path). Timed units alternate new, old, old, new, so that a shared
machine's changing load falls on both paths alike; each row gives the median per unit and their ratio,
in the process's CPU time (one torch thread: the work itself, little moved by other processes) and in
wall-clock time:

- decode time per prompt, one prompt per call (SegEarth-OV3, sam3; a unit = one call, N prompts per
  round) and one bucket of N (ActiveSAM; a unit = one bucket);
- presence-only pass per prompt at the 2/3 preview (336 px), one bucket of N (a unit = one bucket);
- peak extra CPU memory of one decode bucket (running total of the profiler's allocation events) and its
  slope per prompt between buckets of 4 and N;
- ``predict`` of segearth-ov3 (voc21, 21 prompts, one per call) and activesam (ade20k, 150 prompts
  previewed, K decoded in buckets of 32) on the same image; the fraction of pixels whose labels differ.

The largest difference of each decoded output between the two paths is printed too.

    .venv/bin/python benchmarks/bench_prompt_pass.py [--prompts 32] [--rounds 2] [--no-methods]

Not part of the pass/fail suite; read the ratios, measured side by side in one process.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robustbench_ovss.bench import random_model  # noqa: E402  (the mid config, one copy)

from robustbench_ovss.backends.sam3 import Sam3Backend  # noqa: E402
from robustbench_ovss.backends.tiny import tiny_word_list  # noqa: E402

FIELDS = ("mask_logits", "scores", "semantic_logits", "presence")


def alternated(units: dict[bool, Callable[[int], Any]], rounds: int, per_round: int = 1) -> dict[str, dict[bool, float]]:
    """Median seconds of one unit per path; ``units[key](i)`` runs unit i (e.g. prompt i) of path ``key``.

    Each round runs units 0 .. per_round-1, each in the order new, old, old, new, after one warm-up unit each.
    Returns {"cpu": ..., "wall": ...}: the process's CPU time (one torch thread: what the work costs,
    little moved by other processes on a shared machine) and wall-clock time.
    """
    for unit in units.values():
        unit(0)
    times: dict[str, dict[bool, list[float]]] = {"cpu": {True: [], False: []}, "wall": {True: [], False: []}}
    for _ in range(rounds):
        for i in range(per_round):
            for key in (True, False, False, True):
                c0, t0 = time.process_time(), time.perf_counter()
                units[key](i)
                times["wall"][key].append(time.perf_counter() - t0)
                times["cpu"][key].append(time.process_time() - c0)
    return {kind: {k: statistics.median(v) for k, v in by.items()} for kind, by in times.items()}


def peak_bytes(b: Sam3Backend, feats: Any, text: Any, n: int) -> float:
    """Peak extra CPU memory of decoding ``n`` prompts in one bucket (profiler allocation events in time order)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = b.decode(feats, text, range(n), n)
        del out
    current = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        current += event.self_cpu_memory_usage
        peak = max(peak, current)
    return float(peak)


def method_rows(backends: dict[bool, Sam3Backend], image: np.ndarray, rounds: int) -> list[str]:
    from robustbench_ovss.datasets.vocabulary import packaged_vocabulary
    from robustbench_ovss.method import MethodContext
    from robustbench_ovss.registry import METHODS

    rows = []
    for method, dataset, bg in (("segearth-ov3", "voc21", 0), ("activesam", "ade20k", None)):
        vocab = packaged_vocabulary(dataset)
        ms = {}
        for key, b in backends.items():
            m = METHODS.get(method)(**({"hypernym_source": "table"} if method == "activesam" else {}))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                m.setup(MethodContext(vocabulary=vocab, bg_idx=bg, prob_thd=0.4 if bg is not None else 0.0,
                                      dataset=dataset, backend=b, class_names=[a[0] for a in vocab]))
            ms[key] = m
        labels: dict[bool, torch.Tensor] = {}

        def run(key: bool) -> None:
            labels[key] = ms[key].predict(image)

        t = alternated({k: (lambda i, k=k: run(k)) for k in ms}, rounds)
        c, w = t["cpu"], t["wall"]
        differ = float((labels[True] != labels[False]).float().mean())
        k = len(ms[True].stats().get("active", range(len(vocab))))
        rows.append(f"| {method} | {dataset} | {len(vocab)} | {k} | {c[False]:.2f} | {c[True]:.2f} | "
                    f"{c[False] / c[True]:.3f}x | {w[False] / w[True]:.3f}x | {differ:.2e} |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=32, help="prompts per decode measurement (N)")
    ap.add_argument("--rounds", type=int, default=2, help="rounds of new, old, old, new")
    ap.add_argument("--no-methods", action="store_true", help="skip the predict comparison")
    args = ap.parse_args()
    if args.prompts <= 4:
        ap.error("--prompts must be more than 4 (the memory per prompt is the slope between buckets of 4 and N)")
    torch.set_num_threads(1)
    model, tok = random_model("mid")
    # the model's own mask decoder on both sides: bench_pixel_decoder.py measures the split one
    backends = {on: Sam3Backend.from_model(model, tok, identity="mid-random", once_per_image=on, pixel_decoder="reference")
                for on in (True, False)}
    image = (np.random.default_rng(0).random((480, 640, 3)) * 255).astype(np.uint8)
    n = args.prompts
    words = tiny_word_list()[100:100 + n]
    feats = {k: b.encode_image(image) for k, b in backends.items()}
    preview = {k: b.encode_image(image, b.native_size * 2 // 3, presence_only=True) for k, b in backends.items()}
    text = {k: b.encode_text(words) for k, b in backends.items()}

    out = {k: b.decode(feats[k], text[k], range(n), n) for k, b in backends.items()}
    diffs = ", ".join(f"{f} {float((getattr(out[True], f) - getattr(out[False], f)).abs().max()):.1e}" for f in FIELDS)
    print(f"mid SAM 3, {n} prompts, largest |new - old|: {diffs}")
    del out

    def single(key: bool) -> Callable[[int], Any]:
        return lambda i: backends[key].decode(feats[key], text[key], [i], 1)

    def bucket(key: bool) -> Callable[[int], Any]:
        return lambda i: backends[key].decode(feats[key], text[key], range(n), n)

    def presence(key: bool) -> Callable[[int], Any]:
        return lambda i: backends[key].presence(preview[key], text[key], range(n), n)

    print("\n| pass (mid, CPU, 1 thread) | units per path | old CPU s/prompt | new CPU s/prompt | speed-up (CPU) | "
          "speed-up (wall) |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, make, per_round, size in (("decode, one prompt per call", single, n, 1),
                                         (f"decode, one bucket of {n}", bucket, 1, n),
                                         (f"presence @336, one bucket of {n}", presence, 2, n)):
        t = alternated({k: make(k) for k in backends}, args.rounds, per_round)
        c, w = t["cpu"], t["wall"]
        print(f"| {label} | {2 * args.rounds * per_round} | {c[False] / size:.4f} | {c[True] / size:.4f} | "
              f"{c[False] / c[True]:.3f}x | {w[False] / w[True]:.3f}x |")

    print("\n| decode bucket | old peak MB | new peak MB | old MB/prompt | new MB/prompt |")
    print("|---|---:|---:|---:|---:|")
    small = {k: peak_bytes(b, feats[k], text[k], 4) for k, b in backends.items()}
    large = {k: peak_bytes(b, feats[k], text[k], n) for k, b in backends.items()}
    slope = {k: (large[k] - small[k]) / (n - 4) for k in backends}
    print(f"| 4 and {n} prompts | {small[False] / 1e6:.1f} / {large[False] / 1e6:.1f} | {small[True] / 1e6:.1f} / "
          f"{large[True] / 1e6:.1f} | {slope[False] / 1e6:.2f} | {slope[True] / 1e6:.2f} |")

    if not args.no_methods:
        print("\n| method | vocabulary | C | K decoded | old predict CPU s | new predict CPU s | speed-up (CPU) | "
              "speed-up (wall) | pixels that differ |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        print("\n".join(method_rows(backends, image, args.rounds)))


if __name__ == "__main__":
    main()
