"""Images/s of the three built-in methods with a tiny SAM 3 on a 150-class vocabulary (CPU).

Run: ``python benchmarks/bench_methods.py [--checkpoint builtin:tiny-random] [--images 6] [--threads 1]``
(not part of the pass/fail suite; absolute numbers depend on the machine, the ratio is what the CI
speed gate looks at). The vocabulary is the first 150 synthetic concept names (150 prompts, as ADE20K),
the images are synthetic scenes (256 x 256). Per method: setup (text encoding, expansion tokens) is
timed once, then ``--warmup`` untimed images and ``--images`` timed ones, the methods taking turns
image by image (so load changes on a shared machine hit every method alike); the table shows images/s,
prompts decoded per image and backend calls per image, and ActiveSAM's speed-up over SegEarth-OV3.
"""

from __future__ import annotations

import argparse
import statistics
import time
from importlib import resources

import torch


def vocabulary(n: int) -> list[list[str]]:
    text = resources.files("robustbench_ovss.configs").joinpath("vocab", "synthetic.txt").read_text(encoding="utf-8")
    names = [line.strip() for line in text.splitlines() if line.strip() and line.strip() != "background"]
    if len(names) < n:
        raise SystemExit(f"synthetic.txt has {len(names)} names, need {n}")
    return [[name] for name in names[:n]]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="builtin:tiny-random")
    ap.add_argument("--classes", type=int, default=150)
    ap.add_argument("--images", type=int, default=6, help="timed images per method")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0 = torch default)")
    ap.add_argument("--methods", nargs="+", default=["activesam", "segearth-ov3", "sam3"])
    ap.add_argument("--size", type=int, default=256, help="image side in pixels")
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    from robustbench_ovss.backends.sam3 import Sam3Backend
    from robustbench_ovss.datasets.synthetic import render_scene
    from robustbench_ovss.method import MethodContext
    from robustbench_ovss.registry import METHODS

    backend = Sam3Backend(args.checkpoint, device="cpu", dtype="fp32")
    vocab = vocabulary(args.classes)
    images = [render_scene(i, size=args.size, vocab_size=min(args.classes, 120)).image
              for i in range(args.warmup + args.images)]
    ctx = MethodContext(vocabulary=vocab, bg_idx=None, prob_thd=0.0, dataset="synthetic", backend=backend,
                        class_names=[v[0] for v in vocab])
    print(f"backend {backend!r}; {len(vocab)} classes; {args.images} timed images of {args.size}x{args.size}; "
          f"torch threads {torch.get_num_threads()}")
    methods, setup_s = {}, {}
    for name in args.methods:
        methods[name] = METHODS.get(name)()
        t0 = time.perf_counter()
        methods[name].setup(ctx)
        setup_s[name] = time.perf_counter() - t0
    for image in images[: args.warmup]:
        for m in methods.values():
            m.predict(image)
    # round robin over the methods, image by image, so that a change in machine load hits all alike
    times = {name: [] for name in methods}
    decoded = {name: [] for name in methods}
    calls = {name: dict.fromkeys(("decoder_calls", "presence_calls", "image_encoder_calls"), 0) for name in methods}
    for image in images[args.warmup :]:
        for name, m in methods.items():
            before = dict(backend.counters)
            t0 = time.perf_counter()
            m.predict(image)
            times[name].append(time.perf_counter() - t0)
            decoded[name].append(m.stats().get("prompts_decoded", 0))
            for k in calls[name]:
                calls[name][k] += backend.counters[k] - before[k]
    rows = {}
    for name in methods:
        n = len(times[name])
        per_image = {k: v / n for k, v in calls[name].items()}
        rows[name] = (n / sum(times[name]), statistics.median(times[name]), setup_s[name],
                      statistics.mean(decoded[name]), per_image)
    print(f"{'method':14s} {'img/s':>8s} {'median s':>9s} {'setup s':>8s} {'decoded':>8s} {'dec calls':>9s} {'pres calls':>10s} {'img enc':>7s}")
    for name, (ips, med, setup_s, dec, calls) in rows.items():
        print(f"{name:14s} {ips:8.3f} {med:9.3f} {setup_s:8.2f} {dec:8.1f} {calls['decoder_calls']:9.1f} "
              f"{calls['presence_calls']:10.1f} {calls['image_encoder_calls']:7.1f}")
    if "activesam" in rows and "segearth-ov3" in rows:
        print(f"activesam / segearth-ov3 images/s: {rows['activesam'][0] / rows['segearth-ov3'][0]:.2f}x")
    return 0


# -- pytest-benchmark entry points (`pytest benchmarks/bench_methods.py --benchmark-enable`), so that
# `--benchmark-autosave` / `--benchmark-compare` track the tiny-model forward between commits too.
try:
    import pytest
except ImportError:  # pragma: no cover - the script above needs only torch
    pytest = None

if pytest is not None:

    @pytest.fixture(scope="module")
    def _setup():
        from robustbench_ovss.backends.sam3 import Sam3Backend
        from robustbench_ovss.datasets.synthetic import render_scene

        before = torch.get_num_threads()
        torch.set_num_threads(1)
        backend = Sam3Backend("builtin:tiny-random", device="cpu", dtype="fp32")
        image = render_scene(0, size=256, vocab_size=120).image
        yield backend, image
        torch.set_num_threads(before)

    @pytest.mark.parametrize("method", ["activesam", "segearth-ov3", "sam3"])
    def test_method_predict_150_classes(benchmark, _setup, method: str) -> None:
        from robustbench_ovss.method import MethodContext
        from robustbench_ovss.registry import METHODS

        backend, image = _setup
        vocab = vocabulary(150)
        m = METHODS.get(method)()
        m.setup(MethodContext(vocabulary=vocab, bg_idx=None, prob_thd=0.0, dataset="synthetic", backend=backend,
                              class_names=[v[0] for v in vocab]))
        pred = benchmark.pedantic(m.predict, args=(image,), rounds=3, iterations=1, warmup_rounds=1)
        assert tuple(pred.shape) == image.shape[:2]
        benchmark.extra_info["prompts_decoded"] = m.stats().get("prompts_decoded")


if __name__ == "__main__":
    raise SystemExit(main())
