"""The ActiveSAM paper's published numbers (arXiv 2606.16996, Tables 1-3), shipped as package data.

``published.json`` holds the numbers as printed (mIoU in percent, FPS in images/s) with their source;
``load_published`` converts mIoU to fractions. Only numbers found in a source are in the file; a
method/dataset pair that is not there has no published number and shows an empty cell.

Protocol matching (DESIGN §6): a measured unit is set beside a published number only when it is a
finished unit of the same method (the label that runs that method with its default name, see
``published_labels``), dataset, corruption and severity, evaluated on the full split (``limit`` 0).
Table 1 gives clean mIoU, Table 2 the severity-5 corruptions, Table 3 FPS (RTX 5090).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd

from . import tables

ENTRY_COLUMNS = ["table", "method", "dataset", "corruption", "severity", "metric", "value"]


@dataclass(frozen=True)
class Published:
    """The published numbers: ``entries`` (per dataset) and ``means`` (the papers' average columns)."""

    source: dict[str, Any]
    tables: dict[str, Any]
    methods: dict[str, str]
    entries: pd.DataFrame
    means: pd.DataFrame
    notes: dict[str, str] = field(default_factory=dict)


def load_published(text: str | None = None) -> Published:
    """Read ``published.json`` from the package (or ``text``); mIoU becomes a fraction."""
    if text is None:
        text = resources.files("robustbench_ovss.report").joinpath("published.json").read_text(encoding="utf-8")
    doc = json.loads(text)
    entries = pd.DataFrame(doc["entries"], columns=ENTRY_COLUMNS)
    means = pd.DataFrame(doc.get("means", []))
    for df in (entries, means):
        if not df.empty:
            df["value"] = np.where(df["metric"] == "miou", df["value"] / 100.0, df["value"])
    return Published(doc["source"], doc["tables"], doc.get("methods", {}), entries, means,
                     {"not_transcribed": doc.get("not_transcribed", "")})


def precision(pub: Published, table: str, metric: str) -> int:
    """Decimals the paper printed for ``metric`` in ``table`` (mIoU as percent)."""
    p = pub.tables.get(table, {}).get("precision", {})
    return int(p.get(metric, 2)) if isinstance(p, dict) else int(p)


def published_labels(results: pd.DataFrame, pub: Published) -> dict[str, str]:
    """label -> published method for the labels that stand for a published row.

    A method run under one label stands for its row; a method listed several times (ablations)
    is matched only through the label equal to its name, the default entry.
    """
    out: dict[str, str] = {}
    if "method" not in results.columns:
        return out
    for method in pub.methods:
        labels = sorted(set(results.loc[results["method"] == method, "label"]))
        if len(labels) == 1:
            out[labels[0]] = method
        elif method in labels:
            out[method] = method
    return out


def full_split_rows(results: pd.DataFrame) -> pd.DataFrame:
    """Finished units evaluated on the whole split (``limit`` 0 or absent)."""
    r = tables.ok_rows(results)
    if "limit" in r.columns:
        lim = pd.to_numeric(r["limit"], errors="coerce").fillna(0)
        r = r[lim <= 0]
    return r


def accuracy_comparison(results: pd.DataFrame, pub: Published) -> pd.DataFrame:
    """Measured mIoU beside the published one wherever the protocol matches.

    Clean units are compared with Table 1, severity-5 units of Table 2's corruptions with Table 2.
    Measured values are means over seeds (with the sample std). Columns ``table, label, method,
    dataset, corruption, severity, measured, measured_std, n_seeds, published, delta``.
    """
    cols = ["table", "label", "method", "dataset", "corruption", "severity", "measured", "measured_std",
            "n_seeds", "published", "delta"]
    labels = published_labels(results, pub)
    r = full_split_rows(results)
    r = r[r["label"].isin(list(labels))]
    if r.empty:
        return pd.DataFrame(columns=cols)
    per_seed = r.groupby(["label", "dataset", "corruption", "severity", "seed"])["miou"].mean().reset_index()
    m = (per_seed.groupby(["label", "dataset", "corruption", "severity"])["miou"]
         .agg(measured="mean", measured_std="std", n_seeds="count").reset_index())
    m["method"] = m["label"].map(labels)
    e = pub.entries[(pub.entries["metric"] == "miou")]
    e = e[((e["table"] == "table1") & (e["corruption"] == tables.CLEAN))
          | ((e["table"] == "table2") & (e["corruption"] != tables.CLEAN))]
    e = e.rename(columns={"value": "published"})[["table", "method", "dataset", "corruption", "severity", "published"]]
    out = m.merge(e, on=["method", "dataset", "corruption", "severity"], how="inner")
    out["delta"] = out["measured"] - out["published"]
    out = out.sort_values(["table", "dataset", "corruption", "label"]).reset_index(drop=True)
    return out[cols]


def mean_comparison(results: pd.DataFrame, pub: Published) -> pd.DataFrame:
    """The paper's average columns beside the same average of measured values, when every dataset
    of the average was measured (full split) for that method and condition.

    Columns ``table, label, method, corruption, severity, datasets, measured, published``.
    """
    cols = ["table", "label", "method", "corruption", "severity", "datasets", "measured", "published"]
    acc = accuracy_comparison(results, pub)
    rows = []
    if acc.empty or pub.means.empty:
        return pd.DataFrame(columns=cols)
    for t in pub.means[pub.means["metric"] == "miou"].itertuples(index=False):
        if t.table == "table3" or (t.table == "table2" and t.corruption == tables.CLEAN):
            continue  # same clean numbers as Table 1 at other precision / over other datasets
        sel = acc[(acc["table"] == t.table) & (acc["method"] == t.method) & (acc["corruption"] == t.corruption)
                  & (acc["severity"] == t.severity) & (acc["dataset"].isin(t.datasets))]
        for label, g in sel.groupby("label"):
            if set(g["dataset"]) == set(t.datasets):
                rows.append((t.table, label, t.method, t.corruption, t.severity, len(t.datasets),
                             float(g["measured"].mean()), float(t.value)))
    return pd.DataFrame(rows, columns=cols)


def speed_comparison(speed: pd.DataFrame, results: pd.DataFrame, pub: Published, reference: str) -> pd.DataFrame:
    """Measured images/s (clean units, full split) beside Table 3's FPS, with both speed-ups.

    ``published_speedup`` is the ratio of the paper's FPS of the method and of the method the
    reference label stands for, on the same dataset. Columns ``label, method, dataset, device,
    images_per_s, pipeline_images_per_s, text_protocol, published_fps, speedup, pipeline_speedup,
    published_speedup``.
    """
    cols = ["label", "method", "dataset", "device", "images_per_s", "pipeline_images_per_s", "text_protocol",
            "published_fps", "speedup", "pipeline_speedup", "published_speedup"]
    labels = published_labels(results, pub)
    full = full_split_rows(results)
    full_clean = set(map(tuple, full.loc[full["corruption"] == tables.CLEAN, ["label", "dataset"]].itertuples(index=False)))
    s = speed[(speed["scope"] == "clean") & speed["label"].isin(list(labels))]
    s = s[[(lab, d) in full_clean for lab, d in zip(s["label"], s["dataset"])]]
    if s.empty:
        return pd.DataFrame(columns=cols)
    fps = pub.entries[(pub.entries["table"] == "table3") & (pub.entries["metric"] == "fps")]
    fps_map = {(m, d): v for m, d, v in zip(fps["method"], fps["dataset"], fps["value"])}
    ref_method = labels.get(reference)
    rows = []
    for t in s.itertuples(index=False):
        method = labels[t.label]
        pf = fps_map.get((method, t.dataset))
        if pf is None:
            continue
        rf = fps_map.get((ref_method, t.dataset)) if ref_method else None
        rows.append((t.label, method, t.dataset, t.device, t.images_per_s, t.pipeline_images_per_s, t.text_protocol,
                     pf, t.speedup, t.pipeline_speedup, pf / rf if rf else np.nan))
    return pd.DataFrame(rows, columns=cols)
