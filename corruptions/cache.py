"""Pre-generated corruption cache: ``ovss-bench corrupt`` writes it, the runner reads it.

Layout under the cache root (``--out``)::

    <root>/<dataset>/<corruption>/<severity>/<image_id>.png          corrupted image, RGB, lossless
    <root>/<dataset>/<corruption>/<severity>/<image_id>.label.png    warped label (pixel-moving only)
    <root>/<dataset>/<corruption>/<severity>/manifest.json

An ``image_id`` containing ``/`` (Cityscapes' ``city/name``) becomes sub-directories. One manifest per
(dataset, corruption, severity) directory, written atomically (temp file + rename)::

    {"format": 1, "dataset": "voc21", "fingerprint": "..." | null, "corruption": "fog", "severity": 3,
     "seed": 0, "moves_pixels": false, "reference": "imagecorruptions-imaug 1.1.5",
     "matches_reference": true, "versions": {"ovss-bench": ..., "imagecorruptions-imaug": ..., ...},
     "updated_at": "2026-...Z",
     "files": {"<image_id>": {"image": "<id>.png", "sha256": "...", "bytes": 1234, "image_seed": 123,
                              "shape": [H, W], "label": "<id>.label.png", "label_sha256": "...",
                              "label_dtype": "uint8"}}}

``seed`` is the run's base seed; ``image_seed`` the per-image seed of DESIGN §4 derived from it, so a
cached image equals ``corrupt(image, corruption, severity, image_seed)`` byte for byte.

Writing is resumable whatever stops it (Ctrl-C, SIGTERM, ``kill -9``, a full disk): after an image's
PNG files are in place, its manifest entry is appended to ``manifest.journal`` in the same directory
(one JSON line, flushed); the manifest itself is rewritten every ``flush_every`` seconds and at the
end, and the journal is then emptied. A rerun reads the manifest plus the journal (a torn last line is
ignored) and keeps every entry whose files still hash to the recorded sha256; anything else is
corrupted again.

Reading (:class:`CorruptionCache`): an entry missing from the manifest (or a missing manifest) is a miss
(``None``: corrupt on the fly); a file whose sha256 differs from the manifest, a missing file the manifest
lists, or a manifest made with another seed or dataset fingerprint is a :class:`CorruptionError` naming
the file and saying to regenerate it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ..errors import CorruptionError, OvssError
from ..files import atomic_write_bytes, file_mode, write_error

FORMAT = 1
MANIFEST = "manifest.json"
JOURNAL = "manifest.journal"
LABEL_SUFFIX = ".label.png"
_VERSION_DISTS = (
    "ovss-bench", "imagecorruptions-imaug", "albumentations", "numpy", "scipy", "scikit-image",
    "opencv-python", "opencv-python-headless", "pillow", "numba",
)  # fmt: skip


# -- paths and files ----------------------------------------------------------------------------------


def image_relpath(image_id: str) -> PurePosixPath:
    """``image_id`` as a safe relative path (sub-directories allowed; no '..', no absolute paths)."""
    p = PurePosixPath(image_id)
    if not image_id or "\\" in image_id or p.is_absolute() or any(part in ("", ".", "..") for part in image_id.split("/")):
        raise CorruptionError(f"corruption cache: image id {image_id!r} cannot be a file name; rename it in the dataset")
    return p


def leaf_dir(root: str | Path, dataset: str, corruption: str, severity: int) -> Path:
    """Directory of one (dataset, corruption, severity) in a cache rooted at ``root``."""
    return Path(root) / dataset / corruption / str(int(severity))


def library_versions() -> dict[str, str]:
    """Installed versions of the packages that define the corrupted pixels."""
    out = {}
    for dist in _VERSION_DISTS:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _png_bytes(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def _label_for_png(label: np.ndarray) -> np.ndarray:
    lab = np.asarray(label)
    if lab.ndim != 2 or not np.issubdtype(lab.dtype, np.integer):
        raise CorruptionError(f"corruption cache: labels must be integer HxW arrays, got {lab.dtype} {lab.shape}")
    if lab.size and (lab.min() < 0 or lab.max() > 65535):
        raise CorruptionError("corruption cache: label values must lie in 0..65535 to be stored as PNG")
    return lab.astype(np.uint8) if (not lab.size or lab.max() <= 255) else lab.astype(np.uint16)


def _decode_png(data: bytes, path: Path, rgb: bool) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            if rgb and im.mode != "RGB":
                raise CorruptionError(f"corruption cache: {path} is not an RGB PNG; regenerate it with `ovss-bench corrupt`")
            return np.asarray(im)
    except OSError as exc:
        raise CorruptionError(f"corruption cache: {path} cannot be read ({exc}); regenerate it with `ovss-bench corrupt`") from exc


# -- reading ------------------------------------------------------------------------------------------


class CorruptionCache:
    """Read access to a corruption cache (see the module docstring for the format).

    Args:
        root: the directory given to ``ovss-bench corrupt --out``.
    """

    def __init__(self, root: str | Path, data_roots: dict[str, str] | None = None):
        self.root = Path(root)
        self.data_roots = dict(data_roots or {})  # dataset -> --data-root, for complete regeneration commands
        self._manifests: dict[Path, tuple[float, dict[str, Any]]] = {}

    def regenerate_command(self, dataset: str, corruption: str, severity: int, seed: int) -> str:
        """The ``ovss-bench corrupt`` command that rewrites one (dataset, corruption, severity) of this cache."""
        data_root = f" --data-root {self.data_roots[dataset]}" if dataset in self.data_roots else ""
        return (f"ovss-bench corrupt --dataset {dataset} --corruptions {corruption} --severities {severity} "
                f"--seed {seed}{data_root} --out {self.root}")

    def manifest(self, dataset: str, corruption: str, severity: int) -> dict[str, Any] | None:
        """The manifest of one (dataset, corruption, severity), or None when there is none."""
        path = leaf_dir(self.root, dataset, corruption, severity) / MANIFEST
        try:
            mtime = path.stat().st_mtime_ns
        except FileNotFoundError:
            return None
        hit = self._manifests.get(path)
        if hit is not None and hit[0] == mtime:
            return hit[1]
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CorruptionError(f"corruption cache: {path} is unreadable ({exc}); regenerate it with `ovss-bench corrupt`") from exc
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("files"), dict):
            raise CorruptionError(f"corruption cache: {path} is not a format-{FORMAT} manifest; regenerate it with `ovss-bench corrupt`")
        self._manifests[path] = (mtime, data)
        return data

    def get(
        self,
        dataset: str,
        image_id: str,
        corruption: str,
        severity: int,
        seed: int,
        *,
        fingerprint: str | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None] | None:
        """The cached ``(image, label or None)`` of one image, verified, or None when not cached.

        Args:
            seed: the run's base seed; must equal the seed the cache was made with.
            fingerprint: the dataset's fingerprint; when both it and the manifest's are known they must match.

        Raises:
            CorruptionError: sha256, seed or fingerprint mismatch, or a listed file is missing.
        """
        man = self.manifest(dataset, corruption, severity)
        if man is None:
            return None
        entry = man["files"].get(image_id)
        if entry is None:
            return None
        leaf = leaf_dir(self.root, dataset, corruption, severity)
        regen = f"regenerate it with `{self.regenerate_command(dataset, corruption, severity, seed)}`"
        if man.get("seed") != seed:
            raise CorruptionError(
                f"corruption cache: {leaf / MANIFEST} was made with seed {man.get('seed')}, the run uses seed {seed}; {regen}"
            )
        if fingerprint and man.get("fingerprint") and man["fingerprint"] != fingerprint:
            raise CorruptionError(
                f"corruption cache: {leaf / MANIFEST} was made from other data (fingerprint {man['fingerprint']} != "
                f"{fingerprint}); {regen}"
            )
        image = _decode_png(self._verified_bytes(leaf / entry["image"], entry["sha256"], regen), leaf / entry["image"], rgb=True)
        label = None
        if entry.get("label"):
            lpath = leaf / entry["label"]
            label = _decode_png(self._verified_bytes(lpath, entry["label_sha256"], regen), lpath, rgb=False)
            label = label.astype(entry.get("label_dtype", str(label.dtype)))
        return image, label

    @staticmethod
    def _verified_bytes(path: Path, sha256: str, regen: str) -> bytes:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise CorruptionError(f"corruption cache: {path} is listed in its manifest but missing; {regen}") from None
        if hashlib.sha256(data).hexdigest() != sha256:
            raise CorruptionError(f"corruption cache: {path} does not match its manifest (sha256 differs); {regen}")
        return data


# -- writing ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    """What a worker needs: the dataset, the leaves to fill and what is already done."""

    dataset: Any
    dataset_name: str
    leaves: tuple[tuple[str, int], ...]
    seed: int
    root: str
    done: dict[tuple[str, int], frozenset[str]]


_JOB: _Job | None = None


def _init_worker(job: _Job) -> None:
    global _JOB
    _JOB = job


def _corrupt_image(k: int) -> tuple[str, list[tuple[str, int, dict[str, Any]]]]:
    """Corrupt dataset image ``k`` for every leaf that lacks it; write the PNGs; return manifest entries."""
    from . import corrupt_pair, moves_pixels
    from .seeding import image_seed

    job = _JOB
    assert job is not None, "worker not initialised"
    image_id, image, label = job.dataset[k]
    image_id = str(image_id)
    rel = image_relpath(image_id)
    out: list[tuple[str, int, dict[str, Any]]] = []
    for corruption, severity in job.leaves:
        if image_id in job.done.get((corruption, severity), ()):
            continue
        leaf = leaf_dir(job.root, job.dataset_name, corruption, severity)
        s = image_seed(job.seed, job.dataset_name, image_id, corruption, severity)
        img, lab = corrupt_pair(np.asarray(image), np.asarray(label), corruption, severity, s)
        data = _png_bytes(img)
        entry: dict[str, Any] = {
            "image": f"{rel}.png",
            "sha256": hashlib.sha256(data).hexdigest(),
            "bytes": len(data),
            "image_seed": s,
            "shape": [int(img.shape[0]), int(img.shape[1])],
        }
        atomic_write_bytes(leaf / entry["image"], data)
        if moves_pixels(corruption):
            lab_png = _label_for_png(lab)
            ldata = _png_bytes(lab_png)
            entry.update(label=f"{rel}{LABEL_SUFFIX}", label_sha256=hashlib.sha256(ldata).hexdigest(),
                         label_dtype=str(np.asarray(lab).dtype))  # fmt: skip
            atomic_write_bytes(leaf / entry["label"], ldata)
        out.append((corruption, severity, entry))
    return image_id, out


@contextlib.contextmanager
def _exclusive(directory: Path) -> Iterator[None]:
    """One writer per cache directory (advisory lock, released when the process ends)."""
    directory.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(directory / ".corrupt.lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise CorruptionError(f"corruption cache: another `ovss-bench corrupt` is writing {directory}; wait for it or use another --out") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _fingerprint(ds: Any) -> str | None:
    try:
        fp = ds.fingerprint
    except Exception:  # the contract has it, but a plugin may not implement it
        return None
    return str(fp) if fp else None


def _open_leaf(root: Path, dataset: str, corruption: str, severity: int, seed: int, fingerprint: str | None,
               versions: dict[str, str]) -> dict[str, Any]:  # fmt: skip
    """Load (to resume) or start the manifest of one leaf; refuse to mix seeds, data or library versions."""
    from . import moves_pixels
    from ..registry import CORRUPTIONS

    leaf = leaf_dir(root, dataset, corruption, severity)
    man = CorruptionCache(root).manifest(dataset, corruption, severity)
    journal = _read_journal(leaf)
    if man is None:
        c = CORRUPTIONS.get(corruption)
        man = {
            "format": FORMAT, "dataset": dataset, "fingerprint": fingerprint, "corruption": corruption,
            "severity": int(severity), "seed": int(seed), "moves_pixels": moves_pixels(corruption),
            "reference": getattr(c, "reference", ""), "matches_reference": bool(getattr(c, "matches_reference", True)),
            "versions": versions, "updated_at": "", "files": {},
        }  # fmt: skip
        if not journal:
            return man
    where = leaf / MANIFEST
    fix = f"use another --out, or delete {leaf} to regenerate it"
    if man.get("seed") != seed:
        raise CorruptionError(f"corruption cache: {where} holds seed {man.get('seed')}, not {seed}; {fix}")
    if fingerprint and man.get("fingerprint") and man["fingerprint"] != fingerprint:
        raise CorruptionError(f"corruption cache: {where} was made from other data (fingerprint differs); {fix}")
    if man.get("versions") != versions:
        old = man.get("versions") or {}
        diff = ", ".join(f"{k} {old.get(k)} -> {v}" for k, v in versions.items() if old.get(k) != v)
        raise CorruptionError(f"corruption cache: {where} was made with other library versions ({diff}); {fix}")
    # keep only entries whose files still hold the recorded bytes: a file damaged in place (same size,
    # other content) is corrupted again instead of being counted as cached
    from .seeding import image_seed

    files = {}
    for image_id, e in {**man["files"], **journal}.items():
        if e.get("image_seed") != image_seed(seed, dataset, image_id, corruption, severity):
            continue  # a journal line of a run with another seed that was killed before its first manifest
        paths = [(leaf / e["image"], e["sha256"])] + ([(leaf / e["label"], e["label_sha256"])] if e.get("label") else [])
        if all(_file_sha256(p) == h for p, h in paths):
            files[image_id] = e
    return {**man, "files": files}


def _file_sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _read_journal(leaf: Path) -> dict[str, dict[str, Any]]:
    """Entries appended since the manifest was last written (image_id -> entry); a torn line is skipped."""
    out: dict[str, dict[str, Any]] = {}
    try:
        lines = (leaf / JOURNAL).read_text(encoding="utf-8").splitlines()
    except (FileNotFoundError, UnicodeDecodeError):
        return out
    for line in lines:
        try:
            rec = json.loads(line)
            out[str(rec["image_id"])] = rec["entry"]
        except (ValueError, KeyError, TypeError):
            continue  # the last line of a killed process
    return out


def _append_journal(leaf: Path, image_id: str, entry: dict[str, Any]) -> None:
    leaf.mkdir(parents=True, exist_ok=True)
    fd = os.open(leaf / JOURNAL, os.O_WRONLY | os.O_CREAT | os.O_APPEND, file_mode())
    with os.fdopen(fd, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"image_id": image_id, "entry": entry}, sort_keys=True) + "\n")


def _write_manifest(root: Path, man: dict[str, Any]) -> None:
    """Write a leaf's manifest (it then holds every journal entry) and empty its journal."""
    man["updated_at"] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    leaf = leaf_dir(root, man["dataset"], man["corruption"], man["severity"])
    atomic_write_bytes(leaf / MANIFEST, (json.dumps(man, indent=1, sort_keys=True) + "\n").encode())
    (leaf / JOURNAL).unlink(missing_ok=True)


def _fmt_seconds(s: float) -> str:
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def generate(
    ds: Any,
    dataset: str,
    corruptions: Sequence[str],
    severities: Sequence[int],
    out: str | Path,
    *,
    seed: int = 0,
    limit: int = 0,
    workers: int = 0,
    progress_every: float = 5.0,
    flush_every: float = 30.0,
    stream: Any = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, int]:
    """Fill the cache at ``out`` for dataset object ``ds`` registered as ``dataset`` (resumable).

    Each image is loaded once and corrupted for every (corruption, severity); entries already in a
    manifest (with their files present) are kept. Manifests are flushed every ``flush_every`` seconds and
    at the end, also when interrupted. ``workers`` > 0 corrupts in that many processes (the dataset object
    must be picklable).

    ``should_stop`` is asked after every image; when it says True the work stops there (manifests
    flushed) and ``stopped`` is 1 in the result.

    Returns:
        ``images`` (dataset images visited), ``written`` (entries written), ``skipped`` (already cached),
        ``stopped`` (1 when ``should_stop`` ended it early).
    """
    import concurrent.futures as cf
    import multiprocessing as mp

    stream = sys.stderr if stream is None else stream
    root = Path(out)
    bad = [s for s in severities if not 1 <= int(s) <= 5]
    if bad:
        raise CorruptionError(f"severities must be in 1..5, got {bad}")
    leaves = tuple((c, int(s)) for c in corruptions for s in severities)
    n = len(ds) if not limit else min(limit, len(ds))
    versions = library_versions()
    fingerprint = _fingerprint(ds)
    counts = {"images": 0, "written": 0, "skipped": 0, "stopped": 0}
    with _exclusive(root / dataset):
        mans = {leaf: _open_leaf(root, dataset, *leaf, seed, fingerprint, versions) for leaf in leaves}
        done = {leaf: frozenset(m["files"]) for leaf, m in mans.items()}
        job = _Job(ds, dataset, leaves, int(seed), str(root), done)
        t0 = last_report = last_flush = time.monotonic()
        dirty: set[tuple[str, int]] = set()

        def flush() -> None:
            for leaf in sorted(dirty):
                _write_manifest(root, mans[leaf])
            dirty.clear()

        def results() -> Iterator[tuple[str, list[tuple[str, int, dict[str, Any]]]]]:
            if workers <= 0:
                _init_worker(job)
                yield from map(_corrupt_image, range(n))
                return
            try:
                ctx = mp.get_context("spawn")
                with cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(job,)) as ex:
                    yield from ex.map(_corrupt_image, range(n), chunksize=1)
            except (cf.process.BrokenProcessPool, TypeError, AttributeError) as exc:  # pickling / dead workers
                raise CorruptionError(f"worker processes failed ({exc}); retry with --workers 0") from exc

        print(f"corrupt {dataset}: {n} images x {len(leaves)} (corruption, severity) -> {root / dataset}", file=stream)
        try:
            for image_id, entries in results():
                if counts["images"] and should_stop is not None and should_stop():
                    counts["stopped"] = 1
                    break
                counts["images"] += 1
                counts["skipped"] += len(leaves) - len(entries)
                for corruption, severity, entry in entries:
                    mans[(corruption, severity)]["files"][image_id] = entry
                    _append_journal(leaf_dir(root, dataset, corruption, severity), image_id, entry)
                    dirty.add((corruption, severity))
                    counts["written"] += 1
                now = time.monotonic()
                if now - last_flush >= flush_every:
                    flush()
                    last_flush = now
                if now - last_report >= progress_every or counts["images"] == n:
                    last_report = now
                    rate = counts["images"] / max(now - t0, 1e-9)
                    eta = (n - counts["images"]) / rate if rate > 0 else 0.0
                    print(
                        f"corrupt {dataset}: {counts['images']}/{n} images ({100 * counts['images'] / max(n, 1):.0f}%), "
                        f"{counts['written']} written, {counts['skipped']} cached, {rate:.2f} img/s, ETA {_fmt_seconds(eta)}",
                        file=stream,
                        flush=True,
                    )
        finally:
            flush()
        # leaves with nothing new still get a manifest (e.g. an empty dataset), so the cache is self-describing
        for leaf, m in mans.items():
            path = leaf_dir(root, dataset, *leaf) / MANIFEST
            if not path.exists():
                _write_manifest(root, m)
    return counts


class _Terminated(BaseException):
    """A second SIGTERM during ``ovss-bench corrupt``: stop at once."""


@contextlib.contextmanager
def _deferred_sigterm(flag: dict[str, bool]) -> Iterator[None]:
    """SIGTERM sets ``flag["stop"]`` (the loop stops after the image in progress and flushes its
    manifests); a second one raises at once. An exception raised from the handler at an arbitrary
    point (inside numba, say) would not always unwind cleanly."""
    import signal

    def handler(signum: int, frame: Any) -> None:
        if flag.get("stop"):
            raise _Terminated()
        flag["stop"] = True

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def cli_corrupt(args: Any) -> int:
    """``ovss-bench corrupt``: pre-generate a corruption cache for one dataset (see module docstring)."""
    from ..registry import CORRUPTIONS, DATASETS, IMAGENET_C_NAMES

    try:
        names = CORRUPTIONS.expand(args.corruptions) if args.corruptions else list(IMAGENET_C_NAMES)
        cls = DATASETS.get(args.dataset)
    except OvssError as exc:
        raise CorruptionError(str(exc)) from None
    if args.limit < 0 or args.workers < 0:
        raise CorruptionError("--limit and --workers must be >= 0")
    from ..datasets import dataset_root

    ds = cls(root=dataset_root(args.data_root, cls))
    flag: dict[str, bool] = {}
    try:
        with _deferred_sigterm(flag):
            counts = generate(ds, args.dataset, names, args.severities, args.out, seed=args.seed, limit=args.limit,
                              workers=args.workers, should_stop=lambda: bool(flag.get("stop")))  # fmt: skip
        if counts["stopped"]:
            raise _Terminated()
    except _Terminated:
        print("ovss-bench corrupt: terminated; finished images are kept, rerun the same command to resume",
              file=sys.stderr)  # fmt: skip
        return 143
    except OSError as exc:
        raise CorruptionError(write_error(exc.filename or args.out, exc)) from None
    print(
        f"corrupt {args.dataset}: done; {counts['written']} images written, {counts['skipped']} already cached, "
        f"under {Path(args.out) / args.dataset}",
        file=sys.stderr,
    )
    return 0
