"""Run configuration: TOML -> validated frozen dataclasses, CLI overrides, resolved TOML and hash.

Every key has a default here; an unknown key, a wrong type or an unknown name raises a one-line
``ConfigError`` that names the file, the key and the allowed values. ``load_config(None)`` reads the
packaged demo config, so ``ovss-bench run`` works from any directory.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, get_type_hints

import tomli_w

from .backends.numerics import NUMERICS as BACKEND_NUMERICS
from .errors import ConfigError, OvssError
from .hashing import stable_hash

DEVICES_HELP = "auto, cpu, cuda or cuda:N"
DTYPES = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class RunSection:
    out: str = ""  # "" = runs/<config name>
    seeds: tuple[int, ...] = (0,)
    device: str = "auto"
    dtype: str = "auto"
    chunk_size: int = 50
    limit: int = 0
    workers: int = 2  # data-loading processes (decode + corrupt) ahead of the model; 0 = in-process
    checkpoint_images: int = 100  # checkpoint a chunk's partial results every N images ...
    checkpoint_seconds: float = 300.0  # ... or every N seconds, whichever comes first
    warmup_calls: int = 3  # untimed extra predict calls per method on the first image of each dataset, per process
    threads: int = 0  # torch intra-op threads; 0 = leave torch's default
    save_preds: int = 0  # save prediction overlays of the first K images per unit (report)
    lease_seconds: float = 60.0  # a worker's claim on a chunk lapses when not renewed for this long


@dataclass(frozen=True)
class BackendSection:
    name: str = "sam3"
    checkpoint: str = "facebook/sam3"
    allow_download: bool = False
    # auto = what the checkpoint declares (config.json "ovss_numerics"; absent = meta, as from Meta or the
    # hub) | meta = Meta's SAM 3 numerics, as the reference methods | transformers = Sam3Model as built
    numerics: str = "auto"


@dataclass(frozen=True)
class DataSection:
    root: str = "data"


@dataclass(frozen=True)
class DatasetsSection:
    names: tuple[str, ...] = ("voc21", "ade20k")
    vocab: dict[str, str] = field(default_factory=dict)  # dataset -> vocabulary file override
    roots: dict[str, str] = field(default_factory=dict)  # dataset -> directory override
    options: dict[str, dict[str, Any]] = field(default_factory=dict)  # dataset -> constructor kwargs


@dataclass(frozen=True)
class CorruptionsSection:
    names: tuple[str, ...] = ("gaussian_noise", "fog")
    severities: tuple[int, ...] = (1, 3, 5)
    clean: bool = True
    cache: str = ""
    clean_only: tuple[str, ...] = ()  # datasets evaluated clean only (real-condition sets such as ACDC)


@dataclass(frozen=True)
class MethodSpec:
    name: str
    params: dict[str, Any] = field(default_factory=dict)
    label: str = ""  # display name; "" = name (set it when one method appears twice, e.g. ablations)

    @property
    def display(self) -> str:
        return self.label or self.name


@dataclass(frozen=True)
class ReportSection:
    reference: str = "segearth-ov3"
    auto: bool = True  # write RUN_DIR/report when a run finishes its whole plan


@dataclass(frozen=True)
class RunConfig:
    name: str = "demo"
    source: str = ""  # file the config was read from
    run: RunSection = field(default_factory=RunSection)
    backend: BackendSection = field(default_factory=BackendSection)
    data: DataSection = field(default_factory=DataSection)
    datasets: DatasetsSection = field(default_factory=DatasetsSection)
    corruptions: CorruptionsSection = field(default_factory=CorruptionsSection)
    methods: tuple[MethodSpec, ...] = (MethodSpec("activesam"), MethodSpec("segearth-ov3"))
    report: ReportSection = field(default_factory=ReportSection)

    @property
    def out_dir(self) -> Path:
        return Path(self.run.out or f"runs/{self.name}")


# keys of earlier versions whose meaning changed: one line saying what to write instead
RENAMED = {
    ("[run]", "warmup_images"): "every image is now timed; write warmup_calls = N for N untimed extra predict "
                                "calls per method on the first image of each dataset",
}

_SECTIONS = {
    "run": RunSection,
    "backend": BackendSection,
    "data": DataSection,
    "datasets": DatasetsSection,
    "corruptions": CorruptionsSection,
    "report": ReportSection,
}


# -- reading ----------------------------------------------------------------------------------------


def packaged_config(name: str) -> Path:
    """Path of a config shipped in the package (``configs/<name>.toml``)."""
    res = resources.files("robustbench_ovss.configs").joinpath(f"{name}.toml")
    if not res.is_file():
        avail = sorted(p.name[:-5] for p in resources.files("robustbench_ovss.configs").iterdir() if p.name.endswith(".toml"))
        raise ConfigError(f"no packaged config {name!r} (available: {', '.join(avail)})")
    return Path(str(res))


def load_config(path: str | Path | None = None) -> RunConfig:
    """Read and validate a run config. ``None`` = the packaged demo; a bare name = a packaged config."""
    if path is None:
        path = packaged_config("demo")
    p = Path(path)
    if not p.exists() and p.suffix == "" and "/" not in str(path):
        p = packaged_config(str(path))
    if not p.is_file():
        raise ConfigError(f"config file not found: {p} (pass a TOML file or a packaged name such as 'demo')")
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror}") from exc
    return config_from_dict(raw, name=p.stem, source=str(p))


def config_from_dict(raw: dict[str, Any], name: str = "config", source: str = "<dict>") -> RunConfig:
    """Validate a parsed TOML document into a ``RunConfig`` (names are checked against the registries)."""
    where = source
    allowed_top = sorted([*_SECTIONS, "methods", "name"])
    for key in raw:
        if key not in allowed_top:
            raise ConfigError(f"{where}: unknown top-level key {key!r} (allowed: {', '.join(allowed_top)})")
    kwargs: dict[str, Any] = {}
    for sec, cls in _SECTIONS.items():
        body = raw.get(sec, {})
        if not isinstance(body, dict):
            raise ConfigError(f"{where}: [{sec}] must be a table")
        kwargs[sec] = _build(cls, body, f"[{sec}]", where)
    methods = raw.get("methods")
    if methods is not None:
        if not isinstance(methods, list) or not methods:
            raise ConfigError(f"{where}: [[methods]] must be a non-empty array of tables")
        kwargs["methods"] = tuple(_build(MethodSpec, m, f"[[methods]] #{i + 1}", where) for i, m in enumerate(methods))
    cfg = RunConfig(name=str(raw.get("name", name)), source=source, **kwargs)
    validate(cfg)
    return cfg


def _build(cls: type, body: Any, section: str, where: str) -> Any:
    if not isinstance(body, dict):
        raise ConfigError(f"{where}: {section} must be a table")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in body:
        if (section, key) in RENAMED:
            raise ConfigError(f"{where}: {section} {key} was replaced: {RENAMED[(section, key)]}")
        if key not in fields:
            raise ConfigError(f"{where}: {section} unknown key {key!r} (allowed: {', '.join(sorted(fields))})")
    values = {}
    for key, val in body.items():
        values[key] = _coerce(val, hints[key], f"{section} {key}", where)
    missing = [n for n, f in fields.items() if n not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]  # type: ignore[misc]
    if missing:
        raise ConfigError(f"{where}: {section} is missing required key(s) {', '.join(missing)}")
    return cls(**values)


def _coerce(val: Any, typ: Any, key: str, where: str) -> Any:
    """Check ``val`` against a field's annotated type; tuples come in as TOML arrays."""
    origin = getattr(typ, "__origin__", None)
    if typ is bool:
        if not isinstance(val, bool):
            raise ConfigError(f"{where}: {key} must be true or false, got {val!r}")
        return val
    if typ is int:
        if isinstance(val, bool) or not isinstance(val, int):
            raise ConfigError(f"{where}: {key} must be an integer, got {val!r}")
        return val
    if typ is float:
        if isinstance(val, bool) or not isinstance(val, (int, float)):
            raise ConfigError(f"{where}: {key} must be a number, got {val!r}")
        return float(val)
    if typ is str:
        if not isinstance(val, str):
            raise ConfigError(f"{where}: {key} must be a string, got {val!r}")
        return val
    if origin is tuple:
        inner = typ.__args__[0]
        if isinstance(val, (str, int)) and not isinstance(val, bool):
            val = [val]
        if not isinstance(val, list):
            raise ConfigError(f"{where}: {key} must be an array, got {val!r}")
        return tuple(_coerce(v, inner, key, where) for v in val)
    if origin is dict:
        if not isinstance(val, dict):
            raise ConfigError(f"{where}: {key} must be a table, got {val!r}")
        return dict(val)
    return val


def validate(cfg: RunConfig) -> None:
    """Value checks that need more than a type: ranges, devices, registered names."""
    from .registry import BACKENDS, CORRUPTIONS, DATASETS, METHODS

    w = cfg.source
    r = cfg.run
    if not r.seeds:
        raise ConfigError(f"{w}: [run] seeds must list at least one seed")
    if r.chunk_size < 1:
        raise ConfigError(f"{w}: [run] chunk_size must be >= 1, got {r.chunk_size}")
    for key in ("limit", "workers", "checkpoint_images", "warmup_calls", "threads", "save_preds"):
        if getattr(r, key) < 0:
            raise ConfigError(f"{w}: [run] {key} must be >= 0, got {getattr(r, key)}")
    if r.checkpoint_seconds <= 0:
        raise ConfigError(f"{w}: [run] checkpoint_seconds must be > 0")
    if r.lease_seconds <= 0:
        raise ConfigError(f"{w}: [run] lease_seconds must be > 0")
    if not _valid_device(r.device):
        raise ConfigError(f"{w}: [run] device {r.device!r} is not one of {DEVICES_HELP}")
    if r.dtype not in DTYPES:
        raise ConfigError(f"{w}: [run] dtype {r.dtype!r} is not one of {', '.join(DTYPES)}")
    if cfg.backend.numerics not in BACKEND_NUMERICS:
        raise ConfigError(f"{w}: [backend] numerics {cfg.backend.numerics!r} is not one of {', '.join(BACKEND_NUMERICS)}")
    bad_sev = [s for s in cfg.corruptions.severities if not 1 <= s <= 5]
    if bad_sev:
        raise ConfigError(f"{w}: [corruptions] severities must be in 1..5, got {bad_sev}")
    if not cfg.corruptions.names and not cfg.corruptions.clean:
        raise ConfigError(f"{w}: [corruptions] no corruptions and clean = false: nothing to evaluate")
    if not cfg.datasets.names:
        raise ConfigError(f"{w}: [datasets] names must list at least one dataset")
    stray = sorted(set(cfg.corruptions.clean_only) - set(cfg.datasets.names))
    if stray:
        raise ConfigError(f"{w}: [corruptions] clean_only names {', '.join(stray)}, not in [datasets] names")
    if cfg.corruptions.clean_only and not cfg.corruptions.clean:
        raise ConfigError(f"{w}: [corruptions] clean_only needs clean = true (those datasets have no other condition)")
    try:
        BACKENDS.expand([cfg.backend.name])
        DATASETS.expand(cfg.datasets.names)
        CORRUPTIONS.expand(cfg.corruptions.names)
        METHODS.expand([m.name for m in cfg.methods])
    except OvssError as exc:
        raise ConfigError(f"{w}: {exc}") from exc
    for table in ("vocab", "roots", "options"):
        extra = sorted(set(getattr(cfg.datasets, table)) - set(cfg.datasets.names) - set(DATASETS.names()))
        if extra:
            raise ConfigError(f"{w}: [datasets] {table} names unknown dataset(s) {', '.join(extra)}")
    labels = [m.display for m in cfg.methods]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise ConfigError(f"{w}: [[methods]] {', '.join(dup)} listed twice; give each a distinct label = \"...\"")
    _validate_datasets(cfg)
    _validate_methods(cfg)


def _validate_datasets(cfg: RunConfig) -> None:
    """The per-dataset tables: vocabulary files exist, roots are strings, options are what the dataset
    class declares (names and types), all before any data is read."""
    from .datasets.base import check_options
    from .registry import DATASETS

    w = cfg.source
    for name, path in cfg.datasets.vocab.items():
        if not isinstance(path, str) or not path:
            raise ConfigError(f"{w}: [datasets] vocab.{name} must be the path of a vocabulary file, got {path!r}")
        if not Path(path).is_file():
            raise ConfigError(f"{w}: [datasets] vocab.{name}: file {path} not found (one line per label id, "
                              "aliases separated by commas)")  # fmt: skip
    for name, root in cfg.datasets.roots.items():
        if not isinstance(root, str) or not root:
            raise ConfigError(f"{w}: [datasets] roots.{name} must be a directory path, got {root!r}")
    for name, opts in cfg.datasets.options.items():
        if not isinstance(opts, dict):
            raise ConfigError(f"{w}: [datasets.options.{name}] must be a table of options, got {opts!r}")
        check_options(name, DATASETS.get(name), opts, w)


def _validate_methods(cfg: RunConfig) -> None:
    """Each [[methods]] entry's params: constructing the method checks their names and values (methods
    do their work in ``setup``, so construction is cheap and touches no model or data)."""
    from .registry import METHODS

    for i, spec in enumerate(cfg.methods):
        where = f"{cfg.source}: [[methods]] #{i + 1} ({spec.display})"
        if not isinstance(spec.params, dict):
            raise ConfigError(f"{where}: params must be a table, got {spec.params!r}")
        cls = METHODS.get(spec.name)
        try:
            cls(**spec.params)
        except OvssError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - a plugin's own check; say which entry it rejected
            raise ConfigError(f"{where}: params rejected: {type(exc).__name__}: {exc}") from None


def _valid_device(dev: str) -> bool:
    if dev in ("auto", "cpu", "cuda", "mps"):
        return True
    return dev.startswith("cuda:") and dev[5:].isdigit()


# -- overrides --------------------------------------------------------------------------------------


def apply_overrides(
    cfg: RunConfig,
    *,
    methods: list[str] | None = None,
    datasets: list[str] | None = None,
    corruptions: list[str] | None = None,
    severities: list[int] | None = None,
    seeds: list[int] | None = None,
    limit: int | None = None,
    out: str | None = None,
    data_root: str | None = None,
    checkpoint: str | None = None,
    device: str | None = None,
    no_clean: bool = False,
    workers: int | None = None,
    save_preds: int | None = None,
) -> RunConfig:
    """Return ``cfg`` with command-line flags applied (None = keep the file's value), re-validated.

    ``methods`` are globs: each selects the config's [[methods]] entries whose name or label matches;
    a pattern matching none of them adds registered methods with default params.
    """
    import fnmatch

    from .registry import DATASETS, METHODS

    run = cfg.run
    if seeds is not None:
        run = dataclasses.replace(run, seeds=tuple(seeds))
    if limit is not None:
        run = dataclasses.replace(run, limit=limit)
    if out is not None:
        run = dataclasses.replace(run, out=out)
    if device is not None:
        run = dataclasses.replace(run, device=device)
    if workers is not None:
        run = dataclasses.replace(run, workers=workers)
    if save_preds is not None:
        run = dataclasses.replace(run, save_preds=save_preds)
    corr = cfg.corruptions
    if corruptions is not None:
        corr = dataclasses.replace(corr, names=tuple(corruptions))
    if severities is not None:
        corr = dataclasses.replace(corr, severities=tuple(severities))
    if no_clean:
        corr = dataclasses.replace(corr, clean=False)
    dsets = cfg.datasets
    if datasets is not None:
        try:
            dsets = dataclasses.replace(dsets, names=tuple(DATASETS.expand(datasets)))
        except OvssError as exc:
            raise ConfigError(f"--datasets: {exc}") from exc
    if corr.clean_only:  # --datasets may leave some of them out
        corr = dataclasses.replace(corr, clean_only=tuple(d for d in corr.clean_only if d in dsets.names))
    mspecs = cfg.methods
    if methods is not None:
        chosen: list[MethodSpec] = []
        for pat in methods:
            hits = [m for m in cfg.methods if fnmatch.fnmatchcase(m.display, pat) or fnmatch.fnmatchcase(m.name, pat)]
            if not hits:
                try:
                    hits = [MethodSpec(n) for n in METHODS.expand([pat])]
                except OvssError as exc:
                    raise ConfigError(f"--methods: {exc}") from exc
            chosen.extend(h for h in hits if h not in chosen)
        mspecs = tuple(chosen)
    data = cfg.data if data_root is None else dataclasses.replace(cfg.data, root=data_root)
    backend = cfg.backend if checkpoint is None else dataclasses.replace(cfg.backend, checkpoint=checkpoint)
    new = dataclasses.replace(
        cfg, run=run, corruptions=corr, datasets=dsets, methods=mspecs, data=data, backend=backend
    )
    validate(dataclasses.replace(new, source=f"{cfg.source} (with command-line flags)"))
    return new


# -- writing ----------------------------------------------------------------------------------------


def config_to_dict(cfg: RunConfig) -> dict[str, Any]:
    """Plain-data form of the resolved config (TOML-serialisable; tuples as lists)."""

    def plain(x: Any) -> Any:
        if dataclasses.is_dataclass(x):
            return {f.name: plain(getattr(x, f.name)) for f in dataclasses.fields(x)}
        if isinstance(x, (list, tuple)):
            return [plain(v) for v in x]
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        return x

    d = plain(cfg)
    d.pop("source")
    return d


def config_to_toml(cfg: RunConfig) -> str:
    """The resolved config as TOML; ``load_config`` of it gives back an equal config."""
    return tomli_w.dumps(config_to_dict(cfg))


#: [run] keys that change how a run executes, never a number it records: where the run directory is,
#: how many loader processes and threads, how often it checkpoints, warm-up calls (timing only),
#: saved images. Together with the whole [report] table and the config's name and source, they are
#: left out of :func:`results_config`, so they may differ between reruns and workers of one run.
EXECUTION_KEYS = ("out", "workers", "threads", "checkpoint_images", "checkpoint_seconds", "warmup_calls", "save_preds",
                  "lease_seconds")


def results_config(cfg: RunConfig) -> dict[str, Any]:
    """The part of the resolved config that can change results (plain data): everything but
    :data:`EXECUTION_KEYS`, ``[report]``, ``name`` and ``source``."""
    d = config_to_dict(cfg)
    for key in EXECUTION_KEYS:
        d["run"].pop(key, None)
    d.pop("report", None)
    d.pop("name", None)
    return d


def config_hash(cfg: RunConfig) -> str:
    """Short hash of :func:`results_config`: equal for two configs that give the same results."""
    return stable_hash(results_config(cfg), compact=False)
