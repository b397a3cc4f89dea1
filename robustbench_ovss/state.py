"""Typed run state: a unit's checkpoint on one chunk, and the finished unit.

Two records live in a run directory (see :mod:`robustbench_ovss.store` for where):

- :class:`ChunkState`, ``chunks/<unit_key>/<start>-<stop>.json``: the exact partial state of one
  unit on one image range - the int64 confusion matrix summed over images ``start .. next-1``, one
  row per image, the timing sums - so a resumed run continues at ``next`` and ends with the same
  numbers.
- :class:`UnitRecord`, ``units/<unit_key>.json``: the unit once all its chunks are complete (or one
  failed), merged by :meth:`UnitRecord.from_chunks`. ``results.csv`` has one :meth:`UnitRecord.result_row`
  per unit.

Each class has exactly one serialiser pair (``to_json`` / ``from_json``); the JSON is the format
written since the first release (``FORMAT = 1``), so older run directories resume. Nothing here
imports torch: the confusion matrices are numpy int64 arrays.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from .metrics import summarize
from .plan import Unit
from .provenance import now_iso

FORMAT = 1

ImageRow = dict[str, Any]
"""One evaluated image: the method's stats, then ``image_id``, ``index``, ``pixel_acc``, ``miou`` (and
``active_size`` / ``active_recall`` when the method reports an active set). Values are JSON scalars or
lists."""


class Status(str, Enum):
    """Status of a chunk checkpoint or a unit. A ``str`` so it is written and compared as its value."""

    PARTIAL = "partial"  # a chunk with images still to evaluate (never a unit file's status)
    COMPLETE = "complete"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value


def encode_conf(conf: np.ndarray) -> dict[str, Any]:
    """Sparse JSON form of an int64 [C, C] confusion matrix: shape and [row, col, count] triples."""
    c = np.asarray(conf, dtype=np.int64)
    r, k = np.nonzero(c)
    return {"shape": list(c.shape), "nz": np.stack([r, k, c[r, k]], axis=1).tolist()}


def decode_conf(obj: dict[str, Any]) -> np.ndarray:
    """Inverse of :func:`encode_conf`: int64 [C, C]."""
    c = np.zeros(tuple(obj["shape"]), dtype=np.int64)
    if obj["nz"]:
        nz = np.asarray(obj["nz"], dtype=np.int64)
        c[nz[:, 0], nz[:, 1]] = nz[:, 2]
    return c


def _nan(x: Any) -> float:
    """A stored number, NaN for None (JSON has no NaN in strict readers; ours writes the extension)."""
    return float("nan") if x is None else float(x)


def _nanmax(values: Sequence[float]) -> float:
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return max(vals) if vals else float("nan")


@dataclass
class UnitMeta:
    """Provenance a process stamps on its checkpoints of a unit (device, versions, resolved params)."""

    device: str = ""
    threads: int | None = None
    versions: dict[str, str] = field(default_factory=dict)
    git_sha: str = ""
    config_hash: str = ""
    params: dict[str, Any] = field(default_factory=dict)  # the method's params as resolved on the dataset
    class_names: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any] | None) -> UnitMeta | None:
        if not d:
            return None
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})


@dataclass
class ChunkState:
    """One unit's progress on one chunk (images ``start .. stop-1``).

    Attributes:
        unit_key: the unit.
        start, stop: the chunk's image range.
        conf: int64 [C, C] confusion matrix summed over images ``start .. next-1`` (rows = label).
        status: PARTIAL while images remain; COMPLETE; FAILED with ``error`` and ``failed_image``.
        next: index of the next image to evaluate.
        rows: one :data:`ImageRow` per evaluated image, in image order.
        model_seconds: ``predict`` seconds summed over the timed images.
        timed_images: images timed (every evaluated image; warm-up calls are extra and untimed).
        pipeline_seconds: per image, loading + corruption + predict + metric update, summed (s).
        data_seconds: loading + corruption of those images (s; shared by the methods, charged to each).
        setup_seconds: the method's ``setup`` on this dataset (s; NaN when not measured here).
        peak_mem_mb: CUDA peak memory around this method's predict calls (MiB; NaN on the CPU).
        peak_rss_mb: peak resident memory of the process (MiB), for orientation.
        started_at, updated_at: ISO 8601 UTC.
        meta: provenance of the process that wrote it (None until the chunk was started).
    """

    unit_key: str
    start: int
    stop: int
    conf: np.ndarray
    status: Status = Status.PARTIAL
    next: int = -1
    rows: list[ImageRow] = field(default_factory=list)
    model_seconds: float = 0.0
    timed_images: int = 0
    pipeline_seconds: float = 0.0
    data_seconds: float = 0.0
    setup_seconds: float = float("nan")
    peak_mem_mb: float = float("nan")
    peak_rss_mb: float = float("nan")
    error: str = ""
    failed_image: str = ""
    started_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)
    meta: UnitMeta | None = None

    def __post_init__(self) -> None:
        if self.next < 0:
            self.next = self.start
        self.status = Status(self.status)

    @classmethod
    def new(cls, unit_key: str, start: int, stop: int, num_classes: int) -> ChunkState:
        """An empty checkpoint of a unit on images ``start .. stop-1`` with ``num_classes`` classes."""
        return cls(unit_key=unit_key, start=start, stop=stop, conf=np.zeros((num_classes, num_classes), dtype=np.int64))

    @property
    def is_open(self) -> bool:
        """True while images remain to be evaluated (PARTIAL)."""
        return self.status is Status.PARTIAL

    @property
    def done_evaluating(self) -> bool:
        """Every image of the range has been evaluated (the chunk may not be closed yet)."""
        return self.next >= self.stop

    def add_image(self, conf_img: np.ndarray | None, row: ImageRow, index: int, predict_s: float, data_s: float,
                  metric_s: float) -> None:  # fmt: skip
        """Count image ``index``: its confusion matrix (None when the caller keeps the sum itself, e.g.
        on an accelerator), row and times; ``next`` moves past it."""
        if conf_img is not None:
            self.conf += conf_img
        self.rows.append(row)
        self.next = index + 1
        self.model_seconds += predict_s
        self.timed_images += 1
        self.pipeline_seconds += data_s + predict_s + metric_s
        self.data_seconds += data_s

    def fail(self, image_id: str, error: str) -> None:
        """Mark the unit failed on this chunk at ``image_id`` (a rerun retries from that image)."""
        self.status, self.error, self.failed_image = Status.FAILED, error, image_id

    def reopen(self) -> None:
        """A failed checkpoint, retried by a new run: open again at the image that failed."""
        self.status, self.error, self.failed_image = Status.PARTIAL, "", ""

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "unit_key": self.unit_key, "chunk": [self.start, self.stop], "status": self.status.value,
            "next": self.next, "conf": encode_conf(self.conf), "rows": self.rows, "model_seconds": self.model_seconds,
            "timed_images": self.timed_images, "pipeline_seconds": self.pipeline_seconds,
            "data_seconds": self.data_seconds, "setup_seconds": self.setup_seconds, "peak_mem_mb": self.peak_mem_mb,
            "peak_rss_mb": self.peak_rss_mb, "error": self.error, "failed_image": self.failed_image,
            "started_at": self.started_at, "updated_at": self.updated_at,
            "meta": self.meta.to_json() if self.meta is not None else {},
        }  # fmt: skip

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ChunkState:
        """Parse a checkpoint; checkpoints written before pipeline timing existed get NaN there."""
        return cls(
            unit_key=d["unit_key"], start=int(d["chunk"][0]), stop=int(d["chunk"][1]), conf=decode_conf(d["conf"]),
            status=Status(d["status"]), next=int(d["next"]), rows=list(d["rows"]),
            model_seconds=float(d["model_seconds"]), timed_images=int(d["timed_images"]),
            pipeline_seconds=_nan(d.get("pipeline_seconds")), data_seconds=_nan(d.get("data_seconds")),
            setup_seconds=_nan(d.get("setup_seconds")), peak_mem_mb=_nan(d.get("peak_mem_mb")),
            peak_rss_mb=_nan(d.get("peak_rss_mb")), error=d.get("error", ""), failed_image=d.get("failed_image", ""),
            started_at=d["started_at"], updated_at=d["updated_at"], meta=UnitMeta.from_json(d.get("meta")),
        )  # fmt: skip


#: The start of every unit file: ``{"format":1,"unit_key":"<hex>","status":"<status>",`` (written first by
#: :meth:`UnitRecord.to_json` so that :func:`peek_status` can read a status without parsing the rows).
_HEAD = re.compile(r'\{"format":(\d+),"unit_key":"([0-9a-f]+)","status":"(\w+)"')


@dataclass
class UnitRecord:
    """A finished (complete or failed) unit: the merge of its chunk checkpoints.

    The metrics, ``fps`` and ``pipeline_fps`` are derived from the fields (and written into the JSON
    for readers of the file). Times in seconds, memory in MiB, metrics fractions in 0..1.
    """

    unit: Unit
    status: Status
    conf: np.ndarray
    rows: list[ImageRow]
    error: str = ""
    failed_image: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    class_names: list[str] = field(default_factory=list)
    model_seconds: float = 0.0
    timed_images: int = 0
    pipeline_seconds: float = float("nan")
    data_seconds: float = float("nan")
    setup_seconds: float = float("nan")
    peak_mem_mb: float = float("nan")
    peak_rss_mb: float = float("nan")
    device: str = ""
    threads: int | None = None
    versions: dict[str, str] = field(default_factory=dict)
    git_sha: str = ""
    config_hash: str = ""
    started_at: str = ""
    finished_at: str = ""
    chunks: list[list[int]] = field(default_factory=list)

    @property
    def unit_key(self) -> str:
        return self.unit.unit_key

    @property
    def num_classes(self) -> int:
        return int(self.conf.shape[0])

    @property
    def n_images(self) -> int:
        return len(self.rows)

    @property
    def fps(self) -> float:
        """Timed images per ``predict`` second (NaN when nothing was timed)."""
        return self.timed_images / self.model_seconds if self.timed_images and self.model_seconds > 0 else float("nan")

    @property
    def pipeline_fps(self) -> float:
        s = self.pipeline_seconds
        return self.timed_images / s if self.timed_images and s > 0 else float("nan")

    @classmethod
    def from_chunks(cls, unit: Unit, states: Sequence[ChunkState | None]) -> UnitRecord | None:
        """Merge a unit's checkpoints (one per chunk of the unit, None where there is none yet).

        Complete when every chunk is complete; failed when any is failed (the record then holds the
        first error and the images evaluated before it); None while chunks are missing or open.
        """
        failed = [s for s in states if s is not None and s.status is Status.FAILED]
        if failed:
            status = Status.FAILED
        elif states and all(s is not None and s.status is Status.COMPLETE for s in states):
            status = Status.COMPLETE
        else:
            return None
        present = [s for s in states if s is not None]
        conf = present[0].conf.copy()
        for s in present[1:]:
            conf += s.conf
        meta = next((s.meta for s in present if s.meta is not None), None) or UnitMeta()
        devices = sorted({s.meta.device for s in present if s.meta is not None} - {""})
        return cls(
            unit=unit, status=status, conf=conf, rows=[r for s in present for r in s.rows],
            error=failed[0].error if failed else "", failed_image=failed[0].failed_image if failed else "",
            params=meta.params, class_names=meta.class_names,
            model_seconds=float(sum(s.model_seconds for s in present)),
            timed_images=int(sum(s.timed_images for s in present)),
            pipeline_seconds=float(sum(s.pipeline_seconds for s in present)),
            data_seconds=float(sum(s.data_seconds for s in present)),
            setup_seconds=_nanmax([s.setup_seconds for s in present]),
            peak_mem_mb=_nanmax([s.peak_mem_mb for s in present]),
            peak_rss_mb=_nanmax([s.peak_rss_mb for s in present]),
            # timings from different devices must never be mixed silently: the row names them all
            device="+".join(devices) if devices else meta.device,
            threads=meta.threads, versions=meta.versions, git_sha=meta.git_sha, config_hash=meta.config_hash,
            started_at=min(s.started_at for s in present), finished_at=max(s.updated_at for s in present),
            chunks=[[s.start, s.stop] for s in present],
        )  # fmt: skip

    def metrics(self) -> dict[str, Any]:
        """``miou``, ``aacc``, ``macc`` and per-class ``iou`` of the summed confusion matrix."""
        m = summarize(self.conf)
        return {"miou": m["miou"], "aacc": m["aacc"], "macc": m["macc"], "iou": m["iou"]}

    def to_json(self) -> dict[str, Any]:
        """The unit file. Its first three keys are format, unit_key and status (see :func:`peek_status`)."""
        m = self.metrics()
        return {
            "format": FORMAT, "unit_key": self.unit_key, "status": self.status.value, "error": self.error,
            "failed_image": self.failed_image, "unit": self.unit.to_dict(), "params": self.params,
            "num_classes": self.num_classes, "class_names": self.class_names, "n_images": self.n_images,
            "conf": encode_conf(self.conf),
            "metrics": {k: m[k] for k in ("miou", "aacc", "macc")} | {"iou": m["iou"].tolist()},
            "model_seconds": self.model_seconds, "timed_images": self.timed_images, "fps": self.fps,
            "pipeline_seconds": self.pipeline_seconds, "data_seconds": self.data_seconds,
            "pipeline_fps": self.pipeline_fps, "setup_seconds": self.setup_seconds, "peak_mem_mb": self.peak_mem_mb,
            "peak_rss_mb": self.peak_rss_mb, "device": self.device, "threads": self.threads,
            "versions": self.versions, "git_sha": self.git_sha, "config_hash": self.config_hash,
            "started_at": self.started_at, "finished_at": self.finished_at, "chunks": self.chunks, "rows": self.rows,
        }  # fmt: skip

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> UnitRecord:
        return cls(
            unit=Unit(**d["unit"]), status=Status(d["status"]), conf=decode_conf(d["conf"]), rows=list(d["rows"]),
            error=d.get("error", ""), failed_image=d.get("failed_image", ""), params=d.get("params", {}),
            class_names=d.get("class_names", []), model_seconds=float(d["model_seconds"]),
            timed_images=int(d["timed_images"]), pipeline_seconds=_nan(d.get("pipeline_seconds")),
            data_seconds=_nan(d.get("data_seconds")), setup_seconds=_nan(d.get("setup_seconds")),
            peak_mem_mb=_nan(d.get("peak_mem_mb")), peak_rss_mb=_nan(d.get("peak_rss_mb")),
            device=d.get("device", ""), threads=d.get("threads"), versions=d.get("versions", {}),
            git_sha=d.get("git_sha", ""), config_hash=d.get("config_hash", ""), started_at=d["started_at"],
            finished_at=d["finished_at"], chunks=d.get("chunks", []),
        )  # fmt: skip

    def result_row(self) -> dict[str, Any]:
        """This unit's row of results.csv (columns: :data:`robustbench_ovss.collect.RESULT_COLUMNS`)."""
        u = self.unit
        v = self.versions
        ok = self.status is Status.COMPLETE
        m = self.metrics()
        nan = float("nan")
        return {
            "method": u.method, "label": u.label, "method_version": u.method_version, "params_hash": u.params_hash,
            "backend": u.backend, "checkpoint": u.checkpoint, "dataset": u.dataset, "corruption": u.corruption,
            "severity": u.severity, "seed": u.seed, "n_images": self.n_images, "limit": u.limit,
            "status": self.status.value, "error": self.error, "failed_image": self.failed_image,
            # a failed unit's partial numbers are not results: keep them out of the table
            "miou": m["miou"] if ok else nan, "aacc": m["aacc"] if ok else nan, "macc": m["macc"] if ok else nan,
            "fps": self.fps, "timed_images": self.timed_images, "model_seconds": self.model_seconds,
            "pipeline_fps": self.pipeline_fps, "pipeline_seconds": self.pipeline_seconds,
            "data_seconds": self.data_seconds, "setup_seconds": self.setup_seconds, "peak_mem_mb": self.peak_mem_mb,
            "peak_rss_mb": self.peak_rss_mb, "device": self.device, "dtype": u.dtype, "threads": self.threads,
            "active_size": _mean_stat(self.rows, "active_size"), "active_recall": _mean_stat(self.rows, "active_recall"),
            "prompts_decoded": _mean_stat(self.rows, "prompts_decoded"),
            "versions": ";".join(f"{k}={val}" for k, val in v.items()),
            "torch_version": v.get("torch", ""), "transformers_version": v.get("transformers", ""),
            "corruption_lib_version": v.get("corruption_lib", ""), "package_version": v.get("package", ""),
            "git_sha": self.git_sha, "config_hash": self.config_hash, "unit_key": self.unit_key,
            "vocab_hash": u.vocab_hash, "fingerprint": u.fingerprint,
            "params": json.dumps(self.params, sort_keys=True, default=str),
            "started_at": self.started_at, "finished_at": self.finished_at,
        }  # fmt: skip


def _mean_stat(rows: list[ImageRow], name: str) -> float:
    vals = [r[name] for r in rows if isinstance(r.get(name), (int, float)) and not isinstance(r.get(name), bool)]
    vals = [float(v) for v in vals if not math.isnan(float(v))]
    return float(np.mean(vals)) if vals else float("nan")


def peek_status(path: Path) -> Status | None:
    """Status of a unit file without parsing it (a grid holds thousands, each with thousands of rows).

    Reads the head that :meth:`UnitRecord.to_json` writes first; a file of another form is parsed in
    full. None when there is no file.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(256).decode("utf-8", "replace")
    except FileNotFoundError:
        return None
    m = _HEAD.match(head)
    if m:
        return Status(m.group(3))
    from .files import read_json

    d = read_json(path)
    return None if d is None else Status(d["status"])
