"""Corruption API behaviour: every corruption x severity, determinism, RNG hygiene, errors."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest

from robustbench_ovss.corruptions import corrupt, corrupt_pair, image_seed, moves_pixels, numpy_seed
from robustbench_ovss.errors import CorruptionError
from robustbench_ovss.registry import CORRUPTIONS, EXTRA_CORRUPTION_NAMES, IMAGENET_C_NAMES

ALL = (*IMAGENET_C_NAMES, "glass_blur_fast", *EXTRA_CORRUPTION_NAMES)


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth colour image with texture (not plain noise, so blurs and thresholds have work to do)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([128 + 100 * np.sin(xx / 5.0), 128 + 100 * np.cos(yy / 4.0), (xx * 7 + yy * 3) % 256], -1)
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


def _rng_state_equal(a: tuple, b: tuple) -> bool:
    return all(np.array_equal(x, y) if isinstance(x, np.ndarray) else x == y for x, y in zip(a, b))


@pytest.mark.parametrize("shape", [(32, 40), (24, 56)])
def test_every_corruption_and_severity_keeps_shape_dtype_and_input(shape: tuple[int, int]) -> None:
    img = _image(*shape)
    before = img.copy()
    state = np.random.get_state()
    for name in ALL:
        for severity in range(1, 6):
            out = corrupt(img, name, severity, seed=1234 + severity)
            assert out.dtype == np.uint8 and out.shape == img.shape, (name, severity)
            assert np.array_equal(img, before), f"{name} modified its input"
            assert not np.shares_memory(out, img), name
    assert _rng_state_equal(state, np.random.get_state()), "the global numpy RNG state changed"


def test_corruptions_change_the_image_and_grow_with_severity() -> None:
    img = _image(48, 64, seed=3)
    for name in ALL:
        diffs = [np.abs(corrupt(img, name, s, 5).astype(float) - img).mean() for s in (1, 5)]
        assert diffs[1] > 0, f"{name} severity 5 leaves the image unchanged"
        if name not in ("contrast", "saturate", "brightness", "spatter", "glass_blur", "glass_blur_fast"):
            assert diffs[1] >= diffs[0] * 0.9, (name, diffs)


def test_same_arguments_same_bytes_and_seed_matters_for_random_ones() -> None:
    img = _image(32, 40, seed=1)
    for name in ALL:
        a = corrupt(img, name, 3, seed=7)
        assert np.array_equal(a, corrupt(img, name, 3, seed=7)), name
    for name in ("gaussian_noise", "impulse_noise", "glass_blur", "glass_blur_fast", "elastic_transform", "fog", "rain"):
        assert not np.array_equal(corrupt(img, name, 3, seed=7), corrupt(img, name, 3, seed=8)), name


def test_global_rng_state_restored_even_on_error_and_not_consumed() -> None:
    np.random.seed(99)
    expected = np.random.rand(3)
    np.random.seed(99)
    corrupt(_image(32, 40), "gaussian_noise", 2, seed=5)
    corrupt(_image(32, 40), "impulse_noise", 2, seed=5)
    with pytest.raises(CorruptionError):
        corrupt(np.zeros((2, 2, 3), np.uint8), "fog", 1, seed=5)
    assert np.array_equal(np.random.rand(3), expected)


_HASH_SCRIPT = """
import hashlib, json, sys
import numpy as np
sys.path.insert(0, {tests!r})
from test_corruptions_api import ALL, _image
from robustbench_ovss.corruptions import corrupt
img = _image(24, 56, seed=11)
np.random.seed(12345)  # a different global state must not matter
out = {{n: hashlib.sha256(b"".join(corrupt(img, n, s, 2**40 + s).tobytes() for s in range(1, 6))).hexdigest() for n in reversed(ALL)}}
print(json.dumps(out))
"""


def test_outputs_identical_in_another_process_and_call_order() -> None:
    from pathlib import Path

    img = _image(24, 56, seed=11)
    here = {n: hashlib.sha256(b"".join(corrupt(img, n, s, 2**40 + s).tobytes() for s in range(1, 6))).hexdigest() for n in ALL}
    script = _HASH_SCRIPT.format(tests=str(Path(__file__).parent))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    there = json.loads(proc.stdout.strip().splitlines()[-1])
    assert there == here


def test_unknown_name_suggests_and_bad_severity_is_clear() -> None:
    img = _image(32, 40)
    with pytest.raises(CorruptionError, match="did you mean 'gaussian_noise'"):
        corrupt(img, "gausian_noise", 1, 0)
    for bad in (0, 6, -1, 2.5, True, "3"):
        with pytest.raises(CorruptionError, match="severity must be an integer in 1..5"):
            corrupt(img, "fog", bad, 0)  # type: ignore[arg-type]
    with pytest.raises(CorruptionError, match="uint8 HxWx3"):
        corrupt(img.astype(np.float32), "fog", 1, 0)
    with pytest.raises(CorruptionError, match="too small"):
        corrupt(np.zeros((3, 40, 3), np.uint8), "pixelate", 5, 0)


def test_moves_pixels_and_pairs() -> None:
    assert [n for n in ALL if moves_pixels(n)] == ["elastic_transform"]
    img, lab = _image(32, 40), (np.arange(32 * 40).reshape(32, 40) % 7).astype(np.uint8)
    out, lab2 = corrupt_pair(img, lab, "fog", 2, 3)
    assert lab2 is lab and np.array_equal(out, corrupt(img, "fog", 2, 3))
    out, lab2 = corrupt_pair(img, lab, "elastic_transform", 5, 3)
    assert np.array_equal(out, corrupt(img, "elastic_transform", 5, 3))
    assert lab2.dtype == lab.dtype and lab2.shape == lab.shape and not np.array_equal(lab2, lab)


def test_registry_metadata() -> None:
    for name in IMAGENET_C_NAMES:
        c = CORRUPTIONS.get(name)
        assert c.family == "imagenet-c" and c.matches_reference and c.reference.startswith("imagecorruptions-imaug")
    fast = CORRUPTIONS.get("glass_blur_fast")
    assert not fast.matches_reference and "not equal" in fast.reference
    for name in EXTRA_CORRUPTION_NAMES:
        assert CORRUPTIONS.get(name).family == "extra"


def test_image_seed_is_stable_and_folds_to_32_bits() -> None:
    s = image_seed(0, "voc21", "2007_000033", "fog", 3)
    assert s == int.from_bytes(hashlib.sha256(b"0|voc21|2007_000033|fog|3").digest()[:8], "big")
    assert 0 <= numpy_seed(s) < 2**32 and numpy_seed(5) == 5
    assert image_seed(1, "voc21", "2007_000033", "fog", 3) != s


def test_registration_module_imports_no_heavy_library() -> None:
    code = (
        "import sys; import robustbench_ovss.corruptions.imagenet_c, robustbench_ovss.corruptions.extras, "
        "robustbench_ovss.corruptions.cache; "
        "heavy = [m for m in ('imagecorruptions', 'albumentations', 'cv2', 'skimage', 'numba', 'scipy.ndimage', 'torch') "
        "if m in sys.modules]; print(heavy)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_threads_do_not_interleave_global_rng_draws() -> None:
    from concurrent.futures import ThreadPoolExecutor

    img = _image(32, 40, seed=5)
    jobs = [(n, s) for n in ("gaussian_noise", "shot_noise", "fog", "motion_blur", "elastic_transform", "snow") for s in (1, 5)]
    serial = [corrupt(img, n, s, 99) for n, s in jobs]
    with ThreadPoolExecutor(4) as ex:
        threaded = list(ex.map(lambda job: corrupt(img, job[0], job[1], 99), jobs * 3))
    for i, out in enumerate(threaded):
        assert np.array_equal(out, serial[i % len(jobs)]), jobs[i % len(jobs)]
