"""What a run evaluates: plugins, device and dtype, the datasets, the methods with their shared
backend, and the plan of units and chunks built from them."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ..config import RunConfig
from ..errors import ConfigError, OvssError
from ..method import Method, params_hash
from ..plan import DatasetInfo, MethodInfo, Plan, ShardInfo, build_plan, conditions, dataset_info
from ..registry import BACKENDS, CORRUPTIONS, DATASETS, METHODS, REGISTRIES, import_plugin_modules

log = logging.getLogger("robustbench_ovss.runner")


def load_plugins(modules: list[str]) -> dict[str, dict[str, str]]:
    """Import ``--plugins`` modules, then every entry-point plugin; broken ones become warnings.

    Returns:
        registry kind -> {plugin name: error} of the plugins that failed to load.
    """
    import_plugin_modules(modules)
    broken = {}
    for kind, reg in REGISTRIES.items():
        b = reg.load_plugins()
        if b:
            broken[kind] = b
    return broken


# -- device -----------------------------------------------------------------------------------------


def resolve_device(spec: str, shard: ShardInfo) -> str:
    """"auto" -> "cuda:<local rank>" when CUDA is available, else "cpu"; checks explicit requests."""
    import torch

    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cuda":
        spec = f"cuda:{shard.local_rank if shard.distributed else 0}"
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {spec!r}: CUDA is not available (torch {torch.__version__}); use --device cpu or auto")
        idx = int(spec.split(":")[1])
        if idx >= torch.cuda.device_count():
            raise ConfigError(f"device {spec!r}: only {torch.cuda.device_count()} CUDA device(s) visible")
    if spec == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device 'mps' is not available; use --device cpu or auto")
    return spec


def resolve_dtype(spec: str, device: str) -> str:
    """"auto" -> "bf16" (autocast) on CUDA, "fp32" elsewhere."""
    if spec == "auto":
        return "bf16" if device.startswith("cuda") else "fp32"
    return spec


def device_description(device: str) -> str:
    """What goes into the ``device`` column: "cpu" or the GPU's name (e.g. "NVIDIA H100 80GB HBM3")."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return device


# -- datasets, methods, backend, plan ---------------------------------------------------------------


@dataclass
class Datasets:
    """The constructed datasets of a run: name -> object, their plan infos and roots."""

    objects: dict[str, Any]
    infos: list[DatasetInfo]
    roots: dict[str, str]


def dataset_root(cfg: RunConfig, name: str, cls: Any) -> str:
    """Where dataset ``name`` is read from: ``[datasets] roots.NAME``, else the data root joined with the
    dataset's folder. A data root that already is that folder (``--data-root /data/VOC2012``, as
    ``data check --root`` accepts it) is used as it is."""
    from ..datasets import dataset_root as under_data_root

    if name in cfg.datasets.roots:
        return cfg.datasets.roots[name]
    return under_data_root(cfg.data.root, cls)


def build_datasets(cfg: RunConfig) -> Datasets:
    """Construct every dataset of the config (lists its split; reads no pixels)."""
    objects, infos, roots = {}, [], {}
    for name in cfg.datasets.names:
        cls = DATASETS.get(name)
        root = dataset_root(cfg, name, cls)
        opts = dict(cfg.datasets.options.get(name, {}))
        try:
            ds = cls(root=root, vocab=cfg.datasets.vocab.get(name), **opts)
        except OvssError:
            raise
        except Exception as exc:
            raise OvssError(f"dataset {name!r} under {root}: {type(exc).__name__}: {exc}") from None
        objects[name] = ds
        roots[name] = root
        infos.append(dataset_info(name, ds, cfg.run.limit, opts))
        if infos[-1].n_images == 0:
            log.warning("dataset %s has no images under %s", name, root)
    return Datasets(objects, infos, roots)


@dataclass
class Methods:
    """The constructed methods (config order), their plan infos and the shared backend (or None)."""

    objects: list[Method]
    infos: list[MethodInfo]
    backend: Any


def build_methods(cfg: RunConfig, device: str, dtype: str) -> Methods:
    """Construct every method of the config and, when one needs it, the one shared backend."""
    objects: list[Method] = []
    for spec in cfg.methods:
        cls = METHODS.get(spec.name)
        try:
            objects.append(cls(**spec.params))
        except OvssError:
            raise
        except Exception as exc:
            raise OvssError(f"method {spec.display!r}: constructing it failed: {type(exc).__name__}: {exc}") from exc
    backend = None
    if any(m.needs_backend for m in objects):
        kwargs: dict[str, Any] = dict(
            checkpoint=cfg.backend.checkpoint, device=device, dtype=dtype, allow_download=cfg.backend.allow_download,
        )  # fmt: skip
        if cfg.backend.numerics != "auto":  # a plugin backend need not know the key unless it is set
            kwargs["numerics"] = cfg.backend.numerics
        backend = BACKENDS.get(cfg.backend.name)(**kwargs)
    infos = []
    for spec, m in zip(cfg.methods, objects, strict=True):
        uses = backend is not None and m.needs_backend
        infos.append(MethodInfo(
            label=spec.display, name=spec.name, version=str(m.version),
            params_hash=params_hash(spec.name, str(m.version), m.params),
            backend=cfg.backend.name if uses else "none",
            checkpoint=str(getattr(backend, "identity", cfg.backend.checkpoint)) if uses else "none",
        ))  # fmt: skip
    return Methods(objects, infos, backend)


def build_run_plan(cfg: RunConfig, datasets: Datasets, methods: Methods, dtype: str) -> Plan:
    """The plan of units and chunks (corruption modules imported here, before loader workers fork)."""
    conds = conditions(cfg.corruptions.names, cfg.corruptions.severities, cfg.run.seeds, cfg.corruptions.clean)
    for name in cfg.corruptions.names:
        CORRUPTIONS.get(name)
    return build_plan(methods.infos, datasets.infos, conds, cfg.run.chunk_size, dtype,
                      clean_only=cfg.corruptions.clean_only)  # fmt: skip


def backend_manifest(name: str, backend: Any) -> dict[str, Any]:
    """Backend provenance: name, identity, the numerics and TF32 flags it runs with, and its pixel decoder."""
    out: dict[str, Any] = {"name": name, "identity": getattr(backend, "identity", None)}
    report = getattr(backend, "numerics_report", None)
    if report is not None:
        out.update(report.to_dict())
    if getattr(backend, "pixel_decoder", None) is not None:  # "split" or "reference" (round-off only)
        out["pixel_decoder"] = backend.pixel_decoder
    return out
