"""Whose run directory is this? One results-relevant config per run directory, extended on request.

A run directory holds the results of one config (its ``config.toml``). A new ``ovss-bench run`` on it
compares its config with that one, on the results-relevant part only
(:func:`robustbench_ovss.config.results_config`: worker counts, threads, checkpoint intervals,
warm-up calls, saved images and report options never matter):

- same settings, same or fewer units (e.g. ``--methods`` picking one method): resume;
- same settings, more units (methods, datasets, corruptions, severities, seeds or clean added):
  with ``--extend`` (or ``--force``) the run directory grows to the union; without, a one-line error;
- other settings (limit, chunk size, device or dtype, checkpoint or backend, data root, a method's
  params, a dataset's vocabulary or options): a one-line error naming the keys and the two ways out,
  another ``--out`` or ``--force``, which replaces the directory's results.

The union config is what ``config.toml`` then holds; ``plan.json`` lists the units actually planned.
"""

from __future__ import annotations

import copy
import logging
import shutil
import tomllib
from dataclasses import dataclass, field
from typing import Any

from ..config import EXECUTION_KEYS, RunConfig, config_to_dict
from ..errors import ConfigError, OvssError
from ..files import read_json
from ..store import RunDir

log = logging.getLogger("robustbench_ovss.runner")

#: What ``--force`` deletes when it replaces a run directory's results.
RESULT_ENTRIES = ("units", "chunks", "claims", "preds", "samples", "report", "results.csv", "per_class.csv",
                  "per_image.csv", "plan.json", "manifest.json", "config.toml")  # fmt: skip


@dataclass
class Decision:
    """How this invocation relates to the run directory.

    Attributes:
        kind: "new" (nothing there), "resume" (same units or fewer), "extend" (units added),
            "replace" (``--force`` over other settings).
        stored: the run directory's config as plain data (``config_to_dict``), to be written.
        added: what the extension adds, as readable items ("methods: sam3", "seeds: 1").
    """

    kind: str
    stored: dict[str, Any]
    added: list[str] = field(default_factory=list)


def _settings(d: dict[str, Any]) -> dict[str, Any]:
    """The results-relevant settings of a config dict, without the grid axes (flat "section.key")."""
    out: dict[str, Any] = {}
    for sec in ("run", "backend", "data"):
        for k, v in d.get(sec, {}).items():
            if sec == "run" and (k in EXECUTION_KEYS or k == "seeds"):
                continue
            out[f"[{sec}] {k}"] = v
    return out


def _axes(d: dict[str, Any]) -> dict[str, list[Any]]:
    """The grid axes of a config dict: lists whose items each add units."""
    corr = d.get("corruptions", {})
    return {
        "methods": [m.get("label") or m["name"] for m in d.get("methods", [])],
        "datasets": list(d.get("datasets", {}).get("names", [])),
        "corruptions": list(corr.get("names", [])),
        "severities": list(corr.get("severities", [])),
        "seeds": list(d.get("run", {}).get("seeds", [])),
        "clean": ["clean"] if corr.get("clean", True) else [],
    }


def _per_item(d: dict[str, Any]) -> dict[str, Any]:
    """Settings attached to one method or dataset ("[[methods]] label", "[datasets] vocab.name", ...)."""
    out: dict[str, Any] = {}
    for m in d.get("methods", []):
        out[f"[[methods]] {m.get('label') or m['name']}"] = {"name": m["name"], "params": m.get("params", {})}
    ds = d.get("datasets", {})
    for table in ("vocab", "roots", "options"):
        for name, v in ds.get(table, {}).items():
            out[f"[datasets] {table}.{name}"] = v
    for name in d.get("corruptions", {}).get("clean_only", []):
        out[f"[corruptions] clean_only.{name}"] = True
    return out


def _item_names(d: dict[str, Any]) -> set[str]:
    axes = _axes(d)
    return {f"[[methods]] {x}" for x in axes["methods"]} | {f"@{x}" for x in axes["datasets"]}


def conflicts(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Results-relevant keys whose values differ between two config dicts (grid axes aside)."""
    so, sn = _settings(old), _settings(new)
    keys = [k for k in sorted(set(so) | set(sn)) if so.get(k) != sn.get(k)]
    po, pn = _per_item(old), _per_item(new)
    shared_methods = set(_axes(old)["methods"]) & set(_axes(new)["methods"])
    shared_data = set(_axes(old)["datasets"]) & set(_axes(new)["datasets"])
    for k in sorted(set(po) | set(pn)):
        item = k.split(" ", 1)[1]
        owner = item if k.startswith("[[methods]]") else item.split(".", 1)[-1]
        shared = owner in shared_methods if k.startswith("[[methods]]") else owner in shared_data
        if shared and po.get(k) != pn.get(k):
            keys.append(f"{k} params" if k.startswith("[[methods]]") else k)
    return keys


def additions(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Grid items ``new`` has and ``old`` lacks, as "axis: item" strings."""
    ao, an = _axes(old), _axes(new)
    return [f"{axis}: {x}" for axis in an for x in an[axis] if x not in ao[axis]]


def union(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The config dict of a run directory grown by ``new``'s grid items (``old``'s order first)."""
    out = copy.deepcopy(old)

    def merge(a: list[Any], b: list[Any]) -> list[Any]:
        return list(a) + [x for x in b if x not in a]

    out["run"]["seeds"] = merge(old["run"]["seeds"], new["run"]["seeds"])
    ds, nds = out["datasets"], new["datasets"]
    ds["names"] = merge(ds["names"], nds["names"])
    for table in ("vocab", "roots", "options"):
        ds[table] = {**nds.get(table, {}), **ds.get(table, {})}
    c, nc = out["corruptions"], new["corruptions"]
    c["names"] = merge(c["names"], nc["names"])
    c["severities"] = merge(c["severities"], nc["severities"])
    c["clean"] = bool(c.get("clean", True) or nc.get("clean", True))
    c["clean_only"] = merge(c.get("clean_only", []), nc.get("clean_only", []))
    labels = {m.get("label") or m["name"] for m in out["methods"]}
    out["methods"] = out["methods"] + [m for m in new["methods"] if (m.get("label") or m["name"]) not in labels]
    return out


def read_stored_config(rd: RunDir) -> dict[str, Any] | None:
    """The run directory's config.toml as plain data, or None when there is none."""
    try:
        text = rd.config_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise OvssError(f"{rd.config_path}: cannot read ({exc.strerror})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise OvssError(f"{rd.config_path}: not valid TOML ({exc}); restore it, or pass --force to replace the run") from None


def decide(rd: RunDir, cfg: RunConfig, extend: bool, force: bool) -> Decision:
    """Compare ``cfg`` with the run directory's config; raise a one-line ConfigError when they clash."""
    new = config_to_dict(cfg)
    old = read_stored_config(rd)
    if old is None:
        return Decision("new", new)
    try:
        clash = conflicts(old, new)
        added = additions(old, new)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{rd.config_path}: not a config this version wrote ({type(exc).__name__}: {exc}); "
                          f"use another --out, or --force to replace it") from None  # fmt: skip
    if clash:
        if force:
            return Decision("replace", new)
        shown = ", ".join(clash[:6]) + (f" and {len(clash) - 6} more" if len(clash) > 6 else "")
        verb = "differs" if len(clash) == 1 else "differ"
        raise ConfigError(f"{rd.root} holds results of another config ({shown} {verb} from {rd.config_path.name}); "
                          f"use another --out DIR, or --force to replace its results")  # fmt: skip
    if added:
        if not (extend or force):
            shown = ", ".join(added[:6]) + (f" and {len(added) - 6} more" if len(added) > 6 else "")
            raise ConfigError(f"{rd.root}: this run adds units to the directory's config ({shown}); pass --extend to "
                              f"add them to it, or use another --out DIR")  # fmt: skip
        return Decision("extend", union(old, new), added)
    return Decision("resume", old)


def changed_datasets(rd: RunDir, fingerprints: dict[str, str]) -> list[str]:
    """Datasets whose files changed (another fingerprint) since the run directory's manifest was written."""
    man = read_json(rd.root / "manifest.json") or {}
    known = man.get("datasets", {})
    return [name for name, fp in fingerprints.items()
            if name in known and known[name].get("fingerprint") not in (None, fp)]  # fmt: skip


def clear_results(rd: RunDir) -> None:
    """``--force`` over another config: delete the run directory's results (the directory stays)."""
    for name in RESULT_ENTRIES:
        p = rd.root / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    log.warning("--force: replaced the results in %s", rd.root)
