"""A synthetic run directory in the harness's file format, for tests, docs and trying ``report``.

``make_synthetic_run`` writes ``config.toml``, ``manifest.json``, ``results.csv``, ``per_class.csv``
and ``per_image.csv`` with plausible, deterministic numbers (no model is run). The numbers mean
nothing; they exist so that every report section has something to show and so that tests can check
the report against a direct pandas computation on the same files.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import tomli_w

#: Unit coordinates: (label, dataset, corruption, severity, seed).
UnitId = tuple[str, str, str, int, int]

_BASE_MIOU = {"activesam": 0.62, "segearth-ov3": 0.58, "sam3": 0.50}
_BASE_FPS = {"activesam": 2.0, "segearth-ov3": 0.4, "sam3": 0.15}
_CORRUPTION_HARDNESS = {"gaussian_noise": 0.06, "fog": 0.03, "motion_blur": 0.04, "jpeg_compression": 0.02}


def unit_key(label: str, dataset: str, corruption: str, severity: int, seed: int, tag: str = "") -> str:
    """Deterministic stand-in for the harness's unit key."""
    blob = f"{tag}|{label}|{dataset}|{corruption}|{severity}|{seed}"
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def make_synthetic_run(
    run_dir: str | Path,
    *,
    methods: Sequence[str] = ("activesam", "segearth-ov3", "sam3"),
    datasets: Sequence[str] = ("voc21", "ade20k"),
    corruptions: Sequence[str] = ("gaussian_noise", "fog"),
    severities: Sequence[int] = (1, 3, 5),
    seeds: Sequence[int] = (0, 1),
    n_images: int = 12,
    n_classes: int = 6,
    limit: int = 0,
    device: str = "cpu",
    reference: str = "segearth-ov3",
    failed: Iterable[UnitId] = (),
    drop: Iterable[UnitId] = (),
    missing_rows: Iterable[UnitId] = (),
    tag: str = "",
    rng_seed: int = 0,
    gallery: bool = False,
) -> Path:
    """Write a synthetic run directory and return its path.

    Args:
        failed: units written with status "failed" and an error message (no metrics).
        drop: planned units left out of every table (as an interrupted run leaves them).
        missing_rows: units written to results.csv with status "missing".
        tag: mixed into unit keys; two runs with the same tag share keys (for merge tests).
        device: recorded device of every unit.
        gallery: also write two tiny PNGs under ``samples/``.
    """
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(rng_seed)
    failed_set, drop_set, missing_set = set(failed), set(drop), set(missing_rows)

    config = {
        "name": run.name,
        "run": {"out": str(run), "seeds": list(seeds), "device": device, "dtype": "auto", "limit": limit},
        "backend": {"name": "sam3", "checkpoint": "facebook/sam3"},
        "data": {"root": "data"},
        "datasets": {"names": list(datasets)},
        "corruptions": {"names": list(corruptions), "severities": list(severities), "clean": True},
        "methods": [{"name": m, "params": {}} for m in methods],
        "report": {"reference": reference},
    }
    (run / "config.toml").write_text(tomli_w.dumps(config), encoding="utf-8")
    manifest = {
        "versions": {"torch": "2.13.0", "transformers": "5.18.0", "ovss-bench": "0.1.0"},
        "git_sha": "0123456789ab",
        "device": device,
        "datasets": {d: {"root": f"data/{d}", "fingerprint": hashlib.sha256(d.encode()).hexdigest()[:12]} for d in datasets},
    }
    (run / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")

    units: list[UnitId] = []
    for m in methods:
        for d in datasets:
            units.append((m, d, "none", 0, 0))
            for c in corruptions:
                for s in severities:
                    for seed in seeds:
                        units.append((m, d, c, s, seed))

    results, per_class, per_image = [], [], []
    for u in units:
        if u in drop_set:
            continue
        label, ds, corr, sev, seed = u
        key = unit_key(*u, tag=tag)
        base = _BASE_MIOU.get(label, 0.45) - (0.1 if ds == "ade20k" else 0.0)
        drop_per_sev = _CORRUPTION_HARDNESS.get(corr, 0.05) * (1.2 if label == "sam3" else 1.0)
        miou = float(np.clip(base - drop_per_sev * sev + rng.normal(0, 0.01), 0.01, 0.99))
        fps = _BASE_FPS.get(label, 1.0) * (0.6 if ds == "ade20k" else 1.0) * float(rng.uniform(0.95, 1.05))
        timed = n_images  # every image is timed (warm-up calls are extra)
        row = {
            "method": label, "label": label, "method_version": "1", "params_hash": "p" + label[:4],
            "backend": "sam3", "checkpoint": "facebook/sam3", "dataset": ds, "corruption": corr,
            "severity": sev, "seed": seed, "n_images": n_images, "limit": limit, "status": "ok", "error": "",
            "miou": miou, "aacc": min(miou + 0.2, 1.0), "macc": min(miou + 0.1, 1.0), "fps": fps,
            "model_seconds": timed / fps, "setup_seconds": float(rng.uniform(1, 3)), "timed_images": timed,
            "data_seconds": 0.05 * timed, "pipeline_seconds": timed / fps + 0.06 * timed,
            "peak_mem_mb": 1000.0, "device": device, "dtype": "fp32",
            "versions": "torch=2.13.0;transformers=5.18.0", "git_sha": "0123456789ab",
            "config_hash": "cfg" + tag, "unit_key": key,
            "started_at": "2026-01-01T00:00:00", "finished_at": "2026-01-01T00:01:00",
        }
        if label == "activesam":
            row["active_size"] = float(8 + 2 * sev + rng.uniform(0, 1))
            row["active_recall"] = float(np.clip(0.97 - 0.03 * sev + rng.normal(0, 0.005), 0, 1))
            row["prompts_decoded"] = row["active_size"]
        else:
            row["active_size"] = np.nan
            row["active_recall"] = np.nan
            row["prompts_decoded"] = float(n_classes)
        if u in failed_set:
            row.update(status="failed", error=f"RuntimeError: synthetic failure on image img_{seed:03d}",
                       miou=np.nan, aacc=np.nan, macc=np.nan, fps=np.nan, model_seconds=np.nan,
                       pipeline_seconds=np.nan)
        if u in missing_set:
            row.update(status="missing", miou=np.nan, aacc=np.nan, macc=np.nan, fps=np.nan, model_seconds=np.nan,
                       pipeline_seconds=np.nan)
        results.append(row)
        if row["status"] != "ok":
            continue
        ids = dict(unit_key=key, method=label, label=label, dataset=ds, corruption=corr, severity=sev, seed=seed)
        for k in range(n_classes):
            weak = 0.05 * k if corr != "none" else 0.0  # higher class ids suffer more under corruption
            iou = float(np.clip(miou + 0.05 * (k - n_classes / 2) / n_classes - weak * sev / 5 + rng.normal(0, 0.01), 0, 1))
            union = int(rng.integers(5_000, 20_000))
            inter = int(round(iou * union))
            per_class.append({**ids, "class_id": k, "class_name": f"class_{k}", "intersection": inter,
                              "union": union, "area_pred": inter + 100, "area_label": inter + 120, "iou": inter / union})
        for i in range(n_images):
            per_image.append({**ids, "image_id": f"img_{i:03d}",
                              "pixel_acc": float(np.clip(miou + 0.2 + rng.normal(0, 0.05), 0, 1)),
                              "miou": float(np.clip(miou + rng.normal(0, 0.08), 0, 1)),
                              "active_size": row["active_size"], "active_recall": row["active_recall"],
                              "prompts_decoded": row["prompts_decoded"]})
    pd.DataFrame(results).to_csv(run / "results.csv", index=False)
    pd.DataFrame(per_class).to_csv(run / "per_class.csv", index=False)
    pd.DataFrame(per_image).to_csv(run / "per_image.csv", index=False)
    if gallery:
        _write_gallery(run / "samples")
    return run


def _write_gallery(folder: Path) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for sev in (1, 5):
        arr = np.full((16, 16, 3), 40 * sev, dtype=np.uint8)
        Image.fromarray(arr).save(folder / f"voc21_fog_s{sev}_img_000.png")
