"""The sections of report.md, each a function from computed tables to a markdown string."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from . import tables
from .loading import RunData
from .published import Published, precision
from .render import NA, bullet_list, escape, md_table, mean_std_pct, num, pct, relpath, sig

GALLERY_DIRS = ("samples", "preds")
GALLERY_PER_ROW = 4  # thumbnails per condition / unit
GALLERY_MAX_ROWS = 80  # conditions / units shown per folder
GALLERY_WIDTH = 160  # thumbnail width in pixels

SAM3_NOTE = ("`sam3` is vanilla SAM 3 over the full vocabulary with instance outputs only, as ovss-bench defines "
             "it: the ActiveSAM release ships no code for its SAM 3 row, so this row is our definition.")


def _uniq(series: pd.Series | None) -> str:
    if series is None:
        return ""
    vals = sorted({str(v) for v in series.dropna() if str(v) != ""})
    return ", ".join(vals)


def _compact(value: Any, limit: int = 300) -> str:
    if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
        text = "; ".join(f"{k} ({_compact(v, limit)})" for k, v in value.items())
    elif isinstance(value, dict):
        text = ", ".join(f"{k}={_compact(v, limit)}" for k, v in value.items())
    elif isinstance(value, (list, tuple)):
        text = ", ".join(_compact(v, limit) for v in value)
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- provenance -------------------------------------------------------------------------------------


def provenance(data: RunData, reference: str) -> str:
    """Per run directory: config, hashes, versions, device, checkpoint, dataset roots, seeds, limit."""
    parts = ["## Provenance", ""]
    res = data.results
    for run in data.dirs:
        key = str(run)
        r = res[res["run_dir"] == key]
        cfg = data.configs.get(key, {})
        man = data.manifests.get(key, {})
        rows: list[tuple[str, str]] = []
        rows.append(("config", f"{cfg.get('name', '')} ({run / 'config.toml'})" if cfg else "no config.toml"))
        rows.append(("config hash", _uniq(r.get("config_hash"))))
        rows.append(("git sha", str(man.get("git_sha", "")) or _uniq(r.get("git_sha"))))
        versions = man.get("versions")
        rows.append(("versions", _compact(versions) if versions else _uniq(r.get("versions"))))
        rows.append(("device", _uniq(r.get("device")) or str(man.get("device", ""))))
        rows.append(("dtype", _uniq(r.get("dtype"))))
        rows.append(("backend / checkpoint", f"{_uniq(r.get('backend'))} / {_uniq(r.get('checkpoint'))}"))
        roots = man.get("datasets") or man.get("dataset_roots")
        if roots:
            rows.append(("datasets (root, fingerprint)", _compact(roots, 600)))
        seeds_cfg = cfg.get("run", {}).get("seeds")
        seeds_seen = sorted({int(s) for s in r.loc[r["corruption"] != tables.CLEAN, "seed"]})
        rows.append(("seeds", f"config {seeds_cfg if seeds_cfg is not None else '?'}; corrupted units seen {seeds_seen}; clean units once (seed 0)"))
        limits = sorted({int(x) for x in pd.to_numeric(r.get("limit", pd.Series(dtype=float)), errors="coerce").dropna()})
        lim = [x for x in limits if x > 0]
        rows.append(("--limit", f"{', '.join(map(str, lim))} images per dataset (a subset of each split)" if lim else "none (whole splits)"))
        if "started_at" in r.columns and "finished_at" in r.columns and len(r):
            rows.append(("time span", f"{r['started_at'].dropna().astype(str).min()} - {r['finished_at'].dropna().astype(str).max()}"))
        rows.append(("units", ", ".join(f"{k}: {v}" for k, v in r["status"].value_counts().sort_index().items())))
        shown = {"git_sha", "versions", "device", "datasets", "dataset_roots", "config_hash", "dtype"}
        for k, v in man.items():
            if k not in shown:
                rows.append((f"manifest: {k}", _compact(v)))
        parts += [f"### {escape(run)}", "", md_table(pd.DataFrame(rows, columns=["field", "value"])), ""]
    parts.append(f"Reference method for CE and speed-ups (config `[report] reference`): `{reference}`.")
    if "sam3" in set(res.get("method", pd.Series(dtype=str))):
        parts += ["", SAM3_NOTE]
    return "\n".join(parts) + "\n"


# -- accuracy and robustness ------------------------------------------------------------------------


def robustness(summary: pd.DataFrame, na: pd.DataFrame, coverage: pd.DataFrame, results: pd.DataFrame,
               reference: str) -> str:
    """Per dataset: methods x {clean, per corruption, mPC, rPC, mCE} and CE per corruption."""
    parts = ["## Accuracy and robustness", "",
             "mIoU in %. A corruption's column is the mean over its severities; mPC = mean over every "
             "(corruption, severity) cell; rPC = mPC / clean mIoU; CE_c = sum_s (1 - mIoU) / sum_s (1 - mIoU_ref) "
             f"against `{reference}` at the same seed, mCE = mean over corruptions (DESIGN §9). "
             + ("One seed, so no spread is shown; " if tables.seed_counts(results) <= {1} else
                "`a ± b` = mean ± sample std over seeds; ")
             + "the clean unit is evaluated once. "
             f"rPC is n/a where the clean mIoU is below {100 * tables.MIN_CLEAN_MIOU_FOR_RPC:g}%.", ""]
    datasets = sorted(set(tables.ok_rows(results)["dataset"]))
    few = tables.few_image_datasets(results)
    if not datasets:
        return "\n".join(parts + ["No finished unit to report.", ""]) + "\n"
    for ds in datasets:
        s = summary[summary["dataset"] == ds]
        corrs = tables.corruptions_of(results, ds)
        sev = sorted(set(tables.corrupted_rows(results).query("dataset == @ds")["severity"]))
        labels = sorted(set(tables.ok_rows(results).query("dataset == @ds")["label"]))
        cov = coverage[coverage["dataset"] == ds].set_index("label")

        def cell(label: str, metric: str) -> str:
            row = s[(s["label"] == label) & (s["metric"] == metric)]
            if row.empty:
                return NA
            r = row.iloc[0]
            return mean_std_pct(r["mean"], r["std"], int(r["n_seeds"]))

        rows, ce_rows, foot = [], [], []
        for lab in labels:
            dagger = ""
            if lab in cov.index and cov.loc[lab, "cells"] < cov.loc[lab, "total"]:
                dagger = "†"
                foot.append(f"† {lab}: mPC/rPC/mCE over {cov.loc[lab, 'cells']} of {cov.loc[lab, 'total']} "
                            "corrupted cells (the rest did not finish)")
            row = [lab, cell(lab, "clean"), *[cell(lab, f"miou:{c}") for c in corrs]]
            if corrs:
                row += [cell(lab, m) + dagger for m in ("mpc", "rpc", "mce")]
            rows.append(row)
            ce_rows.append([lab, *[cell(lab, f"ce:{c}") for c in corrs], cell(lab, "mce")])
        header = ["method", "clean mIoU", *corrs, *(["mPC", "rPC", "mCE"] if corrs else [])]
        parts += [f"### {ds}", ""]
        if ds in few:
            parts += [f"**{few[ds]} image(s) per unit**: these numbers describe {few[ds]} image(s), not the "
                      "dataset; differences between methods and conditions are anecdotes.", ""]
        parts += [f"Severities: {', '.join(map(str, sev))}." if sev else "Clean units only.", "",
                  md_table(pd.DataFrame(rows, columns=header), align_right=header[1:]), ""]
        if corrs:
            parts += [f"Corruption error per corruption on {ds} (CE in %, reference `{reference}` = 100):", "",
                      md_table(pd.DataFrame(ce_rows, columns=["method", *corrs, "mCE"]), align_right=[*corrs, "mCE"]), ""]
        reasons = na[na["dataset"] == ds]
        if not reasons.empty:
            lines = sorted({f"{'rPC' if r.metric == 'rpc' else 'CE'} n/a for {r.label}: {r.reason}"
                            for r in reasons.itertuples(index=False)})
            parts += [bullet_list(lines), ""]
        if foot:
            parts += [bullet_list(foot), ""]
    return "\n".join(parts) + "\n"


def bootstrap(ci: pd.DataFrame) -> str:
    """Bootstrap 95% intervals of the mean per-image mIoU of clean units."""
    parts = ["## Clean mIoU per image: bootstrap confidence intervals", ""]
    if ci.empty:
        return "\n".join(parts + ["No per-image rows of clean units (per_image.csv absent or empty).", ""]) + "\n"
    parts += [f"Mean over images of the per-image mIoU (classes present in the image), with a "
              f"{int(tables.BOOTSTRAP_LEVEL * 100)}% percentile bootstrap interval: {tables.BOOTSTRAP_RESAMPLES} "
              f"resamples of the images with replacement, numpy `default_rng({tables.BOOTSTRAP_SEED})` per "
              "method and dataset. This mean differs from the dataset mIoU above, which sums confusion "
              "matrices over images first.", ""]
    rows = [[r.dataset, r.label, r.n_images, pct(r.mean),
             f"[{pct(r.ci_low)}, {pct(r.ci_high)}]" if pd.notna(r.ci_low) else f"{NA} ({r.note})"]
            for r in ci.sort_values(["dataset", "label"]).itertuples(index=False)]
    hdr = ["dataset", "method", "images", "mean per-image mIoU (%)", "95% CI (%)"]
    return "\n".join(parts + [md_table(pd.DataFrame(rows, columns=hdr), align_right=hdr[2:]), ""]) + "\n"


# -- speed ------------------------------------------------------------------------------------------


def speed(sp: pd.DataFrame, reference: str, mixed: pd.DataFrame | None = None,
          by_vocab: pd.DataFrame | None = None) -> str:
    """Throughput table per dataset and device; never a number mixing devices."""
    parts = ["## Speed", ""]
    if mixed is not None and not mixed.empty:
        units = sorted({f"{r.label} {r.dataset} {r.corruption} s{r.severity} seed {r.seed} ({r.device})"
                        for r in mixed.itertuples(index=False)})
        parts += ["Left out of this table: units whose images were timed on several devices:", "", bullet_list(units), ""]
    if sp.empty:
        return "\n".join(parts + ["No unit with timed images (fps and model_seconds) to report.", ""]) + "\n"
    parts += ["images/s (model) = timed images / seconds inside `predict` (device synchronised; every image timed "
              "after untimed warm-up calls on each dataset's first image; the methods take turns going first), summed "
              "over a method's units on one dataset and one device; clean units when the method has any (scope). "
              "Pipeline images/s, in the spirit of the ActiveSAM paper's Table 3, charges each image's loading and "
              "corruption (shared by the methods, charged in full to each as if it ran alone), `predict` and the "
              "metric update; the reference code's second read of the image file inside the model is not emulated. "
              f"Speed-up = images/s / images/s of `{reference}` on the same dataset, device and scope. Text: prompts "
              "encoded once per vocabulary (cached, setup time) or again on every image (`reencode_text`, as the "
              "SegEarth-OV-3 release). Rows of different devices are never combined.", ""]
    rows, notes = [], []
    for r in sp.itertuples(index=False):
        su = f"{r.speedup:.2f}×" if pd.notna(r.speedup) else NA
        psu = f"{r.pipeline_speedup:.2f}×" if pd.notna(r.pipeline_speedup) else NA
        if pd.isna(r.speedup):
            notes.append(f"speed-up n/a for {r.label} on {r.dataset} ({r.device}): {r.speedup_note}")
        rows.append([r.dataset, r.device, r.label, r.dtype, r.scope, r.units, sig(r.images_per_s),
                     sig(r.s_per_image), sig(r.pipeline_images_per_s), sig(r.setup_seconds), r.text_protocol, su, psu])
    hdr = ["dataset", "device", "method", "dtype", "scope", "units", "images/s (model)", "model s/image",
           "pipeline images/s", "setup s (once per dataset)", "text", f"speed-up vs {reference}", "pipeline speed-up"]
    parts += [md_table(pd.DataFrame(rows, columns=hdr), align_right=hdr[5:]), ""]
    if notes:
        parts += [bullet_list(sorted(set(notes))), ""]
    if by_vocab is not None and len(by_vocab) > 1:
        rows = [[r.dataset, r.device, int(r.prompts), r.label, f"{r.speedup:.2f}×", f"{r.pipeline_speedup:.2f}×"]
                for r in by_vocab.itertuples(index=False)]
        hdr = ["dataset", "device", "prompts (vocabulary)", "method", f"speed-up vs {reference}", "pipeline speed-up"]
        parts += ["### Speed-up by vocabulary size", "",
                  f"The speed-ups above by the number of prompts `{reference}` decodes per image (the vocabulary), "
                  "smallest first.", "", md_table(pd.DataFrame(rows, columns=hdr), align_right=hdr[2:]), ""]
    return "\n".join(parts) + "\n"


# -- synthetic vs real shift ------------------------------------------------------------------------


def shift(pairs: pd.DataFrame, rho: float, n: int, min_pairs: int) -> str:
    """Real-condition drops beside the synthetic corruptions that imitate them, and their rank correlation."""
    if pairs.empty:
        return ""
    parts = ["## Synthetic vs real shift", "",
             "Drop = clean mIoU of the counterpart dataset minus mIoU under the shift (points). Real: the "
             "real-condition set's own images; synthetic: the counterpart corrupted by the corruptions meant to "
             "imitate that condition (mean over severities, seeds and, where two, corruptions).", ""]
    rows = [[r.label, r.condition, f"{r.dataset} vs {r.clean_dataset} + {r.corruptions}", pct(r.clean_miou),
             pct(r.real_miou), f"{100 * r.real_drop:.2f}", pct(r.synthetic_miou), f"{100 * r.synthetic_drop:.2f}"]
            for r in pairs.itertuples(index=False)]
    hdr = ["method", "condition", "pair", "clean mIoU", "real mIoU", "real drop", "synthetic mIoU", "synthetic drop"]
    parts += [md_table(pd.DataFrame(rows, columns=hdr), align_right=hdr[3:]), ""]
    if n < min_pairs:
        parts += [f"Spearman rank correlation of synthetic vs real drops: not computed, {n} (method, condition) "
                  f"pair(s) (at least {min_pairs} are needed for a number that means anything).", ""]
    elif rho != rho:  # NaN: a constant series
        parts += [f"Spearman rank correlation of synthetic vs real drops over {n} pairs: not defined, the real or the "
                  "synthetic drops are all equal.", ""]
    else:
        parts += [f"Spearman rank correlation of synthetic vs real drops over {n} pooled (method, condition) pairs: "
                  f"**{rho:.3f}**.", ""]
    return "\n".join(parts) + "\n"


# -- active set -------------------------------------------------------------------------------------


def active(act: pd.DataFrame) -> str:
    """Active-set size, recall and prompts decoded by corruption and severity."""
    parts = ["## ActiveSAM active set", ""]
    if not act.empty:
        parts += ["Every method that reports active-set statistics (ActiveSAM's preview) is listed.", ""]
    if act.empty:
        return "\n".join(parts + ["No method reported active-set statistics (active_size / active_recall) in this run.", ""]) + "\n"
    parts += ["Means over images (per unit) and then over seeds. Recall = share of the label's classes kept by the "
              "preview, in %. Severity 0 = clean.", ""]
    for lab, g in act.groupby("label", sort=True):
        rows = [[r.dataset, r.corruption, r.severity, r.units, num(r.active_size, 2), pct(r.active_recall),
                 num(r.prompts_decoded, 2)] for r in g.itertuples(index=False)]
        hdr = ["dataset", "corruption", "severity", "units", "active-set size", "recall (%)", "prompts decoded"]
        parts += [f"### {lab}", "", md_table(pd.DataFrame(rows, columns=hdr), align_right=hdr[2:]), ""]
    return "\n".join(parts) + "\n"


# -- per-class drops --------------------------------------------------------------------------------


def class_drops(drops: pd.DataFrame, top_k: int) -> str:
    """Classes that lose the most IoU under corruption, per dataset and method."""
    parts = ["## Largest per-class IoU drops under corruption", ""]
    if drops.empty:
        return "\n".join(parts + ["No per-class rows with both clean and corrupted IoU (per_class.csv).", ""]) + "\n"
    parts += [f"Top {top_k} per dataset and method: clean IoU vs the mean IoU over every finished corrupted unit "
              "(all corruptions, severities, seeds) where the class has an IoU; drop in points.", ""]
    for (ds, lab), g in drops.groupby(["dataset", "label"], sort=True):
        rows = [[r.class_name, pct(r.clean_iou), pct(r.corrupted_iou), pct(r.drop), r.units] for r in g.itertuples(index=False)]
        hdr = ["class", "clean IoU (%)", "corrupted IoU (%)", "drop (pts)", "units"]
        parts += [f"### {ds} / {lab}", "", md_table(pd.DataFrame(rows, columns=hdr), align_right=hdr[1:]), ""]
    return "\n".join(parts) + "\n"


# -- published --------------------------------------------------------------------------------------


def published(acc: pd.DataFrame, means: pd.DataFrame, spd: pd.DataFrame, pub: Published, results: pd.DataFrame) -> str:
    """Measured numbers beside the ActiveSAM paper's where the protocol matches."""
    src = pub.source
    parts = ["## Published numbers (ActiveSAM paper)", "",
             f"Source: arXiv {src.get('arxiv')}, {escape(src.get('transcribed_from', ''))} "
             f"Hardware of the paper: {escape(src.get('hardware', ''))}; checkpoint {escape(src.get('checkpoint', ''))}. "
             "Only finished full-split units of the built-in methods (default label) are compared; "
             "an empty published cell means the paper has no number there.", ""]
    large = sorted({"ade847", "pc459"} & set(results.get("dataset", pd.Series(dtype=str)).astype(str)))
    if large:
        parts += [f"No published numbers are shown for {', '.join(large)}: the ActiveSAM paper reports none, and SAM 3's "
                  "own semantic-segmentation results on these sets could not be confirmed in a primary source "
                  "(a secondary source's ADE-847 figure is left out).", ""]
    if acc.empty and spd.empty:
        limits = pd.to_numeric(tables.ok_rows(results).get("limit", pd.Series(dtype=float)), errors="coerce")
        why = " (this run used --limit, so no unit covers a whole split)" if (limits > 0).any() else ""
        parts += [f"No unit of this run matches a published protocol{why}: Table 1 = clean mIoU on voc21, context60, "
                  "coco_object, voc20, context59, coco_stuff, cityscapes, ade20k; Table 2 = gaussian_noise, motion_blur, "
                  "jpeg_compression, fog at severity 5 on voc20, voc21, cityscapes, ade20k, context60, coco_stuff; "
                  "Table 3 = FPS on ade20k, context59, context60, coco_object, coco_stuff.", ""]
        return "\n".join(parts) + "\n"
    ck = _uniq(results.get("checkpoint"))
    parts += [f"This run's checkpoint(s): {escape(ck)}. Measured values are means over seeds; the paper's corruption runs are unseeded.", ""]
    for table, title in (("table1", "Table 1: clean mIoU (%)"), ("table2", "Table 2: mIoU (%) at severity 5")):
        t = acc[acc["table"] == table]
        if t.empty:
            continue
        nd = precision(pub, table, "miou")
        rows = [[r.dataset, r.corruption, r.label, mean_std_pct(r.measured, r.measured_std, int(r.n_seeds)),
                 pct(r.published, nd), f"{100 * r.delta:+.{nd}f}"] for r in t.itertuples(index=False)]
        hdr = ["dataset", "corruption", "method", "measured", "published", "Δ (pts)"]
        if table == "table1":
            rows = [r[:1] + r[2:] for r in rows]
            hdr = hdr[:1] + hdr[2:]
        parts += [f"### {title}", "", md_table(pd.DataFrame(rows, columns=hdr), align_right=hdr[3:]), ""]
    if not means.empty:
        rows = [[r.table, r.corruption, r.label, r.datasets, pct(r.measured), pct(r.published, precision(pub, r.table, "miou"))]
                for r in means.itertuples(index=False)]
        hdr = ["table", "corruption", "method", "datasets", "measured mean", "published mean"]
        parts += ["### Averages over the paper's datasets (mIoU %)", "", md_table(pd.DataFrame(rows, columns=hdr), align_right=hdr[3:]), ""]
    if not spd.empty:
        rows = [[r.dataset, r.label, r.device, sig(r.images_per_s), sig(r.pipeline_images_per_s),
                 f"model-only predict, text {r.text_protocol}; pipeline: + loading, corruption, metric",
                 num(r.published_fps, precision(pub, "table3", "fps")),
                 f"{r.speedup:.2f}×" if pd.notna(r.speedup) else NA,
                 f"{r.pipeline_speedup:.2f}×" if pd.notna(r.pipeline_speedup) else NA,
                 f"{r.published_speedup:.2f}×" if pd.notna(r.published_speedup) else ""] for r in spd.itertuples(index=False)]
        hdr = ["dataset", "method", "measured on", "images/s (model)", "pipeline images/s", "protocol (measured)",
               "published FPS (RTX 5090; whole test loop)", "speed-up (model)", "speed-up (pipeline)", "published speed-up"]
        parts += ["### Table 3: speed", "",
                  "Absolute throughput depends on the device: compare the speed-ups (same device, same run), not images/s. "
                  "The protocols differ: the published FPS is images / wall time of the reference code's whole test "
                  "loop (loading, a second read of the image file inside the model, metric), and the SegEarth-OV-3 "
                  "release re-encodes every prompt's text on every image; the measured numbers are as the `protocol` "
                  "column says. A cached vocabulary takes the text encoder out of SegEarth-OV3's per-image time, which "
                  "is why the measured ActiveSAM speed-up comes out below the published one.", "",
                  md_table(pd.DataFrame(rows, columns=hdr), align_right=hdr[3:]), ""]
    return "\n".join(parts) + "\n"


# -- failures, missing, figures, gallery ------------------------------------------------------------


def failures(fail: pd.DataFrame) -> str:
    """Units that failed, with their error."""
    parts = ["## Failures", ""]
    if fail.empty:
        return "\n".join(parts + ["No unit failed.", ""]) + "\n"
    rows = fail[["label", "dataset", "corruption", "severity", "seed", "error", "run_dir"]].rename(columns={"label": "method"})
    return "\n".join(parts + [f"{len(fail)} unit(s) failed; their cells are left out of every table above.", "",
                              md_table(rows), ""]) + "\n"


def missing(miss: pd.DataFrame, notes: Sequence[str]) -> str:
    """Planned units without a result (a partial run): what is finished is reported above."""
    parts = ["## Missing units", ""]
    if miss.empty:
        parts.append("None: every planned unit has a result." if not notes else "None found in results.csv.")
    else:
        parts += [f"{len(miss)} planned unit(s) have no result yet (partial run; rerun the same `ovss-bench run` "
                  "command to resume). Everything finished is reported above.", "",
                  md_table(miss.rename(columns={"label": "method"}))]
    if notes:
        parts += ["", bullet_list(list(notes))]
    return "\n".join(parts + [""]) + "\n"


def figures(paths: dict[str, list[Path]], out_dir: Path) -> str:
    """Embedded PNG figures."""
    titles = {"miou_vs_severity": "mIoU vs severity", "rpc_heatmap": "rPC heat map",
              "speed_accuracy": "Speed vs accuracy", "active_set": "Active-set size and recall vs severity",
              "shift": "Synthetic vs real shift"}
    parts = ["## Figures", ""]
    if not paths:
        return "\n".join(parts + ["Not drawn (text-only report).", ""]) + "\n"
    for key, title in titles.items():
        ps = paths.get(key, [])
        if not ps:
            parts += [f"- {title}: nothing to plot in this run.", ""]
            continue
        for p in ps:
            parts += [f"### {title}" + (f" ({p.stem.split('_')[-1]})" if len(ps) > 1 else ""), "",
                      f"![{title}]({relpath(p, out_dir)})", ""]
    return "\n".join(parts) + "\n"


def gallery(run_dirs: Sequence[Path], out_dir: Path, results: pd.DataFrame | None = None) -> str:
    """Thumbnails of the PNGs the runner saved with ``--save-preds K``, if any.

    ``samples/<dataset>/<corruption>-s<severity>-seed<seed>/*.png`` (corrupted inputs, one row per
    condition: the gallery per severity) and ``preds/<unit_key>/*.overlay.png`` (image | prediction |
    ground truth, one row per unit, named from results.csv; the raw label maps beside them are for
    tools, shown only where a run has no overlays). Other layouts are grouped by folder.
    """
    parts = ["## Gallery", ""]
    units: dict[str, str] = {}
    if results is not None and "unit_key" in results.columns:
        units = {r.unit_key: f"{r.label} / {r.dataset} / {r.corruption} s{r.severity} seed {r.seed}"
                 for r in results.itertuples(index=False)}
    found = False
    for run in run_dirs:
        for name in GALLERY_DIRS:
            folder = run / name
            pngs = sorted(folder.rglob("*.png")) if folder.is_dir() else []
            overlays = [p for p in pngs if p.name.endswith(".overlay.png")]
            if name == "preds" and overlays:
                pngs = overlays
            if not pngs:
                continue
            found = True
            groups: dict[str, list[Path]] = {}
            for p in pngs:
                groups.setdefault(p.parent.relative_to(folder).as_posix(), []).append(p)
            rows = []
            for group, files in sorted(groups.items()):
                what = units.get(group, group) if name == "preds" else group
                width = 3 * GALLERY_WIDTH if f"{files[0].name}".endswith(".overlay.png") else GALLERY_WIDTH
                cells = " ".join(f'<img src="{relpath(f, out_dir)}" width="{width}" alt="{escape(f.stem)}">'
                                 for f in files[:GALLERY_PER_ROW])
                more = f" (+{len(files) - GALLERY_PER_ROW} more)" if len(files) > GALLERY_PER_ROW else ""
                rows.append([what, cells + more])
            rows.sort(key=lambda r: r[0])
            title = "corrupted inputs per condition" if name == "samples" else "predictions per unit"
            hdr = ["condition" if name == "samples" else "unit", "images"]
            shown = rows[:GALLERY_MAX_ROWS]
            parts += [f"### {escape(folder)}: {title}", "", md_table(pd.DataFrame(shown, columns=hdr)), ""]
            if len(rows) > GALLERY_MAX_ROWS:
                parts += [f"{len(rows) - GALLERY_MAX_ROWS} more folder(s) in {escape(folder)}.", ""]
    if not found:
        parts.append("Skipped: no `samples/` or `preds/` PNGs in the run directory (run with `--save-preds K` to save them).")
    return "\n".join(parts + [""]) + "\n"


def notes(items: Sequence[str]) -> str:
    """Notes on how the inputs were read (re-collection, merges, duplicates, fallbacks)."""
    if not items:
        return ""
    return "\n".join(["## Notes on the inputs", "", bullet_list(list(items)), ""]) + "\n"

