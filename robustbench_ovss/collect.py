"""``ovss-bench collect``: the tidy tables of a run, rebuilt from its unit files.

``results.csv`` holds one row per unit (:meth:`~robustbench_ovss.state.UnitRecord.result_row`),
``per_class.csv`` one row per unit and class, ``per_image.csv`` one row per unit and image. Only units
of the run's plan (``plan.json``) are collected: a run directory holds one config's results
(:mod:`robustbench_ovss.runner.reuse`), and unit files outside the plan - from a version that did not
guard reuse - are left out and counted in the log. Nothing here imports torch.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import OvssError
from .files import atomic_write_text, json_default, read_json
from .metrics import per_class_areas
from .plan import ROW_IDENTITY
from .state import FORMAT, Status, UnitRecord
from .store import RunDir, require_run_dir

log = logging.getLogger(__name__)

RESULT_COLUMNS = [
    "method", "label", "method_version", "params_hash", "backend", "checkpoint", "dataset", "corruption",
    "severity", "seed", "n_images", "limit", "status", "error", "failed_image", "miou", "aacc", "macc",
    "fps", "timed_images", "model_seconds", "pipeline_fps", "pipeline_seconds", "data_seconds", "setup_seconds",
    "peak_mem_mb", "peak_rss_mb", "device", "dtype", "threads", "active_size", "active_recall", "prompts_decoded",
    "versions", "torch_version", "transformers_version", "corruption_lib_version", "package_version", "git_sha",
    "config_hash", "unit_key", "vocab_hash", "fingerprint", "params", "started_at", "finished_at",
]  # fmt: skip
"""results.csv columns. Metrics are fractions (0..1). ``fps`` = timed images / model seconds (NaN
when no image was timed); ``model_seconds`` sums ``predict`` times of the timed images (every
evaluated image is timed; warm-up calls are extra, untimed ``predict`` calls on the first image of each
dataset); ``pipeline_fps`` = timed images / ``pipeline_seconds``, which sums per image its loading and
corruption (``data_seconds``, shared by the methods but charged in full to each, as if it ran alone),
the ``predict`` time and the metric update (the ActiveSAM paper's Table 3 protocol, without the
references' second read of the image file inside the model);
``setup_seconds`` = the method's ``setup`` on this dataset (largest over the processes that ran
chunks of the unit; a per-dataset cost, repeated in each of the dataset's units); ``peak_mem_mb`` =
torch.cuda.max_memory_allocated around this method's predict calls (NaN on the CPU, where memory
cannot be attributed to one method); ``peak_rss_mb`` = peak resident memory of the whole process (all
methods and the loader), for orientation only."""

KEY_COLUMNS = ["unit_key", "label", "method", "dataset", "corruption", "severity", "seed"]
PER_CLASS_COLUMNS = [*KEY_COLUMNS, "status", "class_id", "class_name", "intersection", "union", "area_pred",
                     "area_label", "iou"]  # fmt: skip


def planned_keys(rd: RunDir) -> set[str] | None:
    """Unit keys of the run's ``plan.json``, or None when it has none (a directory of an old version)."""
    plan = read_json(rd.plan_path)
    if plan is None:
        return None
    return {u["unit_key"] for u in plan.get("units", [])}


def load_units(run_dir: str | Path) -> list[UnitRecord]:
    """The run's unit records in table order (dataset, clean first, corruption, severity, seed, label).

    With a ``plan.json``, the units it lists; without one, every unit file, keeping the most recently
    finished unit of each (label, dataset, corruption, severity, seed).
    """
    rd = require_run_dir(run_dir, "collect")
    plan = planned_keys(rd)
    recs: list[UnitRecord] = []
    outside = 0
    for key in rd.unit_keys():
        if plan is not None and key not in plan:
            outside += 1
            continue
        d = read_json(rd.unit_path(key))
        if d is not None and d.get("format") == FORMAT:
            recs.append(UnitRecord.from_json(d))
    if outside:
        log.warning("collect: %d unit file(s) in %s are not in its plan.json and are left out", outside, rd.units_dir)
    if plan is None:
        recs.sort(key=lambda r: r.finished_at, reverse=True)
        seen: set[tuple[Any, ...]] = set()
        kept = []
        for r in recs:
            ident = tuple(getattr(r.unit, k) for k in ROW_IDENTITY)
            if ident not in seen:
                seen.add(ident)
                kept.append(r)
        if len(kept) < len(recs):
            log.info("collect: %d unit file(s) superseded by newer results of the same row are left out",
                     len(recs) - len(kept))  # fmt: skip
        recs = kept
    recs.sort(key=lambda r: (r.unit.dataset, r.unit.corruption != "none", r.unit.corruption, r.unit.severity,
                             r.unit.seed, r.unit.label))  # fmt: skip
    return recs


@dataclass
class Tables:
    """The three tables of a run (pandas DataFrames)."""

    results: Any
    per_class: Any
    per_image: Any


def _csv_value(v: Any) -> Any:
    return json.dumps(v, default=json_default) if isinstance(v, (list, dict)) else v


def build_tables(recs: list[UnitRecord]) -> Tables:
    """results, per_class and per_image frames of unit records. List-valued per-image stats (e.g.
    ``active``) become JSON strings."""
    import pandas as pd

    results = pd.DataFrame([r.result_row() for r in recs], columns=RESULT_COLUMNS)
    pc_rows: list[dict[str, Any]] = []
    pi_rows: list[dict[str, Any]] = []
    for r in recs:
        keys = {"unit_key": r.unit_key, **{k: getattr(r.unit, k) for k in KEY_COLUMNS[1:]}, "status": r.status.value}
        areas = per_class_areas(r.conf)
        iou = r.metrics()["iou"]
        for c in range(r.num_classes):
            pc_rows.append({
                **keys, "class_id": c, "class_name": r.class_names[c] if c < len(r.class_names) else str(c),
                "intersection": int(areas["intersection"][c]), "union": int(areas["union"][c]),
                "area_pred": int(areas["area_pred"][c]), "area_label": int(areas["area_label"][c]),
                "iou": float(iou[c]),
            })  # fmt: skip
        for row in r.rows:
            pi_rows.append({**keys, **{k: _csv_value(v) for k, v in row.items()}})
    per_image = pd.DataFrame(pi_rows)
    if per_image.empty:
        per_image = pd.DataFrame(columns=[*KEY_COLUMNS, "status", "image_id", "pixel_acc", "miou"])
    return Tables(results, pd.DataFrame(pc_rows, columns=PER_CLASS_COLUMNS), per_image)


def table_paths(run_dir: str | Path) -> dict[str, Path]:
    root = Path(run_dir)
    return {"results": root / "results.csv", "per_class": root / "per_class.csv", "per_image": root / "per_image.csv"}


def _check_not_emptied(rd: RunDir, recs: list[UnitRecord]) -> None:
    """Refuse to overwrite a results.csv with rows by an empty one when the unit files are gone."""
    if recs:
        return
    path = rd.root / "results.csv"
    try:
        with open(path, "rb") as f:
            n_lines = sum(1 for _ in f)
    except OSError:
        return
    if n_lines > 1:
        raise OvssError(f"{rd.units_dir}: no unit files, but {path} holds {n_lines - 1} row(s); restore units/ "
                        f"(or delete {path.name} to start over) - collect would empty the table")  # fmt: skip


def collect(run_dir: str | Path, write: bool = True) -> Tables:
    """The tables of ``run_dir`` from its unit files; written there as CSVs when ``write``.

    Raises a one-line ``OvssError`` when ``run_dir`` is not a run directory, when its unit files are
    gone but results.csv has rows, or when the CSVs cannot be written.
    """
    rd = require_run_dir(run_dir, "collect")
    recs = load_units(rd.root)
    if write:
        _check_not_emptied(rd, recs)
    tables = build_tables(recs)
    if write:
        paths = table_paths(rd.root)
        for name in ("results", "per_class", "per_image"):
            atomic_write_text(paths[name], getattr(tables, name).to_csv(index=False), durable=False)
    return tables


def cli_collect(args: Any) -> int:
    """``ovss-bench collect RUN_DIR``: rebuild the CSV tables and print where they are."""
    t0 = time.perf_counter()
    tables = collect(args.run_dir)
    res = tables.results
    paths = table_paths(args.run_dir)
    n_failed = int((res["status"] == Status.FAILED.value).sum()) if len(res) else 0
    print(f"{len(res)} unit(s) ({n_failed} failed) -> {paths['results']}, {paths['per_class'].name}, "
          f"{paths['per_image'].name} in {time.perf_counter() - t0:.1f}s")  # fmt: skip
    return 0
