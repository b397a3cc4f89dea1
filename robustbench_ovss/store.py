"""The run directory (DESIGN §4): checkpoints, unit files and the collected tables.

Layout of ``RUN_DIR``::

    config.toml                   resolved config of the latest invocation
    manifest.json                 versions, git sha, device, dataset roots and fingerprints
    plan.json                     the latest plan's units (for reports of what is missing)
    chunks/<unit_key>/<start>-<stop>.json   one checkpoint per (unit, image range)
    units/<unit_key>.json         the finished (or failed) unit
    results.csv, per_class.csv, per_image.csv   rebuilt from units/ by ``collect``
    preds/<unit_key>/<image_id>.png           --save-preds: predicted label maps (uint8 or uint16 PNG)
    samples/<dataset>/<condition>/<image_id>.png   --save-preds: the corrupted input the methods saw

Every file is written atomically (temp file in the same directory, fsync, ``os.replace``), so a
process killed at any moment leaves either the old or the new version, never a torn one. A chunk
checkpoint holds the exact partial state of its unit on that image range (sparse int64 confusion
matrix, per-image rows, timing sums and the index of the next image), so a resumed run continues
where the checkpoint left off and ends with the same numbers. This module never imports torch:
``collect`` works on a machine with only pandas.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from .errors import OvssError
from .metrics import per_class_areas, summarize
from .plan import Chunk, Unit

log = logging.getLogger(__name__)

FORMAT = 1
_STATUS_RE = re.compile(r'\{"format":\d+,"unit_key":"[0-9a-f]+","status":"(\w+)"')
COMPLETE, FAILED, PARTIAL = "complete", "failed", "partial"


# -- small file helpers -----------------------------------------------------------------------------


def now_iso() -> str:
    """Current UTC time, ISO 8601 with microseconds (orders unit files finished within one second)."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def atomic_write_text(path: Path, text: str, durable: bool = True) -> None:
    """Write ``text`` to ``path`` via a temp file in the same directory and ``os.replace``.

    ``durable`` fsyncs the file before the rename (so a crash cannot leave an empty file behind the
    new name).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_json(path: Path, obj: Any, durable: bool = True) -> None:
    """Atomic JSON write (NaN kept as the JSON extension ``NaN`` that Python and pandas read)."""
    atomic_write_text(path, json.dumps(obj, default=_json_default, separators=(",", ":")), durable=durable)


def read_json(path: Path) -> Any | None:
    """Parsed JSON of ``path``, or None when it does not exist."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:  # only a foreign hand can tear our files
        raise OvssError(f"{path}: unreadable ({exc}); delete it and rerun to recompute that part") from exc


def _json_default(x: Any) -> Any:
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    if hasattr(x, "tolist"):  # torch tensors, without importing torch
        return x.tolist()
    return str(x)


def encode_conf(conf: np.ndarray) -> dict[str, Any]:
    """Sparse JSON form of an int64 [C, C] confusion matrix: shape and [row, col, count] triples."""
    c = np.asarray(conf, dtype=np.int64)
    r, k = np.nonzero(c)
    return {"shape": list(c.shape), "nz": np.stack([r, k, c[r, k]], axis=1).tolist()}


def decode_conf(obj: dict[str, Any]) -> np.ndarray:
    """Inverse of :func:`encode_conf`; int64 [C, C]."""
    c = np.zeros(tuple(obj["shape"]), dtype=np.int64)
    if obj["nz"]:
        nz = np.asarray(obj["nz"], dtype=np.int64)
        c[nz[:, 0], nz[:, 1]] = nz[:, 2]
    return c


# -- the run directory ------------------------------------------------------------------------------


class RunDir:
    """Paths and file operations of one run directory."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def units_dir(self) -> Path:
        return self.root / "units"

    @property
    def chunks_dir(self) -> Path:
        return self.root / "chunks"

    def ensure_writable(self) -> None:
        """Create the directory tree, or raise a one-line ``OvssError`` saying why it cannot be."""
        try:
            for d in (self.root, self.units_dir, self.chunks_dir):
                d.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".write-test-{os.getpid()}"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
            raise OvssError(f"output directory {self.root}: cannot write ({why}); pass a writable --out DIR") from None

    # unit files ----------------------------------------------------------------------------------
    def unit_path(self, key: str) -> Path:
        return self.units_dir / f"{key}.json"

    def read_unit(self, key: str) -> dict[str, Any] | None:
        return read_json(self.unit_path(key))

    def unit_status(self, key: str) -> str | None:
        """Status of a unit file, or None when there is none. Reads only the head of the file: unit
        files start with format, unit_key and status, and a grid holds thousands of them."""
        try:
            with open(self.unit_path(key), "rb") as f:
                head = f.read(256).decode("utf-8", "replace")
        except FileNotFoundError:
            return None
        m = _STATUS_RE.match(head)
        if m:
            return m.group(1)
        rec = self.read_unit(key)
        return None if rec is None else rec.get("status")

    # chunk files ---------------------------------------------------------------------------------
    def chunk_path(self, key: str, chunk: Chunk) -> Path:
        return self.chunks_dir / key / f"{chunk.chunk_id}.json"

    def read_chunk(self, key: str, chunk: Chunk) -> dict[str, Any] | None:
        return read_json(self.chunk_path(key, chunk))

    def write_chunk(self, key: str, chunk: Chunk, state: dict[str, Any]) -> None:
        write_json(self.chunk_path(key, chunk), state)

    def forget(self, key: str, chunks: Iterable[Chunk]) -> None:
        """Delete the unit file of ``key`` and its checkpoints of ``chunks`` (``--force``)."""
        for c in chunks:
            self.chunk_path(key, c).unlink(missing_ok=True)
        self.unit_path(key).unlink(missing_ok=True)


# -- finalising units -------------------------------------------------------------------------------


def new_chunk_state(unit: Unit, chunk: Chunk, num_classes: int) -> dict[str, Any]:
    """Empty checkpoint of ``unit`` on ``chunk`` (JSON form, as written to chunks/)."""
    return {
        "format": FORMAT,
        "unit_key": unit.unit_key,
        "chunk": [chunk.start, chunk.stop],
        "status": PARTIAL,
        "next": chunk.start,
        "conf": encode_conf(np.zeros((num_classes, num_classes), dtype=np.int64)),
        "rows": [],
        "model_seconds": 0.0,
        "timed_images": 0,
        # per image: its loading + corruption (shared by every method, charged in full to each) + this
        # method's predict + its metric update; the ActiveSAM paper's Table 3 speed protocol
        "pipeline_seconds": 0.0,
        "data_seconds": 0.0,
        "setup_seconds": float("nan"),
        "peak_mem_mb": float("nan"),
        "peak_rss_mb": float("nan"),
        "error": "",
        "failed_image": "",
        "started_at": now_iso(),
        "updated_at": now_iso(),
        "meta": {},
    }


def _nanmax(values: Sequence[float]) -> float:
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return max(vals) if vals else float("nan")


def finalize_unit(rd: RunDir, unit: Unit, chunks: Sequence[Chunk], force: bool = False) -> str | None:
    """Merge the checkpoints of ``unit`` into ``units/<key>.json`` when they allow it.

    A unit is complete when every one of its chunks is; it is failed when any checkpoint is failed
    (the record then holds the error, the image and the images evaluated before it). Returns the
    status written, the status already on disk, or None when chunks are still missing (another shard,
    or a later rerun, will finish them). Idempotent: concurrent processes write the same numbers.
    """
    key = unit.unit_key
    current = rd.unit_status(key)
    if current == COMPLETE and not force:
        return COMPLETE
    states = [rd.read_chunk(key, c) for c in chunks]
    failed = [s for s in states if s is not None and s["status"] == FAILED]
    if failed:
        status = FAILED
    elif states and all(s is not None and s["status"] == COMPLETE for s in states):
        status = COMPLETE
    else:
        return current
    present = [s for s in states if s is not None]
    conf = None
    rows: list[dict[str, Any]] = []
    for s in present:
        c = decode_conf(s["conf"])
        conf = c if conf is None else conf + c
        rows.extend(s["rows"])
    assert conf is not None
    metrics = summarize(conf)
    model_seconds = float(sum(s["model_seconds"] for s in present))
    timed = int(sum(s["timed_images"] for s in present))
    # a checkpoint written before the pipeline timing existed has no value for its images: NaN, not 0
    pipeline_seconds = float(sum(s.get("pipeline_seconds", float("nan")) for s in present))
    data_seconds = float(sum(s.get("data_seconds", float("nan")) for s in present))
    meta = next((s["meta"] for s in present if s.get("meta")), {})
    devices = sorted({s["meta"].get("device", "") for s in present if s.get("meta")} - {""})
    rec = {
        "format": FORMAT,
        "unit_key": key,
        "status": status,
        "error": failed[0]["error"] if failed else "",
        "failed_image": failed[0]["failed_image"] if failed else "",
        "unit": unit.to_dict(),
        "params": meta.get("params", {}),
        "num_classes": int(conf.shape[0]),
        "class_names": meta.get("class_names", []),
        "n_images": len(rows),
        "conf": encode_conf(conf),
        "metrics": {k: metrics[k] for k in ("miou", "aacc", "macc")} | {"iou": metrics["iou"].tolist()},
        "model_seconds": model_seconds,
        "timed_images": timed,
        "fps": timed / model_seconds if timed and model_seconds > 0 else float("nan"),
        "pipeline_seconds": pipeline_seconds,
        "data_seconds": data_seconds,
        "pipeline_fps": timed / pipeline_seconds if timed and pipeline_seconds > 0 else float("nan"),
        "setup_seconds": _nanmax([s["setup_seconds"] for s in present]),
        "peak_mem_mb": _nanmax([s["peak_mem_mb"] for s in present]),
        "peak_rss_mb": _nanmax([s["peak_rss_mb"] for s in present]),
        # timings from different devices must never be mixed silently: the row names them all
        "device": "+".join(devices) if devices else meta.get("device", ""),
        "threads": meta.get("threads"),
        "versions": meta.get("versions", {}),
        "git_sha": meta.get("git_sha", ""),
        "config_hash": meta.get("config_hash", ""),
        "started_at": min(s["started_at"] for s in present),
        "finished_at": max(s["updated_at"] for s in present),
        "chunks": [s["chunk"] for s in present],
        "rows": rows,
    }
    write_json(rd.unit_path(key), rec)
    return status


# -- provenance -------------------------------------------------------------------------------------


def _dist_version(*names: str) -> str:
    for n in names:
        try:
            return metadata.version(n)
        except metadata.PackageNotFoundError:
            continue
    return ""


def versions() -> dict[str, str]:
    """Versions of the libraries that shape the numbers (read from metadata; imports nothing)."""
    return {
        "torch": _dist_version("torch"),
        "transformers": _dist_version("transformers"),
        "corruption_lib": _dist_version("imagecorruptions-imaug", "imagecorruptions"),
        "package": _dist_version("ovss-bench"),
        "python": ".".join(str(x) for x in __import__("sys").version_info[:3]),
    }


def git_sha() -> str:
    """Commit of the package's checkout, with ``-dirty`` for uncommitted tracked changes; "" outside git."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        if sha.returncode != 0:
            return ""
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5,
        )  # fmt: skip
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return ""


# -- collect ----------------------------------------------------------------------------------------

RESULT_COLUMNS = [
    "method", "label", "method_version", "params_hash", "backend", "checkpoint", "dataset", "corruption",
    "severity", "seed", "n_images", "limit", "status", "error", "failed_image", "miou", "aacc", "macc",
    "fps", "timed_images", "model_seconds", "pipeline_fps", "pipeline_seconds", "data_seconds", "setup_seconds", "peak_mem_mb", "peak_rss_mb", "device",
    "dtype", "threads", "active_size", "active_recall", "prompts_decoded", "versions", "torch_version",
    "transformers_version", "corruption_lib_version", "package_version", "git_sha", "config_hash",
    "unit_key", "vocab_hash", "fingerprint", "params", "started_at", "finished_at",
]  # fmt: skip
"""results.csv columns. Metrics are fractions (0..1). ``fps`` = timed images / model seconds (NaN
when no image was timed); ``model_seconds`` sums ``predict`` times of the timed images (every
evaluated image is timed; warm-up calls are extra, untimed ``predict`` calls on the first image of each
dataset); ``pipeline_fps`` = timed images / ``pipeline_seconds``, which sums per image its loading and
corruption (``data_seconds``, shared by the methods but charged in full to each, as if it ran alone),
the ``predict`` time and the metric update (the ActiveSAM paper's Table 3 protocol, without the
references' second read of the image file inside the model);
``setup_seconds`` = the method's ``setup`` on this dataset (largest over the processes that ran
chunks of the unit); ``peak_mem_mb`` = torch.cuda.max_memory_allocated around this method's predict
calls (NaN on the CPU, where memory cannot be attributed to one method); ``peak_rss_mb`` = peak
resident memory of the whole process (all methods and the loader), for orientation only."""

KEY_COLUMNS = ["unit_key", "label", "method", "dataset", "corruption", "severity", "seed"]
ROW_IDENTITY = ["label", "dataset", "corruption", "severity", "seed"]


def _mean_stat(rows: list[dict[str, Any]], name: str) -> float:
    vals = [r[name] for r in rows if isinstance(r.get(name), (int, float)) and not isinstance(r.get(name), bool)]
    vals = [float(v) for v in vals if not math.isnan(float(v))]
    return float(np.mean(vals)) if vals else float("nan")


def _result_row(rec: dict[str, Any]) -> dict[str, Any]:
    u = rec["unit"]
    v = rec.get("versions", {})
    failed = rec["status"] != COMPLETE
    m = rec["metrics"]
    nan = float("nan")
    return {
        "method": u["method"], "label": u["label"], "method_version": u["method_version"],
        "params_hash": u["params_hash"], "backend": u["backend"], "checkpoint": u["checkpoint"],
        "dataset": u["dataset"], "corruption": u["corruption"], "severity": u["severity"], "seed": u["seed"],
        "n_images": rec["n_images"], "limit": u["limit"], "status": rec["status"], "error": rec.get("error", ""),
        "failed_image": rec.get("failed_image", ""),
        # a failed unit's partial numbers are not results: keep them out of the table
        "miou": nan if failed else m["miou"], "aacc": nan if failed else m["aacc"],
        "macc": nan if failed else m["macc"], "fps": rec["fps"], "timed_images": rec["timed_images"],
        "model_seconds": rec["model_seconds"], "pipeline_fps": rec.get("pipeline_fps", nan),
        "pipeline_seconds": rec.get("pipeline_seconds", nan), "data_seconds": rec.get("data_seconds", nan),
        "setup_seconds": rec["setup_seconds"],
        "peak_mem_mb": rec["peak_mem_mb"], "peak_rss_mb": rec.get("peak_rss_mb", nan),
        "device": rec["device"], "dtype": u["dtype"], "threads": rec.get("threads"),
        "active_size": _mean_stat(rec["rows"], "active_size"),
        "active_recall": _mean_stat(rec["rows"], "active_recall"),
        "prompts_decoded": _mean_stat(rec["rows"], "prompts_decoded"),
        "versions": ";".join(f"{k}={val}" for k, val in v.items()),
        "torch_version": v.get("torch", ""), "transformers_version": v.get("transformers", ""),
        "corruption_lib_version": v.get("corruption_lib", ""), "package_version": v.get("package", ""),
        "git_sha": rec.get("git_sha", ""), "config_hash": rec.get("config_hash", ""), "unit_key": rec["unit_key"],
        "vocab_hash": u["vocab_hash"], "fingerprint": u["fingerprint"],
        "params": json.dumps(rec.get("params", {}), sort_keys=True, default=str),
        "started_at": rec["started_at"], "finished_at": rec["finished_at"],
    }  # fmt: skip


def load_units(run_dir: str | Path) -> list[dict[str, Any]]:
    """Unit records of a run, newest first per (label, dataset, corruption, severity, seed).

    A run directory keeps the unit files of earlier configs (a changed parameter gives a new key);
    only the most recently finished unit of each row identity is returned.
    """
    rd = RunDir(run_dir)
    if not rd.root.is_dir():
        raise OvssError(f"run directory {rd.root} not found (pass the --out DIR of a run)")
    recs = []
    for p in sorted(rd.units_dir.glob("*.json")):
        rec = read_json(p)
        if rec is not None and rec.get("format") == FORMAT:
            recs.append(rec)
    recs.sort(key=lambda r: r["finished_at"], reverse=True)
    seen: set[tuple[Any, ...]] = set()
    out = []
    for r in recs:
        ident = tuple(r["unit"][k] for k in ROW_IDENTITY)
        if ident in seen:
            continue
        seen.add(ident)
        out.append(r)
    if len(out) < len(recs):
        log.info("collect: %d unit file(s) superseded by newer results of the same row are left out", len(recs) - len(out))
    out.sort(key=lambda r: (r["unit"]["dataset"], r["unit"]["corruption"] != "none", r["unit"]["corruption"],
                            r["unit"]["severity"], r["unit"]["seed"], r["unit"]["label"]))  # fmt: skip
    return out


def _csv_value(v: Any) -> Any:
    return json.dumps(v, default=_json_default) if isinstance(v, (list, dict)) else v


def collect(run_dir: str | Path) -> dict[str, Path]:
    """Rebuild results.csv, per_class.csv and per_image.csv of ``run_dir`` from its unit files.

    Returns:
        {"results": path, "per_class": path, "per_image": path}. List-valued per-image stats (e.g.
        ``active``) are JSON strings in per_image.csv.
    """
    import pandas as pd

    rd = RunDir(run_dir)
    recs = load_units(rd.root)
    results = pd.DataFrame([_result_row(r) for r in recs], columns=RESULT_COLUMNS)
    pc_rows: list[dict[str, Any]] = []
    pi_rows: list[dict[str, Any]] = []
    for r in recs:
        keys = {"unit_key": r["unit_key"], **{k: r["unit"][k] for k in KEY_COLUMNS[1:]}, "status": r["status"]}
        areas = per_class_areas(decode_conf(r["conf"]))
        names = r.get("class_names") or []
        iou = r["metrics"]["iou"]
        for c in range(r["num_classes"]):
            pc_rows.append({
                **keys, "class_id": c, "class_name": names[c] if c < len(names) else str(c),
                "intersection": int(areas["intersection"][c]), "union": int(areas["union"][c]),
                "area_pred": int(areas["area_pred"][c]), "area_label": int(areas["area_label"][c]),
                "iou": float("nan") if iou[c] is None else iou[c],
            })  # fmt: skip
        for row in r["rows"]:
            pi_rows.append({**keys, **{k: _csv_value(v) for k, v in row.items()}})
    per_class = pd.DataFrame(
        pc_rows,
        columns=[*KEY_COLUMNS, "status", "class_id", "class_name", "intersection", "union", "area_pred", "area_label", "iou"],
    )
    per_image = pd.DataFrame(pi_rows)
    if per_image.empty:
        per_image = pd.DataFrame(columns=[*KEY_COLUMNS, "status", "image_id", "pixel_acc", "miou"])
    paths = {"results": rd.root / "results.csv", "per_class": rd.root / "per_class.csv", "per_image": rd.root / "per_image.csv"}
    for name, df in (("results", results), ("per_class", per_class), ("per_image", per_image)):
        atomic_write_text(paths[name], df.to_csv(index=False), durable=False)
    return paths


def cli_collect(args: Any) -> int:
    """``ovss-bench collect RUN_DIR``: rebuild the CSV tables and print where they are."""
    t0 = time.perf_counter()
    paths = collect(args.run_dir)
    import pandas as pd

    res = pd.read_csv(paths["results"])
    n_failed = int((res["status"] == FAILED).sum()) if len(res) else 0
    print(f"{len(res)} unit(s) ({n_failed} failed) -> {paths['results']}, {paths['per_class'].name}, "
          f"{paths['per_image'].name} in {time.perf_counter() - t0:.1f}s")  # fmt: skip
    return 0
