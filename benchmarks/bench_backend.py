"""SAM 3 backend speed and memory on the CPU (pytest-benchmark; outside the pass/fail suite).

    python -m pytest benchmarks/bench_backend.py --benchmark-enable -s -p no:randomly

Two random-weight models: ``tiny`` (builtin:tiny-random, 336 px) and ``mid`` (ViT 4 x 192 at 504 px,
DETR width 128, 50 queries: ``robustbench_ovss.bench.MID_CONFIG``, built in memory). Measured, one torch
thread:

- decode of N = 32 and N = 150 prompts on one cached image: one decoder call per prompt (SegEarth-OV3
  style) vs buckets of 32 (ActiveSAM style);
- presence-only pass vs full decode for 32 prompts;
- peak memory per prompt of a decode bucket (slope between buckets of 4 and 32 prompts of the running
  total of the profiler's CPU allocation events: CPU tensors bypass tracemalloc).

The last test prints the ratios (absolute times depend on the machine; the ratios are the result).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np
import pytest
import torch

RESULTS: dict[tuple[str, str, int], float] = {}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@cache
def backend(kind: str) -> Any:
    from robustbench_ovss.bench import random_backend

    return random_backend(kind)


def _words(n: int) -> list[str]:
    from robustbench_ovss.backends.tiny import tiny_word_list

    return tiny_word_list()[100:100 + n]


@cache
def _prepared(kind: str, n: int) -> tuple[Any, Any, Any, Any]:
    b = backend(kind)
    image = (np.random.default_rng(0).random((480, 640, 3)) * 255).astype(np.uint8)
    feats = b.encode_image(image)
    preview = b.encode_image(image, b.native_size * 2 // 3, presence_only=True)
    return b, feats, preview, b.encode_text(_words(n))


def _run(benchmark: Any, key: tuple[str, str, int], fn: Callable[[], Any], rounds: int) -> None:
    benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=1)
    if benchmark.stats is not None:
        RESULTS[key] = benchmark.stats.stats.median


@pytest.mark.parametrize("kind", ["tiny", "mid"])
@pytest.mark.parametrize("n", [32, 150])
@pytest.mark.parametrize("mode", ["per_prompt", "bucket32"])
def test_decode(benchmark: Any, kind: str, n: int, mode: str) -> None:
    b, feats, _, text = _prepared(kind, n)
    bucket = 1 if mode == "per_prompt" else 32
    rounds = 3 if kind == "tiny" else 1

    def run() -> None:
        for _ in b.decode_iter(feats, text, range(n), bucket):  # consume bucket by bucket, as methods fuse
            pass

    benchmark.group = f"decode {kind} N={n}"
    _run(benchmark, (kind, mode, n), run, rounds)


@pytest.mark.parametrize("kind", ["tiny", "mid"])
def test_presence_only(benchmark: Any, kind: str) -> None:
    b, _, preview, text = _prepared(kind, 32)
    benchmark.group = f"presence {kind} N=32"
    _run(benchmark, (kind, "presence_preview", 32), lambda: b.presence(preview, text, range(32), 32), 3)


@pytest.mark.parametrize("kind", ["tiny", "mid"])
def test_presence_same_resolution(benchmark: Any, kind: str) -> None:
    b, feats, _, text = _prepared(kind, 32)
    benchmark.group = f"presence {kind} N=32"
    _run(benchmark, (kind, "presence_full_res", 32), lambda: b.presence(feats, text, range(32), 32), 3)


def peak_bytes(kind: str, n: int) -> float:
    """Peak extra CPU memory of decoding ``n`` prompts in one bucket (``robustbench_ovss.bench.peak_memory``)."""
    from robustbench_ovss.bench import peak_memory

    b, feats, _, text = _prepared(kind, 32)
    _, peak = peak_memory(lambda: b.decode(feats, text, range(n), n), b.device)
    return float(peak)


@pytest.mark.parametrize("kind", ["tiny", "mid"])
def test_memory_per_prompt(kind: str) -> None:
    small, large = peak_bytes(kind, 4), peak_bytes(kind, 32)
    RESULTS[(kind, "bytes_per_prompt", 32)] = (large - small) / 28
    print(f"\n{kind}: peak extra memory {small / 1e6:.1f} MB (bucket of 4), {large / 1e6:.1f} MB (bucket of 32): "
          f"{(large - small) / 28 / 1e6:.2f} MB per prompt")


def test_zz_ratios() -> None:
    if not any(m in ("per_prompt", "bucket32") for _, m, _ in RESULTS):
        pytest.skip("timings need --benchmark-enable")
    lines = ["", "| model | N | per-prompt calls s | buckets of 32 s | speed-up | presence@2/3 / full decode (N=32) |",
             "|---|---:|---:|---:|---:|---:|"]
    for kind in ("tiny", "mid"):
        for n in (32, 150):
            per, buck = RESULTS.get((kind, "per_prompt", n)), RESULTS.get((kind, "bucket32", n))
            if per is None or buck is None:
                continue
            pres = RESULTS.get((kind, "presence_preview", 32))
            pres_ratio = f"{pres / RESULTS[(kind, 'bucket32', 32)]:.2f}" if pres and n == 32 else ""
            lines.append(f"| {kind} | {n} | {per:.3f} | {buck:.3f} | {per / buck:.2f}x | {pres_ratio} |")
    for kind in ("tiny", "mid"):
        if (kind, "bytes_per_prompt", 32) in RESULTS:
            lines.append(f"peak memory per prompt ({kind}): {RESULTS[(kind, 'bytes_per_prompt', 32)] / 1e6:.2f} MB")
    print("\n".join(lines))
