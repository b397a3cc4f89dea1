"""The corruption cache: `ovss-bench corrupt` round trip, verification, tamper detection, resume."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from robustbench_ovss.cli import main
from robustbench_ovss.corruptions import corrupt, corrupt_pair, image_seed
from robustbench_ovss.corruptions.cache import CorruptionCache, generate, image_relpath, leaf_dir
from robustbench_ovss.datasets import Dataset
from robustbench_ovss.errors import CorruptionError
from robustbench_ovss.registry import DATASETS
from test_corruptions_api import _image

DS = "corruptions-test-ds"
assert DS not in DATASETS._builtin_modules


@DATASETS.register(DS)
class TinyDataset(Dataset):
    """Three small images (one id with a sub-directory), labels a function of position."""

    name = DS
    default_root = ""
    classes = [["a"], ["b"], ["c"]]

    def __init__(self, root: str | Path = "", vocab: str | None = None, n: int = 3):
        self.root = Path(root)
        self.items = [("img_0", (32, 40)), ("city/img_1", (24, 56)), ("img_2", (40, 48))][:n]

    @property
    def fingerprint(self) -> str:
        return "tiny-" + "-".join(i for i, _ in self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int) -> tuple[str, np.ndarray, np.ndarray]:
        image_id, (h, w) = self.items[k]
        label = (np.add.outer(np.arange(h) // 8, np.arange(w) // 8) % 3).astype(np.uint8)
        label[0, 0] = 255
        return image_id, _image(h, w, seed=k), label


def _run(out: Path, *extra: str) -> int:
    return main(["corrupt", "--dataset", DS, "--out", str(out), "--data-root", str(out.parent), *extra])


@pytest.fixture()
def cache_dir(tmp_path: Path) -> Path:
    out = tmp_path / "cache"
    rc = _run(out, "--corruptions", "gaussian_noise", "elastic_transform", "--severities", "1", "4", "--seed", "7")
    assert rc == 0
    return out


def test_round_trip_equals_on_the_fly_corruption(cache_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cache = CorruptionCache(cache_dir)
    ds = TinyDataset()
    for k in range(len(ds)):
        image_id, image, label = ds[k]
        for name in ("gaussian_noise", "elastic_transform"):
            for severity in (1, 4):
                got = cache.get(DS, image_id, name, severity, 7, fingerprint=ds.fingerprint)
                assert got is not None
                img, lab = got
                seed = image_seed(7, DS, image_id, name, severity)
                want_img, want_lab = corrupt_pair(image, label, name, severity, seed)
                assert img.dtype == np.uint8 and np.array_equal(img, want_img)
                if name == "elastic_transform":
                    assert lab is not None and lab.dtype == label.dtype and np.array_equal(lab, want_lab)
                else:
                    assert lab is None
    assert (leaf_dir(cache_dir, DS, "gaussian_noise", 4) / "city" / "img_1.png").is_file()
    assert (leaf_dir(cache_dir, DS, "elastic_transform", 1) / "img_0.label.png").is_file()
    assert not (leaf_dir(cache_dir, DS, "gaussian_noise", 1) / "img_0.label.png").exists()


def test_manifest_records_provenance(cache_dir: Path) -> None:
    man = json.loads((leaf_dir(cache_dir, DS, "elastic_transform", 4) / "manifest.json").read_text())
    assert man["dataset"] == DS and man["corruption"] == "elastic_transform" and man["severity"] == 4
    assert man["seed"] == 7 and man["moves_pixels"] is True and man["fingerprint"] == TinyDataset().fingerprint
    assert man["versions"]["imagecorruptions-imaug"] == "1.1.5" and "numpy" in man["versions"]
    assert set(man["files"]) == {"img_0", "city/img_1", "img_2"}
    e = man["files"]["city/img_1"]
    assert e["image"] == "city/img_1.png" and len(e["sha256"]) == 64 and e["shape"] == [24, 56]
    assert e["image_seed"] == image_seed(7, DS, "city/img_1", "elastic_transform", 4)
    assert e["label"] == "city/img_1.label.png" and e["label_dtype"] == "uint8"
    assert not list(cache_dir.rglob(".*.tmp-*")), "temporary files left behind"


def test_tampered_png_is_an_error_naming_the_file(cache_dir: Path) -> None:
    path = leaf_dir(cache_dir, DS, "gaussian_noise", 1) / "img_2.png"
    from PIL import Image

    arr = np.asarray(Image.open(path)).copy()
    arr[0, 0] ^= 1
    Image.fromarray(arr).save(path)
    with pytest.raises(CorruptionError, match=r"img_2\.png does not match its manifest.*regenerate"):
        CorruptionCache(cache_dir).get(DS, "img_2", "gaussian_noise", 1, 7)
    # other entries are still fine
    assert CorruptionCache(cache_dir).get(DS, "img_0", "gaussian_noise", 1, 7) is not None

    label = leaf_dir(cache_dir, DS, "elastic_transform", 4) / "img_0.label.png"
    label.write_bytes(label.read_bytes() + b"\0")
    with pytest.raises(CorruptionError, match=r"img_0\.label\.png does not match"):
        CorruptionCache(cache_dir).get(DS, "img_0", "elastic_transform", 4, 7)

    (leaf_dir(cache_dir, DS, "gaussian_noise", 4) / "img_0.png").unlink()
    with pytest.raises(CorruptionError, match=r"img_0\.png is listed in its manifest but missing"):
        CorruptionCache(cache_dir).get(DS, "img_0", "gaussian_noise", 4, 7)


def test_misses_seed_and_fingerprint_mismatches(cache_dir: Path) -> None:
    cache = CorruptionCache(cache_dir)
    assert cache.get(DS, "img_0", "fog", 1, 7) is None  # corruption not cached
    assert cache.get(DS, "img_0", "gaussian_noise", 2, 7) is None  # severity not cached
    assert cache.get(DS, "nope", "gaussian_noise", 1, 7) is None  # image not cached
    assert cache.get("voc21", "img_0", "gaussian_noise", 1, 7) is None
    with pytest.raises(CorruptionError, match=r"manifest\.json was made with seed 7, the run uses seed 8.*--seed 8"):
        cache.get(DS, "img_0", "gaussian_noise", 1, 8)
    with pytest.raises(CorruptionError, match="other data"):
        cache.get(DS, "img_0", "gaussian_noise", 1, 7, fingerprint="something-else")


def test_rerun_resumes_and_refills_only_what_is_missing(cache_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    leaf = leaf_dir(cache_dir, DS, "gaussian_noise", 4)
    before = (leaf / "img_2.png").stat().st_mtime_ns
    (leaf / "img_0.png").unlink()
    capsys.readouterr()
    assert _run(cache_dir, "--corruptions", "gaussian_noise", "elastic_transform", "--severities", "1", "4", "--seed", "7") == 0
    err = capsys.readouterr().err
    assert "1 images written, 11 already cached" in err and "3/3 images" in err
    assert (leaf / "img_2.png").stat().st_mtime_ns == before
    assert CorruptionCache(cache_dir).get(DS, "img_0", "gaussian_noise", 4, 7) is not None
    # another seed into the same directory is refused, naming the manifest
    assert _run(cache_dir, "--corruptions", "gaussian_noise", "--severities", "1", "--seed", "8") == 2
    assert "holds seed 7, not 8" in capsys.readouterr().err


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["corrupt", "--dataset", "voc2l", "--out", str(tmp_path)]) == 2
    assert "did you mean 'voc21'" in capsys.readouterr().err
    assert _run(tmp_path / "c", "--corruptions", "fgo") == 2
    assert "did you mean 'fog'" in capsys.readouterr().err
    assert _run(tmp_path / "c", "--corruptions", "fog", "--severities", "6") == 2
    err = capsys.readouterr().err
    assert "severities must be in 1..5" in err
    assert err.count("ovss-bench corrupt") == 1 and err.count("\n") == 1, err  # one prefix, one line


def test_limit_globs_and_worker_processes_give_the_same_files(tmp_path: Path) -> None:
    assert _run(tmp_path / "a", "--corruptions", "zoom_*", "--severities", "2", "--limit", "2") == 0
    man_a = json.loads((leaf_dir(tmp_path / "a", DS, "zoom_blur", 2) / "manifest.json").read_text())
    assert set(man_a["files"]) == {"img_0", "city/img_1"}
    counts = generate(TinyDataset(n=2), DS, ["zoom_blur"], [2], tmp_path / "b", workers=1, stream=io.StringIO())
    assert counts == {"images": 2, "written": 2, "skipped": 0, "stopped": 0}
    man_b = json.loads((leaf_dir(tmp_path / "b", DS, "zoom_blur", 2) / "manifest.json").read_text())
    assert {k: v["sha256"] for k, v in man_a["files"].items()} == {k: v["sha256"] for k, v in man_b["files"].items()}


def test_image_ids_must_be_safe_relative_paths() -> None:
    assert str(image_relpath("frankfurt/frankfurt_000000_000294")) == "frankfurt/frankfurt_000000_000294"
    for bad in ("../x", "/abs", "a//b", "a/./b", "", "a\\b"):
        with pytest.raises(CorruptionError, match="cannot be a file name"):
            image_relpath(bad)


def test_cached_image_equals_direct_corrupt_for_a_plain_corruption(cache_dir: Path) -> None:
    image_id, image, _ = TinyDataset()[1]
    img, _ = CorruptionCache(cache_dir).get(DS, image_id, "gaussian_noise", 4, 7)  # type: ignore[misc]
    assert np.array_equal(img, corrupt(image, "gaussian_noise", 4, image_seed(7, DS, image_id, "gaussian_noise", 4)))


def _journal_lines(cache):
    return sum(len(p.read_text().splitlines()) for p in cache.rglob("manifest.journal"))


@pytest.mark.slow
@pytest.mark.parametrize("sig", ["SIGKILL", "SIGTERM"])
def test_killed_corrupt_keeps_finished_images(tmp_path, sig):
    import signal
    import subprocess
    import time

    from harness_plugins.helpers import bench_cmd, subprocess_env
    from robustbench_ovss.testing.fake_datasets import write_fake_dataset

    data = tmp_path / "data"
    write_fake_dataset("voc21", data, n_images=12, size=(360, 480))
    cache = tmp_path / "cache"
    cmd = [*bench_cmd(), "corrupt", "--dataset", "voc21", "--corruptions", "glass_blur", "--severities", "5",
           "--data-root", str(data), "--out", str(cache)]  # fmt: skip
    proc = subprocess.Popen(cmd, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while _journal_lines(cache) < 3 and proc.poll() is None:  # three images finished
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(getattr(signal, sig))
    err = proc.communicate(timeout=120)[1]
    if proc.returncode == 0:
        pytest.skip("finished before the signal arrived")
    assert proc.returncode == (-signal.SIGKILL if sig == "SIGKILL" else 143), err
    again = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    kept = int(again.stderr.split(" images written, ")[1].split(" already cached")[0])
    assert kept >= 3  # the images finished before the kill were not corrupted again
    man = json.loads(next(cache.rglob("manifest.json")).read_text())
    assert len(man["files"]) == 12 and not list(cache.rglob("manifest.journal"))
