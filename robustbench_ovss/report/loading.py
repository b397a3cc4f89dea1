"""Reading run directories for the report: re-collect, load the tidy tables, merge several runs.

A run directory is the harness's output (DESIGN §4): ``config.toml``, ``manifest.json``,
``results.csv``, ``per_class.csv``, ``per_image.csv`` and ``units/``. ``load_run`` rebuilds the
tables from the unit files (``robustbench_ovss.collect``) when the directory has them, and reads the
CSVs of a directory without unit files as they are. ``merge_runs`` joins several runs (or shards written to separate
directories) and detects duplicated units.
"""

from __future__ import annotations

import importlib
import io
import json
import logging
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import OvssError

log = logging.getLogger(__name__)

#: Columns that identify a unit's place in the grid.
GRID_KEYS = ["label", "dataset", "corruption", "severity", "seed"]

#: Columns that must agree for two rows with one unit_key to count as the same result. Timings,
#: timestamps and machine details legitimately differ between reruns (DESIGN §4: reproducible means
#: confusion matrices, accuracy metrics and per-image stats).
RESULT_COLUMNS = ["method", "label", "dataset", "corruption", "severity", "seed", "n_images", "status",
                  "miou", "aacc", "macc", "active_size", "active_recall", "prompts_decoded"]

DEFAULT_REFERENCE = "segearth-ov3"

#: The harness writes "complete" for a finished unit; the report's vocabulary is ok/failed/missing.
STATUS_ALIASES = {"complete": "ok", "partial": "missing", "": "ok"}


class ReportError(OvssError):
    """A run directory that cannot be reported, or a report that ``--strict`` rejects."""


@dataclass
class RunData:
    """The tables and metadata of one run directory (or of several merged ones)."""

    dirs: list[Path]
    results: pd.DataFrame
    per_class: pd.DataFrame
    per_image: pd.DataFrame
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)  # run dir -> parsed config.toml
    manifests: dict[str, dict[str, Any]] = field(default_factory=dict)  # run dir -> manifest.json
    notes: list[str] = field(default_factory=list)  # things the reader should know (dedup, fallbacks)
    plans: dict[str, pd.DataFrame] = field(default_factory=dict)  # run dir -> plan.json units (when written)

    @property
    def reference(self) -> str:
        """The [report] reference method label of the first run (the default when no config exists)."""
        for cfg in self.configs.values():
            ref = cfg.get("report", {}).get("reference")
            if ref:
                return str(ref)
        return DEFAULT_REFERENCE


# -- one run ----------------------------------------------------------------------------------------


def recollect(run_dir: Path, write: bool = True) -> dict[str, pd.DataFrame] | None:
    """The run's tables rebuilt from its unit files (``collect``), as read back from CSV text.

    ``write`` also writes them into the run directory (``ovss-bench report`` without ``-o``); with
    ``write=False`` nothing is written there. Returns None when the directory has no ``units/`` folder
    (a copied or hand-made results table, which collecting would wipe): its CSVs are read as they are.
    """
    if not (run_dir / "units").is_dir():
        return None
    from ..collect import collect

    tables = collect(run_dir, write=write)
    # the same parsing as reading the files, so a report is the same with or without -o
    return {name: pd.read_csv(io.StringIO(getattr(tables, name).to_csv(index=False)), keep_default_na=True)
            for name in ("results", "per_class", "per_image")}  # fmt: skip


def read_csv(path: Path, required: bool = False) -> pd.DataFrame:
    """Read one of the run's CSVs; an absent or empty optional file gives an empty frame."""
    if not path.is_file():
        if required:
            raise ReportError(f"{path} not found: run `ovss-bench collect {path.parent}` or check the run directory")
        return pd.DataFrame()
    try:
        return pd.read_csv(path, keep_default_na=True)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path}: not a readable CSV ({exc}); rerun `ovss-bench collect {path.parent}`") from exc


def normalize(df: pd.DataFrame) -> pd.DataFrame:
    """Fill the columns the report relies on with their documented defaults and types.

    ``label`` defaults to ``method``; ``corruption`` "none" and ``severity``/``seed`` 0 when absent;
    ``status`` "ok"; ``limit`` 0.
    """
    if df.empty and not len(df.columns):
        return df
    out = df.copy()
    if "label" not in out.columns and "method" in out.columns:
        out["label"] = out["method"]
    elif "label" in out.columns and "method" in out.columns:
        out["label"] = out["label"].where(out["label"].notna() & (out["label"].astype(str) != ""), out["method"])
    defaults: dict[str, Any] = {"corruption": "none", "severity": 0, "seed": 0}
    if "n_images" in out.columns or "fps" in out.columns:  # results.csv (not per_class / per_image)
        defaults.update(status="ok", limit=0, error="")
    for col, val in defaults.items():
        if col not in out.columns:
            out[col] = val
        elif isinstance(val, str):  # an all-empty text column reads as float NaN
            out[col] = out[col].astype(object).where(out[col].notna(), val)
        else:
            out[col] = out[col].fillna(val)
    for col in ("severity", "seed"):
        if col in out.columns:
            out[col] = pd.to_numeric(out[col], errors="coerce").fillna(0).astype(int)
    for col in ("label", "method", "dataset", "corruption", "status", "unit_key", "device", "error"):
        if col in out.columns:
            out[col] = out[col].astype(object).where(out[col].notna(), "").astype(str)
    if "status" in out.columns:
        out["status"] = out["status"].map(lambda s: STATUS_ALIASES.get(s, s))
    return out


def load_run(run_dir: str | Path, collect: bool = True, write: bool = True) -> RunData:
    """Load one run directory, re-collecting its tables from the unit files first when it has them
    (``collect``); ``write=False`` leaves the directory untouched (``report -o``, read-only runs)."""
    run = Path(run_dir)
    if not run.is_dir():
        raise ReportError(f"{run} is not a directory: pass the run directory written by `ovss-bench run --out`")
    notes = []
    fresh = recollect(run, write=write) if collect else None
    if fresh is not None:
        notes.append(f"{run}: tables re-collected from units/")

    def table(name: str, required: bool = False) -> pd.DataFrame:
        if fresh is not None:
            return fresh[name]
        return read_csv(run / f"{name}.csv", required=required)

    results = normalize(table("results", required=True))
    if "miou" not in results.columns or "dataset" not in results.columns:
        raise ReportError(f"{run / 'results.csv'} has no miou/dataset columns: rerun `ovss-bench collect {run}`")
    results["run_dir"] = str(run)
    per_class = normalize(table("per_class"))
    per_image = normalize(table("per_image"))
    configs, manifests = {}, {}
    cfg_path = run / "config.toml"
    if cfg_path.is_file():
        try:
            configs[str(run)] = tomllib.loads(cfg_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ReportError(f"{cfg_path}: not valid TOML ({exc}); restore the file the run wrote") from exc
    else:
        notes.append(f"{run}: no config.toml; reference method defaults to {DEFAULT_REFERENCE!r} and missing units cannot be listed")
    man_path = run / "manifest.json"
    if man_path.is_file():
        try:
            manifests[str(run)] = json.loads(man_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ReportError(f"{man_path}: not valid JSON ({exc}); restore the file the run wrote") from exc
    plans = {}
    plan = _read_plan(run / "plan.json")
    if plan is not None:
        plans[str(run)] = plan
    return RunData([run], results, per_class, per_image, configs, manifests, notes, plans)


def _read_plan(path: Path) -> pd.DataFrame | None:
    """The planned units the runner wrote (``plan.json``: unit_key + grid keys), or None."""
    if not path.is_file():
        return None
    try:
        units = json.loads(path.read_text(encoding="utf-8")).get("units", [])
        df = pd.DataFrame(units)
    except (json.JSONDecodeError, AttributeError, ValueError):
        log.warning("%s is unreadable; missing units come from config.toml", path)
        return None
    if df.empty or not set(GRID_KEYS + ["unit_key"]) <= set(df.columns):
        return None
    return normalize(df[["unit_key", *GRID_KEYS]])


# -- several runs -----------------------------------------------------------------------------------


def _same_result(a: pd.Series, b: pd.Series) -> bool:
    for col in RESULT_COLUMNS:
        if col not in a.index or col not in b.index:
            continue
        x, y = a[col], b[col]
        x_na, y_na = pd.isna(x), pd.isna(y)
        if x_na or y_na:
            if x_na != y_na:
                return False
            continue
        if isinstance(x, (int, float, np.number)) and isinstance(y, (int, float, np.number)):
            if not np.isclose(float(x), float(y), rtol=1e-9, atol=1e-12):
                return False
        elif str(x) != str(y):
            return False
    return True


def dedupe_results(results: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Resolve rows that share a ``unit_key`` across run directories.

    Rows whose result columns (``RESULT_COLUMNS``) agree are one unit seen twice: the first is kept.
    A "missing" or "failed" row loses to an "ok" row of the same unit (a later run finished it).
    Two "ok" rows that disagree are an error naming both directories.
    """
    if "unit_key" not in results.columns or results.empty:
        return results, []
    notes: list[str] = []
    keep_idx: list[int] = []
    rank = {"ok": 0, "failed": 1, "missing": 2}
    for key, grp in results.groupby("unit_key", sort=False):
        if len(grp) == 1 or key == "":
            keep_idx.extend(grp.index)
            continue
        grp = grp.assign(_rank=grp["status"].map(rank).fillna(3)).sort_values("_rank", kind="stable")
        first = grp.iloc[0]
        for _, other in grp.iloc[1:].iterrows():
            if other["status"] != first["status"]:
                notes.append(f"unit {key} ({first['label']}, {first['dataset']}, {first['corruption']} s{first['severity']}): "
                             f"{first['status']} in {first['run_dir']} replaces {other['status']} in {other['run_dir']}")
                continue
            if not _same_result(first, other):
                raise ReportError(
                    f"unit {key} ({first['label']}, {first['dataset']}, {first['corruption']} s{first['severity']} seed {first['seed']}) "
                    f"has different results in {first['run_dir']} and {other['run_dir']}: report them separately or remove one"
                )
            if first["run_dir"] != other["run_dir"]:
                notes.append(f"unit {key} found in {first['run_dir']} and {other['run_dir']} with identical results; counted once")
        keep_idx.append(grp.index[0])
    kept = results.loc[sorted(keep_idx)]
    return kept, notes


#: Columns that say which images and settings a row evaluated: two runs' rows of one grid cell that
#: differ here measured different things and are never averaged together.
IDENTITY_COLUMNS = ["limit", "n_images", "fingerprint", "vocab_hash", "params_hash", "checkpoint", "dtype"]


def check_same_cells(results: pd.DataFrame) -> None:
    """Refuse to merge runs whose rows of one (method, dataset, corruption, severity, seed) cell come
    from different image sets or settings (another ``--limit``, data, params, checkpoint or dtype):
    the report would average them as if they were seeds."""
    if "run_dir" not in results.columns or results["run_dir"].nunique() < 2:
        return
    cols = [c for c in IDENTITY_COLUMNS if c in results.columns]
    for cell, g in results.groupby(GRID_KEYS, sort=True):
        if g["run_dir"].nunique() < 2 or "unit_key" in g.columns and g["unit_key"].nunique() == 1:
            continue
        for col in cols:
            vals = g[col].astype(str).unique()
            if len(vals) > 1:
                dirs = " and ".join(sorted(g["run_dir"].astype(str).unique()))
                what = "image sets" if col in ("limit", "n_images", "fingerprint") else "settings"
                raise ReportError(f"{dirs} evaluate different {what} for {cell[0]} on {cell[1]} {cell[2]} s{cell[3]} "
                                  f"seed {cell[4]} ({col} {' vs '.join(vals)}); report them separately")  # fmt: skip


def _filter_by_kept(table: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    """Rows of per_class/per_image that belong to a kept (unit_key, run_dir) pair, each once."""
    if table.empty or "unit_key" not in table.columns:
        return table
    pairs = results[["unit_key", "run_dir"]].drop_duplicates()
    out = table.merge(pairs, on=["unit_key", "run_dir"], how="inner")
    return out


def merge_runs(runs: list[RunData]) -> RunData:
    """Concatenate several loaded runs, deduplicating units seen in more than one directory."""
    if len(runs) == 1:
        return runs[0]
    frames = {name: [] for name in ("results", "per_class", "per_image")}
    for r in runs:
        for name in frames:
            t = getattr(r, name)
            if not t.empty:
                t = t.copy()
                t["run_dir"] = str(r.dirs[0])
            frames[name].append(t)
    results = pd.concat(frames["results"], ignore_index=True)
    results, notes = dedupe_results(results)
    check_same_cells(results)
    per_class = _filter_by_kept(pd.concat(frames["per_class"], ignore_index=True), results)
    per_image = _filter_by_kept(pd.concat(frames["per_image"], ignore_index=True), results)
    configs: dict[str, dict[str, Any]] = {}
    manifests: dict[str, dict[str, Any]] = {}
    plans: dict[str, pd.DataFrame] = {}
    all_notes: list[str] = []
    for r in runs:
        configs.update(r.configs)
        manifests.update(r.manifests)
        plans.update(r.plans)
        all_notes.extend(r.notes)
    refs = {str(c.get("report", {}).get("reference")) for c in configs.values() if c.get("report", {}).get("reference")}
    if len(refs) > 1:
        all_notes.append(f"the runs name different reference methods ({', '.join(sorted(refs))}); using the first run's")
    return RunData([d for r in runs for d in r.dirs], results.reset_index(drop=True), per_class, per_image,
                   configs, manifests, all_notes + notes, plans)


def load_runs(run_dirs: list[str | Path], collect: bool = True, write: bool = True) -> RunData:
    """Load and merge run directories (a directory given twice is read once); ``write`` as :func:`load_run`."""
    seen: list[Path] = []
    for d in run_dirs:
        p = Path(d)
        if p.resolve() not in [s.resolve() for s in seen]:
            seen.append(p)
    return merge_runs([load_run(d, collect=collect, write=write) for d in seen])


# -- the planned grid -------------------------------------------------------------------------------


def _expand(names: list[str], registry_name: str) -> list[str] | None:
    if not any(ch in n for n in names for ch in "*?["):
        return list(names)
    try:
        reg = getattr(importlib.import_module("robustbench_ovss.registry"), registry_name)
        return list(reg.expand(names))
    except Exception:  # noqa: BLE001 - no registry entry for a glob: the grid cannot be listed
        return None


def planned_units(config: dict[str, Any]) -> pd.DataFrame | None:
    """The unit grid a resolved config plans (clean once with seed 0, corrupted per seed).

    Returns None when the grid cannot be derived (a glob that needs the registries).
    """
    methods = config.get("methods") or [{"name": "activesam"}, {"name": DEFAULT_REFERENCE}]
    labels = [str(m.get("label") or m.get("name")) for m in methods]
    datasets = _expand(list(config.get("datasets", {}).get("names", [])), "DATASETS")
    corr_sec = config.get("corruptions", {})
    corruptions = _expand(list(corr_sec.get("names", [])), "CORRUPTIONS")
    if datasets is None or corruptions is None:
        return None
    severities = [int(s) for s in corr_sec.get("severities", [])]
    seeds = [int(s) for s in config.get("run", {}).get("seeds", [0])]
    rows = []
    for lab in labels:
        for d in datasets:
            if corr_sec.get("clean", True):
                rows.append((lab, d, "none", 0, 0))
            for c in corruptions:
                for s in severities:
                    for seed in seeds:
                        rows.append((lab, d, c, s, seed))
    return pd.DataFrame(rows, columns=GRID_KEYS)


def missing_units(data: RunData) -> tuple[pd.DataFrame, list[str]]:
    """Planned units with no ok/failed result, plus rows marked "missing" in results.csv.

    The plan is the runner's ``plan.json`` (matched by unit_key, so a result of an older config does
    not count) or else the grid of ``config.toml`` (matched by grid keys). Returns the table
    (GRID_KEYS + ``run_dir``) and notes on runs whose plan could not be derived.
    """
    res = data.results
    done = res[res["status"].isin(["ok", "failed"])]
    present = set(map(tuple, done[GRID_KEYS].itertuples(index=False)))
    done_keys = set(done["unit_key"]) if "unit_key" in done.columns else set()
    rows: list[tuple] = []
    notes: list[str] = []
    for run in map(str, data.dirs):
        plan = data.plans.get(run)
        if plan is not None:
            for t in plan.itertuples(index=False):
                if t.unit_key not in done_keys:
                    rows.append((*(getattr(t, k) for k in GRID_KEYS), run))
            continue
        cfg = data.configs.get(run)
        if cfg is None:
            continue
        grid = planned_units(cfg)
        if grid is None:
            notes.append(f"{run}: config names globs that need the registries; missing units come from results.csv only")
            continue
        for t in grid.itertuples(index=False):
            if tuple(t) not in present:
                rows.append((*t, run))
    marked = res.loc[res["status"] == "missing"]
    for t in marked[GRID_KEYS + ["run_dir"]].itertuples(index=False):
        if tuple(t)[:5] not in present:
            rows.append(tuple(t))
    out = pd.DataFrame(rows, columns=GRID_KEYS + ["run_dir"])
    out = out.drop_duplicates(subset=GRID_KEYS).sort_values(GRID_KEYS).reset_index(drop=True)
    return out, notes
