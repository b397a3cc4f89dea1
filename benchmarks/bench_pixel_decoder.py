#!/usr/bin/env python
"""Split pixel decoder vs the model's own (issue #14), mid-size SAM 3 on the CPU, fp32, one thread.

One mid random model (``robustbench_ovss.bench.MID_CONFIG``) wrapped twice: ``pixel_decoder="split"``
(the fp32 default, :mod:`robustbench_ovss.backends.pixel_decoder`) and ``"reference"``. One 512 x 683
image; timed units alternate split, reference, reference, split (``bench_prompt_pass.alternated``):

- decode per prompt, one prompt per call (SegEarth-OV3, sam3) and one bucket of N (ActiveSAM's decode);
- peak extra memory of one decode bucket of N (profiler allocation events);
- the largest difference of the mask and semantic logits relative to their largest magnitude, next to
  the same figure for the reference path decoded one prompt per call vs in one bucket (the round-off
  that the bucket size, not part of any identity, already causes);
- FLOPs per decoded prompt, reference vs split, of the mid and the real architecture
  (``FlopModel(pixel_decoder=...)``).

    .venv/bin/python benchmarks/bench_pixel_decoder.py [--prompts 8] [--rounds 2]

Not part of the pass/fail suite; read the ratios, measured side by side in one process.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_prompt_pass import alternated, peak_bytes  # noqa: E402  (one copy of the timing protocol)

from robustbench_ovss.backends.sam3 import Sam3Backend  # noqa: E402
from robustbench_ovss.backends.tiny import tiny_word_list  # noqa: E402
from robustbench_ovss.bench import random_model  # noqa: E402


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=8, help="prompts per measurement (N)")
    ap.add_argument("--rounds", type=int, default=2, help="rounds of split, reference, reference, split")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model, tok = random_model("mid")
    backends = {key: Sam3Backend.from_model(model, tok, identity="mid-random", pixel_decoder="split" if key else "reference")
                for key in (True, False)}  # True = split
    image = (np.random.default_rng(0).random((512, 683, 3)) * 255).astype(np.uint8)
    n = args.prompts
    words = tiny_word_list()[100:100 + n]
    feats = {k: b.encode_image(image) for k, b in backends.items()}
    text = {k: b.encode_text(words) for k, b in backends.items()}

    split, ref = (backends[k].decode(feats[k], text[k], range(n), n) for k in (True, False))
    ref1 = backends[False].decode(feats[False], text[False], range(n), 1)
    for field in ("mask_logits", "semantic_logits"):
        print(f"{field}: max |split - reference| / max |reference| = {_relative(getattr(split, field), getattr(ref, field)):.1e}"
              f" (reference one per call vs one bucket: {_relative(getattr(ref1, field), getattr(ref, field)):.1e})")
    print(f"scores and presence identical: {torch.equal(split.scores, ref.scores) and torch.equal(split.presence, ref.presence)}")

    single = alternated({k: (lambda i, k=k: backends[k].decode(feats[k], text[k], [i], 1)) for k in backends}, args.rounds, n)
    bucket = alternated({k: (lambda i, k=k: backends[k].decode(feats[k], text[k], range(n), n)) for k in backends}, args.rounds)
    print("\n| decode (mid, CPU, 1 thread) | reference CPU s/prompt | split CPU s/prompt | speed-up (CPU) | speed-up (wall) |")
    print("|---|---:|---:|---:|---:|")
    for label, t, per in (("one prompt per call", single, 1), (f"one bucket of {n}", bucket, n)):
        old, new = t["cpu"][False] / per, t["cpu"][True] / per
        print(f"| {label} | {old:.4f} | {new:.4f} | {old / new:.3f}x | {t['wall'][False] / t['wall'][True]:.3f}x |")
    peaks = {k: peak_bytes(b, feats[k], text[k], n) / 2**20 for k, b in backends.items()}
    print(f"\npeak extra memory of one bucket of {n}: reference {peaks[False]:.1f} MB, split {peaks[True]:.1f} MB")

    from robustbench_ovss.bench import MID_IMAGE_SIZE
    from robustbench_ovss.flops import FlopModel

    for name, config, size in (("mid", model.config, MID_IMAGE_SIZE), ("real", None, 1008)):
        f = {pd: FlopModel(config, pixel_decoder=pd) for pd in ("reference", "split")}
        dec = {pd: fm.decode(size) / 1e9 for pd, fm in f.items()}
        extra = (f["split"].image(size) - f["reference"].image(size)) / 1e9
        print(f"FLOPs {name} @{size}: decode {dec['reference']:.2f} -> {dec['split']:.2f} GFLOPs per prompt "
              f"({dec['reference'] / dec['split']:.2f}x), +{extra:.2f} GFLOPs once per image")


if __name__ == "__main__":
    main()
