#!/usr/bin/env python
"""Prompts per decoder call on this device: time per prompt and peak memory by bucket size (issue #14, item 4).

    .venv/bin/python benchmarks/bench_buckets.py [--model mid] [--threads 1] [--rounds 2] [--device cpu]

On the mid random SAM 3 (``robustbench_ovss.bench.MID_CONFIG``) and one 512 x 683 random image encoded
once: the full decode of 32 prompts and the presence-only pass (ActiveSAM's preview, at 2/3 of the native
size) of 64 prompts, in buckets of 1, 2, 4, 8, 16, 32, each bucket size timed ``--rounds`` times in an
order that alternates (1..32, 32..1, ...); then ``segearth-ov3`` and ``sam3`` ``predict`` on a 21-class
vocabulary with buckets of 1, 8 and 32. Peak memory is the extra tensor memory of one call
(``bench.peak_memory``), measured apart from the timings. Labels are compared across bucket sizes.
Not part of the pass/fail suite: read the ratios, measured side by side in one process.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np
import torch

BUCKETS = (1, 2, 4, 8, 16, 32)


def main(argv: list[str] | None = None) -> int:
    from robustbench_ovss.bench import peak_memory, random_backend
    from robustbench_ovss.datasets.vocabulary import packaged_vocabulary
    from robustbench_ovss.method import MethodContext
    from robustbench_ovss.registry import METHODS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mid", choices=["mid", "tiny", "real"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0 = torch's default)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--skip-methods", action="store_true", help="backend calls only")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    b = random_backend(args.model, args.device)
    image = (np.random.default_rng(0).random((512, 683, 3)) * 255).astype(np.uint8)
    words = [a[0] for a in packaged_vocabulary("ade847")][:64]
    text = b.encode_text(words)
    feats = b.encode_image(image)
    preview = b.encode_image(image, round(b.native_size * 2 / 3 / 14) * 14, presence_only=True)
    print(f"{b!r}; torch threads {torch.get_num_threads()}")

    def decode(bucket: int) -> None:
        for _ in b.decode_iter(feats, text, range(32), bucket):  # consumed bucket by bucket, as the methods do
            pass

    def presence(bucket: int) -> None:
        b.presence(preview, text, range(64), bucket)

    rows = []
    for kind, fn, n in (("decode", decode, 32), ("presence", presence, 64)):
        fn(BUCKETS[-1])  # warm-up
        times: dict[int, list[float]] = {k: [] for k in BUCKETS}
        for r in range(args.rounds):
            for k in BUCKETS if r % 2 == 0 else BUCKETS[::-1]:
                t0 = time.perf_counter()
                fn(k)
                b.synchronize()
                times[k].append(time.perf_counter() - t0)
        single = statistics.median(times[1])
        for k in BUCKETS:
            _, peak = peak_memory(lambda k=k: fn(k), b.device)
            med = statistics.median(times[k])
            rows.append((kind, n, k, med / n, med / single, peak / 2**20))
    print("\n| pass | prompts | bucket | s / prompt | vs bucket 1 | peak extra MB (one call) |")
    print("|---|---:|---:|---:|---:|---:|")
    for kind, n, k, per, rel, mb in rows:
        print(f"| {kind} | {n} | {k} | {per:.4f} | {rel:.2f}x | {mb:.0f} |")
    if args.skip_methods:
        return 0

    vocab = packaged_vocabulary("voc21")
    ctx = MethodContext(vocabulary=vocab, bg_idx=0, prob_thd=0.4, dataset="voc21", backend=b,
                        class_names=[a[0] for a in vocab])
    cases = [("segearth-ov3", 1), ("segearth-ov3", 8), ("segearth-ov3", 32), ("sam3", 1), ("sam3", 8)]
    methods = {}
    for name, k in cases:
        m = METHODS.get(name)(bucket_size=k)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m.setup(ctx)
        methods[(name, k)] = m
        m.predict(image)  # warm-up
    times = {c: [] for c in cases}
    labels = {}
    for r in range(args.rounds):
        for c in cases if r % 2 == 0 else cases[::-1]:
            t0 = time.perf_counter()
            labels[c] = methods[c].predict(image)
            b.synchronize()
            times[c].append(time.perf_counter() - t0)
    print("\n| method | bucket | predict s (21 classes, 512x683) | vs bucket 1 | peak extra MB | labels equal bucket 1 |")
    print("|---|---:|---:|---:|---:|---|")
    for name, k in cases:
        _, peak = peak_memory(lambda: methods[(name, k)].predict(image), b.device)
        med = statistics.median(times[(name, k)])
        base = statistics.median(times[(name, 1)])
        same = bool(torch.equal(labels[(name, k)], labels[(name, 1)]))
        print(f"| {name} | {k} | {med:.2f} | {med / base:.2f}x | {peak / 2**20:.0f} | {same} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
