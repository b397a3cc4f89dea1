"""Merge the per-stage training logs of the demo model into one curve (CSV + PNG) for docs/."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def combine(stages: Sequence[tuple[str, str | Path, int]], out_dir: str | Path, every: int = 50) -> Path:
    """``stages``: (name, log dir with train_log.csv/eval_log.csv, steps used from that stage).

    Writes ``train_curve.csv`` (means over ``every`` steps, global step), ``eval_curve.csv`` and
    ``curves.png`` into ``out_dir``; returns the PNG path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    trs, evs, offset, bounds = [], [], 0, []
    for name, d, used in stages:
        tr = pd.read_csv(Path(d) / "train_log.csv")
        tr = tr[tr["step"] < used].copy()
        tr["stage"] = name
        tr["global_step"] = tr["step"] + offset
        trs.append(tr)
        ev_path = Path(d) / "eval_log.csv"
        if ev_path.exists() and ev_path.stat().st_size:
            ev = pd.read_csv(ev_path)
            ev = ev[ev["step"] <= used].copy()
            ev["stage"] = name
            ev["global_step"] = ev["step"] + offset
            evs.append(ev)
        offset += used
        bounds.append(offset)
    tr = pd.concat(trs, ignore_index=True)
    cols = [c for c in ("loss", "presence", "presence_aux", "semantic", "rank", "instance", "presence_acc", "sec") if c in tr]
    tr["bin"] = tr["global_step"] // every * every
    agg = tr.groupby(["bin", "stage"], sort=True)[cols].mean().reset_index().rename(columns={"bin": "global_step"})
    agg.round(4).to_csv(out / "train_curve.csv", index=False)
    ev = pd.concat(evs, ignore_index=True) if evs else pd.DataFrame()
    if len(ev):
        ev.to_csv(out / "eval_curve.csv", index=False)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
    for k in ("presence", "semantic", "rank", "instance"):
        if k in agg:
            axes[0].plot(agg["global_step"], agg[k], label=k)
    axes[0].set_xlabel("step")
    axes[0].set_title(f"training losses (means over {every} steps)")
    for b in bounds[:-1]:
        axes[0].axvline(b, color="grey", lw=0.6, ls=":")
        axes[1].axvline(b, color="grey", lw=0.6, ls=":")
    axes[0].legend()
    if len(ev):
        for k in ("miou_oracle_presence", "miou_fused", "active_recall", "presence_recall", "presence_precision"):
            if k in ev:
                axes[1].plot(ev["global_step"], ev[k], marker="o", ms=3, label=k)
        axes[1].set_ylim(0, 1)
        axes[1].set_xlabel("step")
        axes[1].set_title("held-out synthetic val (in-training evaluation)")
        axes[1].legend(fontsize=7)
    fig.tight_layout()
    png = out / "curves.png"
    fig.savefig(png, dpi=90)
    plt.close(fig)
    return png
