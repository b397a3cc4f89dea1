"""Pure table functions of the report: tidy DataFrames in, tidy DataFrames out (DESIGN §9).

Every metric stays a fraction in 0..1 here; percent appears only when ``render`` formats a table.
Only units with status "ok" enter a metric. Definitions:

- clean mIoU: the mIoU of the clean unit (corruption "none", severity 0); the mean when a merge holds
  several clean units of one method and dataset.
- per corruption c and seed k: the mean over severities of mIoU_{c,s,k}.
- mPC_k = mean over every (corruption, severity) cell of seed k (``metrics.mpc``);
  rPC_k = mPC_k / clean mIoU (``metrics.rpc``).
- CE_{c,k} = sum_s (1 - mIoU_{c,s,k}) / sum_s (1 - mIoU^ref_{c,s,k}) (``metrics.corruption_error``)
  against the reference method at the same seed; mCE_k = mean over corruptions of CE_{c,k}.
- Over seeds: mean and sample standard deviation (ddof = 1) of the per-seed values.
- Speed: images/s = sum of timed images / sum of model seconds over a method's units on one dataset
  and one device, where a unit's timed images = ``timed_images`` (or fps x model_seconds, the
  harness's FPS definition); units timed on several devices ("cpu+cuda:0") are left out;
  clean units when the method has any there, else its corrupted units. Speed-up = images/s over the
  reference method's images/s on the same dataset, device and scope. Devices are never pooled.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from .. import metrics

#: rPC (= mPC / clean mIoU) is not shown below this clean mIoU: a ratio to a near-zero clean score
#: means nothing (it can exceed 200 % from round-off in a few pixels).
MIN_CLEAN_MIOU_FOR_RPC = 0.05
#: A bootstrap interval of the mean over images needs at least this many images.
MIN_IMAGES_FOR_CI = 10
#: A dataset whose units hold fewer images than this is flagged in every table (few-image numbers).
FEW_IMAGES = 10

#: Resamples and RNG seed of the bootstrap confidence intervals (fixed, so reports are reproducible).
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
BOOTSTRAP_LEVEL = 0.95

CLEAN = "none"


def ok_rows(results: pd.DataFrame) -> pd.DataFrame:
    """Units that finished (status "ok") and carry an mIoU."""
    r = results[results["status"] == "ok"]
    return r[r["miou"].notna()]


def corrupted_rows(results: pd.DataFrame) -> pd.DataFrame:
    """Finished units under a corruption (severity >= 1)."""
    r = ok_rows(results)
    return r[r["corruption"] != CLEAN]


def clean_rows(results: pd.DataFrame) -> pd.DataFrame:
    """Finished clean units."""
    r = ok_rows(results)
    return r[r["corruption"] == CLEAN]


def corruptions_of(results: pd.DataFrame, dataset: str | None = None) -> list[str]:
    """Corruptions with at least one finished unit (on ``dataset``), sorted."""
    r = corrupted_rows(results)
    if dataset is not None:
        r = r[r["dataset"] == dataset]
    return sorted(r["corruption"].unique())


# -- robustness -------------------------------------------------------------------------------------


def robustness_per_seed(results: pd.DataFrame, reference: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-seed robustness metrics of every method and dataset.

    Returns:
        ``values``: long table ``label, dataset, seed, metric, value`` with metric one of "clean",
        "miou:<corruption>", "mpc", "rpc", "ce:<corruption>", "mce";
        ``na``: ``label, dataset, metric, reason`` for CE values that could not be computed and rPC values
        left out because the clean mIoU is below ``MIN_CLEAN_MIOU_FOR_RPC``.
    """
    rows: list[tuple] = []
    na: list[tuple] = []
    clean = clean_rows(results)
    corr = corrupted_rows(results)
    for t in clean.itertuples(index=False):
        rows.append((t.label, t.dataset, int(t.seed), "clean", float(t.miou)))
    clean_mean = clean.groupby(["label", "dataset"])["miou"].mean()
    # one mIoU per (label, dataset, corruption, severity, seed) cell; merged runs may hold a cell twice
    cells = corr.groupby(["label", "dataset", "seed", "corruption", "severity"])["miou"].mean()
    ref_known = reference in set(results["label"])
    ref_cells = cells.loc[reference] if reference in cells.index.get_level_values(0) else None
    for (label, dataset, seed), g in cells.groupby(level=["label", "dataset", "seed"], sort=True):
        g = g.droplevel(["label", "dataset", "seed"])
        by_c = {c: {int(s): float(v) for s, v in gc.droplevel("corruption").items()} for c, gc in g.groupby(level="corruption")}
        for c, sev in by_c.items():
            rows.append((label, dataset, seed, f"miou:{c}", float(np.mean(list(sev.values())))))
        mpc_v = metrics.mpc(g.to_numpy(dtype=float))
        rows.append((label, dataset, seed, "mpc", mpc_v))
        cm = float(clean_mean.get((label, dataset), np.nan))
        if np.isfinite(cm) and cm < MIN_CLEAN_MIOU_FOR_RPC:
            na.append((label, dataset, "rpc", f"clean mIoU {100 * cm:.2f}% is below {100 * MIN_CLEAN_MIOU_FOR_RPC:g}%: "
                                              "a ratio to it means nothing"))  # fmt: skip
        else:
            rows.append((label, dataset, seed, "rpc", metrics.rpc(mpc_v, cm)))
        ces: list[float] = []
        for c, sev in by_c.items():
            reason = None
            if not ref_known:
                reason = f"reference method {reference!r} has no results in this run"
            else:
                ref_sev: dict[int, float] = {}
                if ref_cells is not None and (dataset, seed, c) in ref_cells.index.droplevel("severity"):
                    rc = ref_cells.loc[(dataset, seed, c)]
                    ref_sev = {int(s): float(v) for s, v in rc.items()}
                lacking = sorted(set(sev) - set(ref_sev))
                if lacking:
                    reason = (f"reference {reference!r} has no finished {c} unit on {dataset} at seed {seed}, "
                              f"severity {', '.join(map(str, lacking))}")
                else:
                    ce = metrics.corruption_error(sev, ref_sev)
                    rows.append((label, dataset, seed, f"ce:{c}", ce))
                    ces.append(ce)
            if reason:
                na.append((label, dataset, f"ce:{c}", reason))
                na.append((label, dataset, "mce", reason))
        if ces and len(ces) == len(by_c):
            rows.append((label, dataset, seed, "mce", float(np.mean(ces))))
    values = pd.DataFrame(rows, columns=["label", "dataset", "seed", "metric", "value"])
    na_df = pd.DataFrame(na, columns=["label", "dataset", "metric", "reason"]).drop_duplicates()
    return values, na_df


def over_seeds(values: pd.DataFrame) -> pd.DataFrame:
    """Mean, sample std (ddof 1; NaN with one seed) and seed count of each (label, dataset, metric)."""
    g = values.dropna(subset=["value"]).groupby(["label", "dataset", "metric"])["value"]
    out = g.agg(mean="mean", std="std", n_seeds="count").reset_index()
    return out


def grid_coverage(results: pd.DataFrame) -> pd.DataFrame:
    """How many of a dataset's corrupted (corruption, severity, seed) cells each method finished.

    The dataset's cells are the union over its methods; ``cells < total`` flags a method whose mPC
    rests on fewer cells than the others'.
    """
    corr = corrupted_rows(results)
    rows = []
    for dataset, g in corr.groupby("dataset"):
        allcells = set(map(tuple, g[["corruption", "severity", "seed"]].itertuples(index=False)))
        for label, gl in g.groupby("label"):
            cells = set(map(tuple, gl[["corruption", "severity", "seed"]].itertuples(index=False)))
            rows.append((label, dataset, len(cells), len(allcells)))
    return pd.DataFrame(rows, columns=["label", "dataset", "cells", "total"])


def rpc_by_corruption(results: pd.DataFrame) -> pd.DataFrame:
    """rPC per corruption: mean over severities and seeds of mIoU_c over clean mIoU.

    Columns ``label, dataset, corruption, rpc`` (the heat map's data); NaN where the clean mIoU is below
    ``MIN_CLEAN_MIOU_FOR_RPC``.
    """
    corr = corrupted_rows(results)
    clean_mean = clean_rows(results).groupby(["label", "dataset"])["miou"].mean()
    per_seed = corr.groupby(["label", "dataset", "corruption", "seed"])["miou"].mean().reset_index()
    m = per_seed.groupby(["label", "dataset", "corruption"])["miou"].mean().reset_index()
    clean_of = [float(clean_mean.get((lab, d), np.nan)) for lab, d in zip(m["label"], m["dataset"])]
    m["rpc"] = [metrics.rpc(v, c) if not c < MIN_CLEAN_MIOU_FOR_RPC else np.nan for v, c in zip(m["miou"], clean_of)]
    return m[["label", "dataset", "corruption", "rpc"]]


def severity_curve(results: pd.DataFrame) -> pd.DataFrame:
    """mIoU by severity for plotting: corrupted units per seed, plus the clean units repeated under
    each corruption of their dataset as severity 0. Columns ``label, dataset, corruption, severity,
    seed, miou``."""
    corr = corrupted_rows(results)[["label", "dataset", "corruption", "severity", "seed", "miou"]]
    clean = clean_rows(results)[["label", "dataset", "seed", "miou"]]
    parts = [corr]
    for dataset in corr["dataset"].unique():
        for c in corruptions_of(results, dataset):
            cl = clean[clean["dataset"] == dataset].assign(corruption=c, severity=0)
            parts.append(cl[corr.columns])
    return pd.concat(parts, ignore_index=True).sort_values(["dataset", "corruption", "label", "severity", "seed"])


# -- bootstrap --------------------------------------------------------------------------------------


def bootstrap_mean_ci(values: np.ndarray, n_boot: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                      level: float = BOOTSTRAP_LEVEL) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values``.

    ``n_boot`` resamples of len(values) indices drawn with replacement by
    ``np.random.default_rng(seed).integers(0, n, size=(n_boot, n))``; the interval is the
    ((1 - level) / 2, (1 + level) / 2) percentiles (numpy's default linear interpolation) of the
    resampled means. NaN values are dropped first; (NaN, NaN) when nothing is left.
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return float("nan"), float("nan")
    idx = np.random.default_rng(seed).integers(0, x.size, size=(n_boot, x.size))
    means = x[idx].mean(axis=1)
    lo, hi = np.percentile(means, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(lo), float(hi)


def clean_image_ci(per_image: pd.DataFrame, results: pd.DataFrame, **kw: float) -> pd.DataFrame:
    """Bootstrap CI of the mean per-image mIoU of each method's clean units, per dataset.

    Uses the per_image rows of finished clean units (by unit_key). Columns ``label, dataset,
    n_images, mean, ci_low, ci_high, note``. The per-image mean differs from the dataset mIoU (which sums
    confusion matrices first); the interval says how much the image sample moves the former. Below
    ``MIN_IMAGES_FOR_CI`` images the interval is NaN and ``note`` says why.
    """
    cols = ["label", "dataset", "n_images", "mean", "ci_low", "ci_high", "note"]
    if per_image.empty or "miou" not in per_image.columns:
        return pd.DataFrame(columns=cols)
    keys = set(clean_rows(results)["unit_key"])
    pi = per_image[per_image["unit_key"].isin(keys)] if "unit_key" in per_image.columns else per_image[per_image["corruption"] == CLEAN]
    rows = []
    for (label, dataset), g in pi.groupby(["label", "dataset"], sort=True):
        x = g["miou"].to_numpy(dtype=float)
        x = x[~np.isnan(x)]
        if x.size >= MIN_IMAGES_FOR_CI:
            lo, hi = bootstrap_mean_ci(x, **kw)  # type: ignore[arg-type]
            note = ""
        else:
            lo, hi = np.nan, np.nan
            note = f"{x.size} image(s): an interval needs at least {MIN_IMAGES_FOR_CI}"
        rows.append((label, dataset, int(x.size), float(x.mean()) if x.size else np.nan, lo, hi, note))
    return pd.DataFrame(rows, columns=cols)


# -- speed ------------------------------------------------------------------------------------------


def speed_table(results: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Throughput per method, dataset and device (never pooled across devices).

    Columns ``label, dataset, device, dtype, scope, units, timed_images, model_seconds,
    images_per_s, s_per_image, pipeline_images_per_s, setup_seconds, speedup, pipeline_speedup,
    speedup_note, text_protocol``; ``setup_seconds`` is the method's setup on the dataset, a cost paid
    once per dataset and process (the largest over the units, which each record it); ``speedup`` is NaN
    with a note when the reference has no timed unit on the same dataset, device and scope;
    ``pipeline_images_per_s`` = timed images / pipeline seconds (each image's loading and corruption +
    the method's predict + metric; NaN when a unit lacks pipeline timing); ``text_protocol`` is
    "cached" or "re-encoded per image" (the ``reencode_text`` param).
    """
    cols = ["label", "dataset", "device", "dtype", "scope", "units", "timed_images", "model_seconds",
            "images_per_s", "s_per_image", "pipeline_images_per_s", "setup_seconds", "speedup", "pipeline_speedup",
            "speedup_note", "text_protocol"]
    r = ok_rows(results)
    if "fps" not in r.columns or "model_seconds" not in r.columns:
        return pd.DataFrame(columns=cols)
    r = r[~r.index.isin(mixed_device_rows(r).index)]
    fps = pd.to_numeric(r["fps"], errors="coerce")
    secs = pd.to_numeric(r["model_seconds"], errors="coerce")
    timed = pd.to_numeric(r["timed_images"], errors="coerce") if "timed_images" in r.columns else fps * secs
    timed = timed.where(timed.notna(), fps * secs)
    keep = np.isfinite(fps) & (fps > 0) & np.isfinite(secs) & (secs > 0) & (timed > 0)
    r = r[keep].assign(scope=np.where(r.loc[keep, "corruption"] == CLEAN, "clean", "corrupted"), timed=timed[keep])
    if "dtype" not in r.columns:
        r = r.assign(dtype="")
    if "setup_seconds" not in r.columns:
        r = r.assign(setup_seconds=np.nan)
    pipe = pd.to_numeric(r["pipeline_seconds"], errors="coerce") if "pipeline_seconds" in r.columns else np.nan
    r = r.assign(pipeline_seconds=pipe, text_protocol=[text_protocol(p) for p in r.get("params", pd.Series("", index=r.index))])
    agg = (r.groupby(["label", "dataset", "device", "scope"])
           .agg(dtype=("dtype", lambda s: ", ".join(sorted(set(map(str, s))))), units=("miou", "size"),
                timed_images=("timed", "sum"), model_seconds=("model_seconds", "sum"),
                # NaN when any unit has no pipeline timing: a partial sum would overstate the speed
                pipeline_seconds=("pipeline_seconds", lambda s: s.sum(min_count=len(s)) if s.notna().all() else np.nan),
                setup_seconds=("setup_seconds", "max"),
                text_protocol=("text_protocol", lambda s: ", ".join(sorted(set(s)))))
           .reset_index())
    agg["images_per_s"] = agg["timed_images"] / agg["model_seconds"]
    agg["pipeline_images_per_s"] = agg["timed_images"] / agg["pipeline_seconds"]
    agg["s_per_image"] = agg["model_seconds"] / agg["timed_images"]
    # one scope per (label, dataset, device): clean when there is any
    agg["_pref"] = (agg["scope"] != "clean").astype(int)
    agg = agg.sort_values(["label", "dataset", "device", "_pref"]).drop_duplicates(["label", "dataset", "device"])
    ref = agg[agg["label"] == reference].set_index(["dataset", "device", "scope"])
    speedups, pipe_speedups, notes = [], [], []
    for t in agg.itertuples(index=False):
        key = (t.dataset, t.device, t.scope)
        if key in ref.index:
            speedups.append(float(t.images_per_s / ref.loc[key, "images_per_s"]))
            pipe_speedups.append(float(t.pipeline_images_per_s / ref.loc[key, "pipeline_images_per_s"]))
            notes.append("")
        else:
            speedups.append(np.nan)
            pipe_speedups.append(np.nan)
            notes.append(f"no timed {t.scope} unit of {reference!r} on {t.dataset} on {t.device}")
    agg["speedup"] = speedups
    agg["pipeline_speedup"] = pipe_speedups
    agg["speedup_note"] = notes
    return agg[cols].sort_values(["dataset", "device", "label"]).reset_index(drop=True)


def speedup_by_vocabulary(speed: pd.DataFrame, results: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Speed-ups of the non-reference methods per dataset with the reference's prompts per image.

    Columns ``dataset, device, prompts, label, speedup, pipeline_speedup``, sorted by prompts; empty
    when the results do not say how many prompts the reference decoded.
    """
    cols = ["dataset", "device", "prompts", "label", "speedup", "pipeline_speedup"]
    r = ok_rows(results)
    if "prompts_decoded" not in r.columns or speed.empty:
        return pd.DataFrame(columns=cols)
    ref = r[r["label"] == reference]
    prompts = pd.to_numeric(ref["prompts_decoded"], errors="coerce").groupby(ref["dataset"]).mean().dropna()
    s = speed[(speed["label"] != reference) & speed["dataset"].isin(prompts.index) & speed["speedup"].notna()]
    out = s.assign(prompts=s["dataset"].map(prompts))[cols]
    return out.sort_values(["prompts", "dataset", "label"]).reset_index(drop=True)


def text_protocol(params: Any) -> str:
    """"re-encoded per image" when a unit's params (JSON text or dict) set ``reencode_text``, else "cached"."""
    if isinstance(params, str):
        try:
            params = json.loads(params) if params else {}
        except ValueError:
            params = {}
    return "re-encoded per image" if isinstance(params, dict) and params.get("reencode_text") else "cached"


def mixed_device_rows(results: pd.DataFrame) -> pd.DataFrame:
    """Units whose chunks ran on several devices (the harness joins them with "+"): their timings
    mix devices, so the speed table leaves them out."""
    if "device" not in results.columns:
        return results.iloc[0:0]
    return results[results["device"].astype(str).str.contains("+", regex=False)]


# -- ActiveSAM's active set -------------------------------------------------------------------------

ACTIVE_COLUMNS = ("active_size", "active_recall", "prompts_decoded")


def active_set_table(results: pd.DataFrame) -> pd.DataFrame:
    """Mean active-set size, recall and prompts decoded by method, dataset, corruption and severity.

    Methods without active-set columns (all NaN) are left out; means are over seeds (units).
    """
    cols = ["label", "dataset", "corruption", "severity", "units", *ACTIVE_COLUMNS]
    have = [c for c in ACTIVE_COLUMNS if c in results.columns]
    if "active_size" not in have and "active_recall" not in have:
        return pd.DataFrame(columns=cols)
    r = ok_rows(results)
    r = r[r[[c for c in ("active_size", "active_recall") if c in have]].notna().any(axis=1)]
    if r.empty:
        return pd.DataFrame(columns=cols)
    for c in ACTIVE_COLUMNS:
        if c not in r.columns:
            r = r.assign(**{c: np.nan})
    out = (r.groupby(["label", "dataset", "corruption", "severity"])
           .agg(units=("miou", "size"), active_size=("active_size", "mean"),
                active_recall=("active_recall", "mean"), prompts_decoded=("prompts_decoded", "mean"))
           .reset_index())
    out["_clean"] = (out["corruption"] != CLEAN).astype(int)
    out = out.sort_values(["label", "dataset", "_clean", "corruption", "severity"]).drop(columns="_clean")
    return out[cols].reset_index(drop=True)


def active_set_curve(results: pd.DataFrame) -> pd.DataFrame:
    """Per-unit active-set size and recall for plotting (clean repeated under each corruption at
    severity 0). Columns ``label, dataset, corruption, severity, seed, active_size, active_recall``."""
    cols = ["label", "dataset", "corruption", "severity", "seed", "active_size", "active_recall"]
    if "active_size" not in results.columns or "active_recall" not in results.columns:
        return pd.DataFrame(columns=cols)
    r = ok_rows(results)
    r = r[r[["active_size", "active_recall"]].notna().any(axis=1)][cols]
    corr = r[r["corruption"] != CLEAN]
    parts = [corr]
    for dataset in corr["dataset"].unique():
        cl = r[(r["corruption"] == CLEAN) & (r["dataset"] == dataset)]
        for c in sorted(corr.loc[corr["dataset"] == dataset, "corruption"].unique()):
            parts.append(cl.assign(corruption=c, severity=0))
    return pd.concat(parts, ignore_index=True)


# -- per-class drops --------------------------------------------------------------------------------


def class_drops(per_class: pd.DataFrame, results: pd.DataFrame, top_k: int = 5) -> pd.DataFrame:
    """Classes that lose the most IoU under corruption, per dataset and method.

    clean_iou = mean IoU of the class over the method's clean units; corrupted_iou = mean over its
    finished corrupted units (every corruption, severity and seed) where the class has an IoU (NaN =
    zero union is skipped); drop = clean_iou - corrupted_iou. The ``top_k`` largest positive drops per
    (dataset, label) (a class that lost nothing is no "largest drop"). Columns ``dataset, label,
    class_id, class_name, clean_iou, corrupted_iou, drop, units``.
    """
    cols = ["dataset", "label", "class_id", "class_name", "clean_iou", "corrupted_iou", "drop", "units"]
    if per_class.empty or "iou" not in per_class.columns:
        return pd.DataFrame(columns=cols)
    ok_keys = set(ok_rows(results)["unit_key"])
    pc = per_class[per_class["unit_key"].isin(ok_keys)] if "unit_key" in per_class.columns else per_class
    if "class_name" not in pc.columns:
        pc = pc.assign(class_name=pc["class_id"].astype(str))
    keys = ["dataset", "label", "class_id", "class_name"]
    clean = pc[pc["corruption"] == CLEAN].groupby(keys)["iou"].mean().rename("clean_iou")
    corrp = pc[pc["corruption"] != CLEAN].dropna(subset=["iou"])
    corr_g = corrp.groupby(keys)["iou"].agg(corrupted_iou="mean", units="count")
    t = pd.concat([clean, corr_g], axis=1, join="inner").reset_index().dropna(subset=["clean_iou", "corrupted_iou"])
    t["drop"] = t["clean_iou"] - t["corrupted_iou"]
    t = t[t["drop"] > 0]
    t = t.sort_values(["dataset", "label", "drop", "class_id"], ascending=[True, True, False, True])
    return t.groupby(["dataset", "label"], sort=True).head(top_k)[cols].reset_index(drop=True)


# -- failures ---------------------------------------------------------------------------------------


def failures(results: pd.DataFrame) -> pd.DataFrame:
    """Units with status "failed": grid keys, error message and run directory."""
    cols = ["label", "dataset", "corruption", "severity", "seed", "error", "run_dir"]
    f = results[results["status"] == "failed"]
    f = f.assign(**{c: "" for c in cols if c not in f.columns})
    return f[cols].sort_values(cols[:5]).reset_index(drop=True)


def few_image_datasets(results: pd.DataFrame) -> dict[str, int]:
    """Datasets whose finished units hold fewer than ``FEW_IMAGES`` images: dataset -> the most any unit holds."""
    r = ok_rows(results)
    if r.empty or "n_images" not in r.columns:
        return {}
    most = pd.to_numeric(r["n_images"], errors="coerce").groupby(r["dataset"]).max()
    return {str(d): int(n) for d, n in most.items() if pd.notna(n) and n < FEW_IMAGES}


def seed_counts(results: pd.DataFrame) -> set[int]:
    """Numbers of seeds behind the corrupted cells (one entry when every cell has as many)."""
    corr = corrupted_rows(results)
    if corr.empty:
        return set()
    return set(corr.groupby(["label", "dataset", "corruption", "severity"])["seed"].nunique().astype(int))


def labels_of(frames: Iterable[pd.DataFrame]) -> list[str]:
    """Sorted method labels found in any of the frames (the colour order of every figure)."""
    labels: set[str] = set()
    for f in frames:
        if "label" in f.columns:
            labels.update(map(str, f["label"].dropna().unique()))
    return sorted(labels)
