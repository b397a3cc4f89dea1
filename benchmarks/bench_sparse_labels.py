#!/usr/bin/env python
"""Labels without the dense [C, H, W] score map vs the dense path (issue #14, item 1).

ActiveSAM works on the classes it decoded only; SegEarth-OV3 keeps a running per-pixel best.

For C = 21, 150 and 847 classes (the packaged voc21, ade20k and ade847 vocabularies) on one 512x683
image, the tiny random SAM 3 (`builtin:tiny-random`, CPU, 1 thread): per case, the time of ``predict``
(decoded classes only) and of ``labels(class_scores(image))`` (the dense path, kept as the score-map
option and the oracle), alternated, ``--repeats`` rounds each; the labels are compared every time.
The score-map footprint is computed (float32 K x H x W vs C x H x W), not measured.

    .venv/bin/python benchmarks/bench_sparse_labels.py [--repeats 3]

Not part of the pass/fail suite; read the ratios, measured side by side in one process.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np
import torch

from robustbench_ovss.datasets.vocabulary import packaged_vocabulary
from robustbench_ovss.method import MethodContext
from robustbench_ovss.registry import BACKENDS, METHODS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    backend = BACKENDS.get("sam3")(checkpoint="builtin:tiny-random", device="cpu", dtype="fp32")
    image = (np.random.default_rng(0).random((512, 683, 3)) * 255).astype(np.uint8)
    print("| method | C | K decoded classes | dense labels(class_scores) s | predict (no dense map) s | speed-up | score map MB dense / decoded | labels equal |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    cases = [("activesam", "voc21", 0), ("activesam", "ade20k", None), ("activesam", "ade847", None),
             ("segearth-ov3", "voc21", 0), ("segearth-ov3", "ade20k", None)]
    for method, name, bg in cases:
        vocab = packaged_vocabulary(name)
        if name == "ade847":
            vocab = [[a[0]] for a in vocab]  # the dataset's default: first names
        m = METHODS.get(method)(**({"hypernym_source": "table"} if method == "activesam" else {"bucket_size": 8}))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m.setup(MethodContext(vocabulary=vocab, bg_idx=bg, prob_thd=0.4 if bg is not None else 0.0, dataset=name,
                                  backend=backend, class_names=[a[0] for a in vocab]))
        m.predict(image)  # warm-up
        dense_t, fast_t, equal = [], [], True
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            want = m.labels(m.class_scores(image))
            t1 = time.perf_counter()
            got = m.predict(image)
            t2 = time.perf_counter()
            dense_t.append(t1 - t0)
            fast_t.append(t2 - t1)
            equal &= bool(torch.equal(want, got))
        k = len(m.stats().get("active", range(len(vocab))))
        c = len(vocab)
        mb = 512 * 683 * 4 / 2**20
        d, f = statistics.median(dense_t), statistics.median(fast_t)
        print(f"| {method} | {c} | {k if method == 'activesam' else '-'} | {d:.3f} | {f:.3f} | {d / f:.2f}x | {c * mb:.0f} / {k * mb if method == 'activesam' else 3 * mb:.0f} | {equal} |")


if __name__ == "__main__":
    main()
