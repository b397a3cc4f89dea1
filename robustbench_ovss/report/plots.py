"""Figures of the report (seaborn on matplotlib's Agg backend, PNG).

Every function takes a tidy table from :mod:`.tables` and the report's method palette, writes PNG
file(s) and returns their paths (empty when there is nothing to plot). Colours are keyed by method
label (``method_palette``), so a method has one colour in every figure of a report.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # the report is a batch job; never open a window

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from ..files import atomic_write_bytes  # noqa: E402
from .tables import MIN_CLEAN_MIOU_FOR_RPC  # noqa: E402

DPI = 110
#: Facets per figure above which the mIoU-vs-severity grid is split into one figure per dataset.
MAX_FACETS = 40


def method_palette(labels: list[str]) -> dict[str, tuple[float, float, float]]:
    """A fixed colour per method label: the sorted labels take the colour-blind palette in order."""
    labels = sorted(labels)
    colors = sns.color_palette("colorblind", len(labels)) if len(labels) <= 10 else sns.color_palette("husl", len(labels))
    return {lab: tuple(c) for lab, c in zip(labels, colors)}  # type: ignore[misc]


def _save(fig: plt.Figure, path: Path) -> Path:
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    finally:
        plt.close(fig)
    atomic_write_bytes(path, buf.getvalue(), durable=False)  # a reader never sees half a figure
    return path


def _labels_in(df: pd.DataFrame, palette: dict) -> list[str]:
    col = "method" if "method" in df.columns else "label"
    return [lab for lab in palette if lab in set(df[col])]


def _by_method(df: pd.DataFrame) -> pd.DataFrame:
    """The table with ``label`` shown as "method" (the legend title readers expect)."""
    return df.drop(columns=[c for c in ("method",) if c in df.columns]).rename(columns={"label": "method"})


def seeds_phrase(curve: pd.DataFrame) -> str:
    """How a figure's points aggregate seeds: "one seed" when every point has a single one."""
    if "seed" not in curve.columns or curve.empty:
        return "one seed"
    per_point = curve.groupby([c for c in ("label", "dataset", "corruption", "severity") if c in curve.columns])["seed"].nunique()
    return "one seed" if int(per_point.max()) <= 1 else "mean ± std over seeds"


def miou_vs_severity(curve: pd.DataFrame, palette: dict, out_dir: Path) -> list[Path]:
    """Line plot of mIoU (%) against severity (0 = clean) per method, faceted corruption x dataset.

    Points are means over seeds, bands the standard deviation over seeds (the title says "one seed"
    when there is one).
    """
    if curve.empty:
        return []
    d = _by_method(curve).assign(**{"mIoU (%)": curve["miou"].to_numpy() * 100})
    datasets = sorted(d["dataset"].unique())
    n_corr = d["corruption"].nunique()
    groups = [(datasets, "miou_vs_severity.png")] if len(datasets) * n_corr <= MAX_FACETS else [
        ([ds], f"miou_vs_severity_{ds}.png") for ds in datasets]
    paths = []
    for dsets, name in groups:
        sub = d[d["dataset"].isin(dsets)]
        hue_order = _labels_in(sub, palette)
        corr_order = sorted(sub["corruption"].unique())
        kw = dict(row="dataset", row_order=dsets) if len(dsets) > 1 else {}
        wrap = {} if len(dsets) > 1 else {"col_wrap": min(len(corr_order), 5)}
        g = sns.relplot(data=sub, x="severity", y="mIoU (%)", hue="method", hue_order=hue_order, palette=palette,
                        col="corruption", col_order=corr_order, kind="line", marker="o", errorbar="sd",
                        height=2.8, aspect=1.25, facet_kws={"margin_titles": len(dsets) > 1}, **kw, **wrap)
        g.set_axis_labels("severity (0 = clean)", "mIoU (%)")
        if len(dsets) > 1:
            g.set_titles(row_template="{row_name}", col_template="{col_name}")
        else:
            g.set_titles(col_template=f"{dsets[0]} | {{col_name}}")
        sev = sorted(sub["severity"].unique())
        for ax in g.axes.flat:
            ax.set_xticks(sev)
            ax.grid(True, alpha=0.3)
        g.figure.suptitle(f"mIoU under corruption ({seeds_phrase(curve)})", y=1.02)
        paths.append(_save(g.figure, out_dir / name))
    return paths


def rpc_heatmap(rpc: pd.DataFrame, palette: dict, out_dir: Path) -> list[Path]:
    """Heat map of rPC (%) per corruption (rows) and method (columns), one panel per dataset."""
    if rpc.empty or rpc["rpc"].notna().sum() == 0:
        return []
    datasets = sorted(rpc["dataset"].unique())
    ncol = min(len(datasets), 3)
    nrow = int(np.ceil(len(datasets) / ncol))
    n_c = rpc["corruption"].nunique()
    n_m = rpc["label"].nunique()
    fig, axes = plt.subplots(nrow, ncol, figsize=(ncol * (2.6 + 1.2 * n_m), nrow * (2.2 + 0.6 * n_c)), squeeze=False)
    vals = rpc["rpc"].dropna() * 100
    vmin, vmax = float(vals.min()), float(max(vals.max(), 100.0))
    for ax, ds in zip(axes.flat, datasets):
        sub = rpc[rpc["dataset"] == ds]
        cols = _labels_in(sub, palette)
        mat = sub.pivot_table(index="corruption", columns="label", values="rpc", aggfunc="mean").reindex(columns=cols) * 100
        sns.heatmap(mat, ax=ax, annot=True, fmt=".1f", cmap="viridis", vmin=vmin, vmax=vmax,
                    cbar_kws={"label": "rPC (%)"}, linewidths=0.5)
        for (i, j), v in np.ndenumerate(mat.to_numpy()):  # rPC left out (clean mIoU near zero): say so
            if np.isnan(v):
                ax.text(j + 0.5, i + 0.5, "n/a", ha="center", va="center", fontsize=8, color="0.4")
        ax.set_title(ds)
        ax.set_xlabel("method")
        ax.set_ylabel("corruption")
        ax.tick_params(axis="y", labelrotation=0)
        for tick in ax.get_xticklabels():
            tick.set_color(palette.get(tick.get_text(), "black"))
            tick.set_rotation(30)
            tick.set_ha("right")
    for ax in list(axes.flat)[len(datasets):]:
        ax.axis("off")
    fig.suptitle("Relative performance under corruption, rPC = mean corrupted mIoU / clean mIoU\n"
                 f"(n/a: clean mIoU below {100 * MIN_CLEAN_MIOU_FOR_RPC:g}%)", y=1.04)
    fig.tight_layout()
    return [_save(fig, out_dir / "rpc_heatmap.png")]


def speed_accuracy(points: pd.DataFrame, palette: dict, out_dir: Path) -> list[Path]:
    """Scatter of clean mIoU (%) against images/s (log x), one point per method, dataset and device.

    ``points`` has ``label, dataset, device, images_per_s, miou``.
    """
    pts = points.dropna(subset=["images_per_s", "miou"])
    pts = pts[pts["images_per_s"] > 0]
    if pts.empty:
        return []
    pts = _by_method(pts).assign(**{"mIoU (%)": pts["miou"].to_numpy() * 100})
    several = pts["device"].nunique() > 1
    pts["dataset"] = pts["dataset"] + (" @ " + pts["device"] if several else "")
    fig, ax = plt.subplots(figsize=(7.5, 5))
    sns.scatterplot(data=pts, x="images_per_s", y="mIoU (%)", hue="method", hue_order=_labels_in(pts, palette),
                    palette=palette, style="dataset", s=110, ax=ax, edgecolor="black", linewidth=0.5)
    ax.set_xscale("log")
    ax.set_xlabel("throughput (images/s, log scale)")
    ax.set_ylabel("clean mIoU (%)")
    ax.grid(True, which="both", alpha=0.3)
    devices = ", ".join(sorted(pts["device"].unique()))
    ax.set_title(f"Speed vs accuracy (clean units; device: {devices})")
    ax.legend(bbox_to_anchor=(1.02, 1), loc="upper left", borderaxespad=0, fontsize=9)
    return [_save(fig, out_dir / "speed_accuracy.png")]


def active_set(curve: pd.DataFrame, palette: dict, out_dir: Path) -> list[Path]:
    """Active-set size (prompts) and recall (%) against severity; colour = method, line style =
    corruption, one row per dataset."""
    if curve.empty:
        return []
    size = curve[["label", "dataset", "corruption", "severity", "seed"]].assign(
        value=curve["active_size"], metric="active-set size (prompts)")
    rec = curve[["label", "dataset", "corruption", "severity", "seed"]].assign(
        value=curve["active_recall"] * 100, metric="active-set recall (%)")
    d = _by_method(pd.concat([size, rec], ignore_index=True).dropna(subset=["value"]))
    if d.empty:
        return []
    datasets = sorted(d["dataset"].unique())
    g = sns.relplot(data=d, x="severity", y="value", hue="method", hue_order=_labels_in(d, palette), palette=palette,
                    style="corruption", style_order=sorted(d["corruption"].unique()), row="dataset",
                    row_order=datasets, col="metric",
                    col_order=["active-set size (prompts)", "active-set recall (%)"], kind="line", marker="o",
                    errorbar="sd", height=2.8, aspect=1.4, facet_kws={"sharey": False, "margin_titles": True})
    g.set_titles(row_template="{row_name}", col_template="{col_name}")
    sev = sorted(d["severity"].unique())
    for (row, col), ax in g.axes_dict.items():
        ax.set_ylabel(col)
        ax.set_xlabel("severity (0 = clean)")
        ax.set_xticks(sev)
        ax.grid(True, alpha=0.3)
    g.figure.suptitle(f"Active set under corruption ({seeds_phrase(curve)})", y=1.02)
    return [_save(g.figure, out_dir / "active_set.png")]


def shift_scatter(pairs: pd.DataFrame, palette: dict, out_dir: Path) -> list[Path]:
    """Real-condition drop against the imitating synthetic corruption's drop (points), one point per
    method and condition (``report.shift.shift_pairs``), with the diagonal."""
    if pairs.empty:
        return []
    d = _by_method(pairs).assign(real=pairs["real_drop"].to_numpy() * 100, synthetic=pairs["synthetic_drop"].to_numpy() * 100)
    fig, ax = plt.subplots(figsize=(6.5, 5))
    sns.scatterplot(data=d, x="synthetic", y="real", hue="method", hue_order=_labels_in(d, palette), palette=palette,
                    style="condition", s=110, ax=ax, edgecolor="black", linewidth=0.5)
    lo = float(min(d["synthetic"].min(), d["real"].min(), 0.0))
    hi = float(max(d["synthetic"].max(), d["real"].max(), 1.0))
    ax.plot([lo, hi], [lo, hi], color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("synthetic drop (mIoU points)")
    ax.set_ylabel("real-condition drop (mIoU points)")
    ax.grid(True, alpha=0.3)
    ax.set_title("Synthetic vs real shift")
    ax.legend(bbox_to_anchor=(1.02, 1), loc="upper left", borderaxespad=0, fontsize=9)
    return [_save(fig, out_dir / "shift_synthetic_vs_real.png")]
