"""``ovss-bench run``: evaluate the plan's chunks of this shard and store the results.

Per chunk (one dataset, corruption, severity and seed, a range of images) a torch DataLoader's
workers load every image and corrupt it once, ahead of the model; every method whose unit is not yet
finished predicts on that same corrupted image; each prediction is checked, turned into an int64
confusion matrix on the device and added to the unit's running sum. Model time is measured around
``predict`` only (device synchronised) on every evaluated image, after ``warmup_calls`` untimed
``predict`` calls per method on the first image of each dataset in this process; the methods take
turns going first on consecutive images. Pipeline time adds the image's loading and corruption and the
method's metric update. The running state of each (unit,
chunk) is checkpointed to the run directory every ``checkpoint_images`` images or
``checkpoint_seconds``, and at the end of the chunk; see :mod:`robustbench_ovss.store`.

Why the numbers do not depend on how the run was cut up: confusion matrices are sums of per-image
int64 matrices (exact, order-free), per-image rows are kept in image order inside a chunk and chunks
are concatenated in plan order, the corruption seed of an image is a hash of its identity (never the
loader position), and a checkpoint stores the index of the next image per unit together with the
sums up to it, written atomically in one file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import resource
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import RunConfig, apply_overrides, config_hash, config_to_toml, load_config
from .distributed import ProcessGroup
from .errors import ConfigError, DataError, OvssError
from .method import MethodContext, check_prediction, params_hash
from .metrics import confusion_matrix, image_scores
from .plan import Chunk, DatasetInfo, MethodInfo, Plan, ShardInfo, Unit, build_plan, conditions, dataset_info, resolve_shard
from .progress import Progress
from .registry import BACKENDS, CORRUPTIONS, DATASETS, METHODS, REGISTRIES, import_plugin_modules
from .store import (
    COMPLETE, FAILED, PARTIAL, RunDir, atomic_write_text, collect, encode_conf, finalize_unit, git_sha,
    new_chunk_state, now_iso, versions, write_json,
)  # fmt: skip

log = logging.getLogger(__name__)

IGNORE_INDEX = 255  # the default; a dataset may say otherwise (``ignore_index``, 65535 for uint16 TIF labels)


class Terminated(BaseException):
    """SIGTERM arrived (Slurm pre-emption, ``kill``): checkpoint and stop."""


@dataclass
class RunResult:
    """Outcome of :func:`run` in this process.

    Attributes:
        exit_code: 0 ok, 1 when a unit failed.
        run_dir: the run directory.
        statuses: unit_key -> "complete" | "failed" | None (waiting for other shards); only filled by
            the process that finalised (every process outside torchrun, rank 0 under it).
        predict_calls: label -> number of ``predict`` calls on evaluated images made by this process
            (the untimed warm-up calls are not counted).
        images_loaded: images this process loaded and corrupted.
        paths: the collected CSV files (empty when this process did not collect).
    """

    exit_code: int
    run_dir: Path
    plan: Plan
    statuses: dict[str, str | None] = field(default_factory=dict)
    predict_calls: dict[str, int] = field(default_factory=dict)
    images_loaded: int = 0
    paths: dict[str, Path] = field(default_factory=dict)


# -- entry points -----------------------------------------------------------------------------------


def cli_run(args: Any) -> int:
    """``ovss-bench run``: load plugins and the config, apply the flags, run this shard."""
    shard = resolve_shard(getattr(args, "shard", None))
    load_plugins(getattr(args, "plugins", None) or [])
    cfg = load_config(args.config)
    cfg = apply_overrides(
        cfg, methods=args.methods, datasets=args.datasets, corruptions=args.corruptions,
        severities=args.severities, seeds=args.seeds, limit=args.limit, out=args.out,
        data_root=args.data_root, checkpoint=args.checkpoint, device=args.device, no_clean=args.no_clean,
    )  # fmt: skip
    run_over = {}
    if getattr(args, "workers", None) is not None:
        if args.workers < 0:
            raise ConfigError("--workers must be >= 0")
        run_over["workers"] = args.workers
    if getattr(args, "save_preds", None) is not None:
        if args.save_preds < 0:
            raise ConfigError("--save-preds must be >= 0")
        run_over["save_preds"] = args.save_preds
    if args.limit is not None and args.limit < 0:
        raise ConfigError("--limit must be >= 0 (0 = whole split)")
    if run_over:
        cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, **run_over))
    try:
        res = run(cfg, shard=shard, force=bool(args.force))
    except Terminated:
        print("ovss-bench run: terminated; progress is checkpointed, rerun the same command to resume", file=sys.stderr)
        return 143
    if cfg.report.auto and res.paths and res.statuses and all(res.statuses.values()):
        write_report(res.run_dir)
    return res.exit_code


def write_report(run_dir: Path) -> Path | None:
    """Build RUN_DIR/report after a finished run; a report problem never fails the run itself."""
    from .report import build_report

    try:
        path = build_report([run_dir])
    except Exception as exc:  # the results are safe on disk; say how to retry
        log.warning("report not written (%s: %s); run `ovss-bench report %s`", type(exc).__name__, exc, run_dir)
        return None
    log.info("report: %s", path)
    return path


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


# -- the loader -------------------------------------------------------------------------------------


def _identity(x: Any) -> Any:
    return x


class _Items:
    """Map-style dataset over (chunk, image index) work items; loads and corrupts in the workers."""

    def __init__(self, items: list[tuple[int, int]], chunks: dict[int, Chunk], datasets: dict[str, Any], cache: Any,
                 fingerprints: dict[str, str] | None = None):  # fmt: skip
        self.items = items
        self.chunks = chunks
        self.datasets = datasets
        self.cache = cache
        self.fingerprints = fingerprints or {}

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[int, str, np.ndarray, np.ndarray, float]:
        """(item index, image_id, image, label, seconds spent loading and corrupting it)."""
        chunk = self.chunks[self.items[i][0]]
        t0 = time.perf_counter()
        image_id, image, label = load_item(self.datasets[chunk.dataset], chunk, self.items[i][1], self.cache,
                                           self.fingerprints.get(chunk.dataset))  # fmt: skip
        return i, image_id, image, label, time.perf_counter() - t0


def load_item(
    ds: Any, chunk: Chunk, idx: int, cache: Any = None, fingerprint: str | None = None
) -> tuple[str, np.ndarray, np.ndarray]:
    """Image ``idx`` of ``ds`` under the chunk's condition: (image_id, image uint8 HxWx3, label HxW).

    The corruption seed is ``image_seed(run seed, dataset, image_id, corruption, severity)``; a
    corruption cache, when configured and holding the image, gives the same pixels without the cost.
    """
    from .corruptions import corrupt_pair, image_seed

    image_id, image, label = ds[idx]
    image_id = str(image_id)
    image = np.asarray(image)
    label = np.asarray(label)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise DataError(f"dataset {chunk.dataset!r}: image {image_id} is {image.dtype} {image.shape}, expected uint8 HxWx3 RGB")
    if label.shape != image.shape[:2]:
        raise DataError(f"dataset {chunk.dataset!r}: image {image_id} has label shape {label.shape} != image {image.shape[:2]}")
    cond = chunk.condition
    if cond.is_clean:
        return image_id, image, label
    if cache is not None:
        hit = cache.get(chunk.dataset, image_id, cond.corruption, cond.severity, cond.seed, fingerprint=fingerprint)
        if hit is not None:  # the cache stores a label only for corruptions that move pixels
            return image_id, np.asarray(hit[0]), label if hit[1] is None else np.asarray(hit[1])
    seed = image_seed(cond.seed, chunk.dataset, image_id, cond.corruption, cond.severity)
    image, label = corrupt_pair(image, label, cond.corruption, cond.severity, seed)
    return image_id, image, label


def open_cache(path: str) -> Any:
    """The corruption cache at ``path``, or None (not configured, or the cache module is missing)."""
    if not path:
        return None
    try:
        from .corruptions.cache import CorruptionCache
    except ImportError:
        log.warning("[corruptions] cache = %r, but this install has no corruption cache module; corrupting on the fly", path)
        return None
    return CorruptionCache(path)


# -- per (unit, chunk) state ------------------------------------------------------------------------


@dataclass
class _Slot:
    """One unit's work on one chunk: its checkpoint dict plus the running sum on the device."""

    unit: Unit
    method_idx: int
    state: dict[str, Any]
    conf: Any  # int64 [C, C]: a torch tensor on an accelerator, a numpy array on the CPU (see _Runner.on_host)
    dirty: bool = False
    updating: bool = False
    seconds_here: float = 0.0  # timed predict seconds in this process (for the chunk line)
    timed_here: int = 0

    @property
    def key(self) -> str:
        return self.unit.unit_key

    @property
    def open(self) -> bool:
        return self.state["status"] == PARTIAL


def _plain(v: Any) -> Any:
    """JSON-friendly copy of a stats value (tensors and numpy become numbers or lists)."""
    if hasattr(v, "tolist"):
        return v.tolist()
    if isinstance(v, (list, tuple, set)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (bool, int, float, str)) or v is None:
        return v
    return str(v)


def label_values(label: np.ndarray) -> np.ndarray:
    """Sorted distinct values of a label map (int64 [K]); a bincount for the usual uint8 maps, which is
    several times faster than ``np.unique`` at 1024x2048."""
    if label.dtype in (np.uint8, np.uint16):
        return np.flatnonzero(np.bincount(label.ravel())).astype(np.int64)
    return np.unique(label).astype(np.int64)


def image_row(image_id: str, idx: int, conf_img: np.ndarray, stats: dict[str, Any], present: np.ndarray) -> dict[str, Any]:
    """Per-image row: the method's stats, then image_id, index, pixel_acc, miou (and active-set numbers).

    ``active`` (label ids kept by the method) gives ``active_size`` and ``active_recall`` = share of the
    ground-truth classes present in the label (ignore excluded) that are in ``active`` (NaN when the
    label has no class).
    """
    row = {str(k): _plain(v) for k, v in (stats or {}).items()}
    if "active" in row and row["active"] is not None:
        active = row["active"] if isinstance(row["active"], list) else [row["active"]]
        act = {int(a) for a in active}
        row["active_size"] = len(act)
        row["active_recall"] = float(np.mean([int(c) in act for c in present])) if len(present) else float("nan")
    row.update(image_id=image_id, index=idx, **image_scores(conf_img))
    return row


# -- the run ----------------------------------------------------------------------------------------


def run(cfg: RunConfig, shard: ShardInfo | None = None, force: bool = False, tty: bool | None = None) -> RunResult:
    """Run this process's shard of ``cfg``'s plan into ``cfg.out_dir``; finalise and collect at the end.

    Args:
        cfg: a validated config (flags already applied).
        shard: which chunks to run (default: all).
        force: recompute units even when they are finished.
        tty: force the progress display mode (None = detect).
    """
    shard = shard or ShardInfo()
    rd = RunDir(cfg.out_dir)
    rd.ensure_writable()
    group = ProcessGroup(shard)
    try:
        return _Runner(cfg, rd, shard, group, force, tty).execute()
    finally:
        group.close()


class _Runner:
    def __init__(self, cfg: RunConfig, rd: RunDir, shard: ShardInfo, group: ProcessGroup, force: bool, tty: bool | None):
        import torch

        self.torch = torch
        self.cfg = cfg
        self.rd = rd
        self.shard = shard
        self.group = group
        self.force = force
        self.tty = tty
        if cfg.run.threads > 0:
            torch.set_num_threads(cfg.run.threads)
        self.device = resolve_device(cfg.run.device, shard)
        self.dtype = resolve_dtype(cfg.run.dtype, self.device)
        self.tdevice = torch.device(self.device)
        if self.tdevice.type == "cuda":  # a bare "cuda" inside methods then means this rank's GPU
            torch.cuda.set_device(self.tdevice)
        self.device_desc = device_description(self.device)
        # On the CPU the confusion matrix is counted with numpy (same int64 counts): on an idle machine
        # torch and numpy are within ~1.5x of each other, but torch's multi-threaded kernels slowed down
        # ~10x when the cores were shared with other work, and numpy's single thread did not
        # (benchmarks/bench_harness.py). On an accelerator the counts stay on the device.
        self.on_host = self.tdevice.type == "cpu"
        self.prefix = f"[rank {shard.rank}] " if shard.distributed else (f"[shard {shard.k}/{shard.n}] " if shard.n > 1 else "")
        self.predict_calls: dict[str, int] = {}
        self.touched: set[str] = set()
        self.failed_here: set[str] = set()
        self.setup_seconds: dict[tuple[str, str], float] = {}
        self.setup_errors: dict[tuple[str, str], str] = {}
        self._set_up_for: dict[int, str] = {}
        self._warm: set[tuple[int, str]] = set()  # (method index, dataset) warmed up in this process
        self._resolved: dict[tuple[int, str], Any] = {}
        self.stop = _DeferredStop(install=False)
        self.meta_common = {
            "device": self.device_desc, "threads": torch.get_num_threads(), "versions": versions(),
            "git_sha": git_sha(), "config_hash": config_hash(cfg),
        }  # fmt: skip

    # -- construction ------------------------------------------------------------------------------
    def _datasets(self) -> tuple[dict[str, Any], list[DatasetInfo], dict[str, str]]:
        dsets, infos, roots = {}, [], {}
        for name in self.cfg.datasets.names:
            cls = DATASETS.get(name)
            root = self.cfg.datasets.roots.get(name) or str(Path(self.cfg.data.root) / getattr(cls, "default_root", ""))
            opts = dict(self.cfg.datasets.options.get(name, {}))
            try:
                ds = cls(root=root, vocab=self.cfg.datasets.vocab.get(name), **opts)
            except TypeError as exc:
                raise ConfigError(f"[datasets.options.{name}]: {exc}") from exc
            dsets[name] = ds
            roots[name] = root
            infos.append(dataset_info(name, ds, self.cfg.run.limit, opts))
            if infos[-1].n_images == 0:
                log.warning("%sdataset %s has no images under %s", self.prefix, name, root)
        return dsets, infos, roots

    def _methods(self) -> tuple[list[Any], list[MethodInfo], Any]:
        objs, specs = [], []
        for spec in self.cfg.methods:
            cls = METHODS.get(spec.name)
            try:
                obj = cls(**spec.params)
            except OvssError:
                raise
            except Exception as exc:
                raise OvssError(f"method {spec.display!r}: constructing it failed: {type(exc).__name__}: {exc}") from exc
            objs.append(obj)
            specs.append(spec)
        backend = None
        if any(getattr(o, "needs_backend", False) for o in objs):
            bcls = BACKENDS.get(self.cfg.backend.name)
            kwargs: dict[str, Any] = dict(
                checkpoint=self.cfg.backend.checkpoint, device=self.device, dtype=self.dtype,
                allow_download=self.cfg.backend.allow_download,
            )  # fmt: skip
            if self.cfg.backend.numerics != "auto":  # a plugin backend need not know the key unless it is set
                kwargs["numerics"] = self.cfg.backend.numerics
            backend = bcls(**kwargs)
        infos = []
        for spec, obj in zip(specs, objs, strict=True):
            version = str(getattr(obj, "version", "1"))
            params = getattr(obj, "params", spec.params)
            uses = backend is not None and getattr(obj, "needs_backend", False)
            infos.append(MethodInfo(
                label=spec.display, name=spec.name, version=version, params_hash=params_hash(spec.name, version, params),
                backend=self.cfg.backend.name if uses else "none",
                checkpoint=str(getattr(backend, "identity", self.cfg.backend.checkpoint)) if uses else "none",
            ))  # fmt: skip
        return objs, infos, backend

    def _write_provenance(self, plan: Plan, roots: dict[str, str], backend: Any) -> None:
        atomic_write_text(self.rd.root / "config.toml", config_to_toml(self.cfg), durable=False)
        manifest = {
            **self.meta_common, "dtype": self.dtype, "device_spec": self.device, "written_at": now_iso(),
            "shard": [self.shard.k, self.shard.n], "world_size": self.shard.world_size,
            "backend": _backend_manifest(self.cfg.backend.name, backend) if backend else None,
            "datasets": {d.name: {"root": roots[d.name], "fingerprint": d.fingerprint, "vocab_hash": d.vocab_hash,
                                  "n_images": d.n_images, "limit": d.limit} for d in plan.datasets},
        }  # fmt: skip
        write_json(self.rd.root / "manifest.json", manifest, durable=False)
        write_json(self.rd.root / "plan.json", {
            "config_hash": self.meta_common["config_hash"], "chunk_size": self.cfg.run.chunk_size,
            "units": [{"unit_key": u.unit_key, **u.to_dict()} for u in plan.units.values()],
        }, durable=False)  # fmt: skip

    # -- main --------------------------------------------------------------------------------------
    def execute(self) -> RunResult:
        cfg = self.cfg
        datasets, dinfos, roots = self._datasets()
        methods, minfos, backend = self._methods()
        self.methods, self.backend, self.datasets = methods, backend, datasets
        conds = conditions(cfg.corruptions.names, cfg.corruptions.severities, cfg.run.seeds, cfg.corruptions.clean)
        plan = build_plan(minfos, dinfos, conds, cfg.run.chunk_size, self.dtype, clean_only=cfg.corruptions.clean_only)
        self.plan = plan
        for name in cfg.corruptions.names:  # import before the workers fork, so each does not import again
            CORRUPTIONS.get(name)
        self._write_provenance(plan, roots, backend)
        my_chunks = plan.shard(self.shard.k, self.shard.n)
        if self.force:
            for c in my_chunks:
                for u in plan.units_of_chunk(c):
                    self.rd.forget(u.unit_key, [c])
            for u in plan.units.values():
                self.rd.unit_path(u.unit_key).unlink(missing_ok=True)
        complete_at_start = {k for k in (u.unit_key for u in plan.units.values()) if self.rd.unit_status(k) == COMPLETE}
        pending = self._scan(my_chunks, complete_at_start)
        n_units = len(plan.units)
        log.info("%splan: %d unit(s), %d chunk(s); this process: %d chunk(s), %d to do; device %s (%s), %s, %d thread(s)",
                 self.prefix, n_units, len(plan.chunks), len(my_chunks), len(pending), self.device, self.device_desc,
                 self.dtype, self.meta_common["threads"])  # fmt: skip
        images_loaded = self._loop(my_chunks, pending)
        # every rank is done with its chunks before rank 0 merges them (no-op outside torchrun)
        self.group.barrier()
        result = RunResult(exit_code=0, run_dir=self.rd.root, plan=plan, predict_calls=dict(self.predict_calls),
                           images_loaded=images_loaded)  # fmt: skip
        if not self.group.is_leader:
            result.exit_code = 1 if self.failed_here else 0
            return result
        chunks_by_cond: dict[tuple[str, Any], list[Chunk]] = {}
        for c in plan.chunks:
            chunks_by_cond.setdefault((c.dataset, c.condition), []).append(c)
        for u in plan.units.values():
            k = u.unit_key
            if k in complete_at_start and k not in self.touched:
                result.statuses[k] = COMPLETE
            else:
                result.statuses[k] = finalize_unit(self.rd, u, chunks_by_cond.get((u.dataset, u.condition), []),
                                                   force=k in self.touched)  # fmt: skip
        result.paths = collect(self.rd.root)
        st = list(result.statuses.values())
        n_ok, n_fail = st.count(COMPLETE), st.count(FAILED)
        waiting = len(st) - n_ok - n_fail
        log.info("%s%d/%d unit(s) complete, %d failed%s; results in %s", self.prefix, n_ok, len(st), n_fail,
                 f", {waiting} waiting for other shards" if waiting else "", result.paths["results"])  # fmt: skip
        if n_fail:
            for u in plan.units.values():
                if result.statuses[u.unit_key] == FAILED:
                    rec = self.rd.read_unit(u.unit_key) or {}
                    log.error("%sFAILED %s on %s %s-s%d seed %d at image %s: %s", self.prefix, u.label, u.dataset,
                              u.corruption, u.severity, u.seed, rec.get("failed_image"), rec.get("error"))  # fmt: skip
        result.exit_code = 1 if n_fail else 0
        return result

    def _scan(self, my_chunks: list[Chunk], complete_units: set[str]) -> dict[int, list[_Slot]]:
        """Open (unit, chunk) slots of this shard, restored from their checkpoints where present."""
        torch = self.torch
        pending: dict[int, list[_Slot]] = {}
        ncls = {name: len(ds.classes) for name, ds in self.datasets.items()}
        from .store import decode_conf

        for c in my_chunks:
            slots = []
            for mi, u in enumerate(self.plan.units_of_chunk(c)):
                if u.unit_key in complete_units:
                    continue
                st = self.rd.read_chunk(u.unit_key, c)
                if st is not None and st["status"] == COMPLETE:
                    continue
                if st is None:
                    st = new_chunk_state(u, c, ncls[c.dataset])
                elif st["status"] == FAILED:  # a rerun retries from the image that failed
                    st.update(status=PARTIAL, error="", failed_image="")
                for k in ("pipeline_seconds", "data_seconds"):  # older checkpoints did not time these
                    st.setdefault(k, float("nan"))
                if st["next"] >= c.stop:  # stopped after its last image, before the chunk was closed
                    st.update(status=COMPLETE, updated_at=now_iso())
                    self.rd.write_chunk(u.unit_key, c, st)
                    self.touched.add(u.unit_key)
                    continue
                conf = decode_conf(st["conf"])
                if not self.on_host:
                    conf = torch.as_tensor(conf, dtype=torch.int64, device=self.tdevice)
                slots.append(_Slot(unit=u, method_idx=mi, state=st, conf=conf))
            if slots:
                pending[c.index] = slots
        return pending

    def _loop(self, my_chunks: list[Chunk], pending: dict[int, list[_Slot]]) -> int:
        from torch.utils.data import DataLoader

        chunk_by_index = {c.index: c for c in my_chunks}
        items = [
            (c.index, i)
            for c in my_chunks
            if c.index in pending
            for i in range(min(s.state["next"] for s in pending[c.index]), c.stop)
        ]
        if not items:
            return 0
        workers = self.cfg.run.workers
        loader = DataLoader(
            _Items(items, chunk_by_index, self.datasets, open_cache(self.cfg.corruptions.cache),
                   {d.name: d.fingerprint for d in self.plan.datasets}),
            batch_size=None, shuffle=False, num_workers=workers, collate_fn=_identity,
            prefetch_factor=2 if workers else None,
        )  # fmt: skip
        progress = Progress(len(items), prefix=self.prefix, tty=self.tty)
        cur: Chunk | None = None
        slots: list[_Slot] = []
        self._last_ck, self._since_ck = time.monotonic(), 0
        batches = iter(loader)  # starts the workers before our signal handlers exist (they keep the defaults)
        stop = self.stop = _DeferredStop()
        n = 0
        try:
            for i, image_id, image, label, data_s in batches:
                chunk = chunk_by_index[items[i][0]]
                if cur is None or chunk.index != cur.index:
                    if cur is not None:
                        self._finish_chunk(cur, slots, progress)
                    cur, slots = chunk, pending[chunk.index]
                    self._start_chunk(cur, slots)
                self._image(cur, slots, items[i][1], image_id, image, label, data_s)
                n += 1
                progress.advance(1, f"{cur.dataset} {cur.condition.tag}")
                self._maybe_checkpoint(cur, slots)
                stop.check()
            if cur is not None:
                self._finish_chunk(cur, slots, progress)
        except BaseException as exc:
            # Ctrl-C, SIGTERM, a loader worker killed with the job, a data error: each slot's state is
            # consistent at its own image boundary (a slot caught mid-update is left out), so keep
            # what was done since the last checkpoint
            if cur is not None:
                self._checkpoint(cur, slots)
            stop.restore()
            if stop.signum is not None and not isinstance(exc, (KeyboardInterrupt, Terminated)):
                raise stop.exception() from exc  # e.g. the loader's workers died of the same Ctrl-C
            raise
        finally:
            stop.restore()
            progress.close()
        return n

    # -- per chunk ---------------------------------------------------------------------------------
    def _start_chunk(self, chunk: Chunk, slots: list[_Slot]) -> None:
        for s in slots:
            if s.key in self.failed_here and s.open:  # failed earlier in this process: not worth more time
                s.state["status"] = "skipped"
        for mi in sorted({s.method_idx for s in slots if s.open}):
            self._setup(mi, chunk.dataset)
        for s in slots:
            if not s.open:
                continue
            err = self.setup_errors.get((self.plan.methods[s.method_idx].label, chunk.dataset))
            if err is not None:
                self._fail(chunk, s, "(setup)", err)
                continue
            s.state["setup_seconds"] = max(
                [v for v in (s.state.get("setup_seconds"), self.setup_seconds.get((s.unit.label, chunk.dataset)))
                 if v is not None and not math.isnan(v)] or [float("nan")]
            )  # fmt: skip
            s.state["meta"] = {**self.meta_common, "params": _plain(self._resolved[(s.method_idx, chunk.dataset)]),
                               "class_names": list(self.datasets[chunk.dataset].class_names)}  # fmt: skip

    def _setup(self, mi: int, dataset: str) -> None:
        if self._set_up_for.get(mi) == dataset:
            return
        self._set_up_for[mi] = dataset
        m, label = self.methods[mi], self.plan.methods[mi].label
        ds = self.datasets[dataset]
        ctx = MethodContext(
            vocabulary=[list(a) for a in ds.classes], bg_idx=ds.bg_idx, prob_thd=float(ds.prob_thd), dataset=dataset,
            device=self.device, dtype=self.dtype, backend=self.backend if getattr(m, "needs_backend", False) else None,
            class_names=list(ds.class_names),
        )  # fmt: skip
        try:
            self._sync(m)
            t0 = time.perf_counter()
            with self._autocast():
                m.setup(ctx)
            self._sync(m)
            self.setup_seconds[(label, dataset)] = time.perf_counter() - t0
            resolved = m.resolved_params() if hasattr(m, "resolved_params") else getattr(m, "params", {})
            self._resolved[(mi, dataset)] = resolved
        except Exception as exc:
            log.debug("setup of %s on %s failed", label, dataset, exc_info=True)
            self.setup_errors[(label, dataset)] = _one_line(exc)
            self._resolved[(mi, dataset)] = getattr(m, "params", {})

    def _finish_chunk(self, chunk: Chunk, slots: list[_Slot], progress: Progress) -> None:
        parts = []
        for s in slots:
            if s.open and s.state["next"] >= chunk.stop:
                s.state["status"] = COMPLETE
                s.dirty = True
            if s.state["status"] == COMPLETE and s.timed_here:
                parts.append(f"{s.unit.label} {s.timed_here / s.seconds_here:.2f} img/s")
            elif s.state["status"] == COMPLETE:
                parts.append(f"{s.unit.label} done")
            elif s.state["status"] == FAILED:
                parts.append(f"{s.unit.label} FAILED")
        self._checkpoint(chunk, slots)
        progress.line(f"chunk {chunk.index} {chunk.dataset} {chunk.condition.tag} images {chunk.start}-{chunk.stop}: "
                      + (", ".join(parts) or "nothing to do"))  # fmt: skip

    def _maybe_checkpoint(self, chunk: Chunk, slots: list[_Slot]) -> None:
        self._since_ck += 1
        every = self.cfg.run.checkpoint_images
        if (every and self._since_ck >= every) or time.monotonic() - self._last_ck >= self.cfg.run.checkpoint_seconds:
            self._checkpoint(chunk, slots)

    def _checkpoint(self, chunk: Chunk, slots: list[_Slot]) -> None:
        """Write every changed slot of ``chunk`` (each file is self-consistent: sums up to ``next``)."""
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB
        for s in slots:
            if not s.dirty or s.updating or s.state["status"] not in (PARTIAL, COMPLETE, FAILED):
                continue
            s.state["conf"] = encode_conf(s.conf if self.on_host else s.conf.cpu().numpy())
            old = s.state.get("peak_rss_mb")
            s.state["peak_rss_mb"] = rss_mb if old is None or math.isnan(old) else max(old, rss_mb)
            s.state["updated_at"] = now_iso()
            self.rd.write_chunk(s.key, chunk, s.state)
            self.touched.add(s.key)
            s.dirty = False
        self._last_ck, self._since_ck = time.monotonic(), 0

    def _fail(self, chunk: Chunk, s: _Slot, image_id: str, error: str) -> None:
        s.state.update(status=FAILED, error=error, failed_image=image_id)
        s.dirty = True
        self.failed_here.add(s.key)
        log.error("%sFAILED %s on %s %s image %s: %s", self.prefix, s.unit.label, chunk.dataset, chunk.condition.tag,
                  image_id, error)  # fmt: skip
        self._checkpoint(chunk, [s])

    # -- per image ---------------------------------------------------------------------------------
    def _image(self, chunk: Chunk, slots: list[_Slot], idx: int, image_id: str, image: np.ndarray, label: np.ndarray,
               data_seconds: float = float("nan")) -> None:
        """Every open slot's method predicts on ``image``; ``data_seconds`` = its loading + corruption time.

        The methods take turns going first (the order rotates with the image index): whichever method
        runs while the loader's workers refill their queue shares the cores with them, so a fixed order
        would make one method's speed depend on its place in the list (benchmarks/bench_timing_order.py).
        """
        torch = self.torch
        ds = self.datasets[chunk.dataset]
        ncls = len(ds.classes)
        ignore = int(getattr(ds, "ignore_index", IGNORE_INDEX))
        present = label_values(label)
        bad = present[(present != ignore) & ((present < 0) | (present >= ncls))]
        if bad.size:
            raise DataError(f"dataset {chunk.dataset!r}: image {image_id} has label values {bad.tolist()[:8]} outside "
                            f"[0, {ncls}) and {ignore}")
        present = present[present != ignore]
        label_t = label if self.on_host else torch.from_numpy(np.ascontiguousarray(label).astype(np.int64, copy=False)).to(self.tdevice)
        save_k = self.cfg.run.save_preds
        if save_k and idx < save_k:
            _save_png(self.rd.root / "samples" / chunk.dataset / chunk.condition.tag / f"{_safe(image_id)}.png", image)
        for s in rotated(slots, idx):
            if not s.open or idx < s.state["next"]:
                continue
            if self.stop.signum is not None:  # stopping: the remaining methods resume at this image
                break
            m = self.methods[s.method_idx]
            label_name = s.unit.label
            try:
                self._warm_up(s.method_idx, chunk.dataset, image)
                self.predict_calls[label_name] = self.predict_calls.get(label_name, 0) + 1
                inp = image.copy()  # a method that writes into its input must not change what the next one sees
                if self.tdevice.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(self.tdevice)
                self._sync(m)
                t0 = time.perf_counter()
                with torch.inference_mode(), self._autocast():
                    pred = m.predict(inp)
                self._sync(m)
                t1 = time.perf_counter()
                dt = t1 - t0
                stats = m.stats() if hasattr(m, "stats") else {}
                pred = check_prediction(pred, label.shape, ncls, label_name)
                pred = pred.cpu().numpy() if self.on_host else pred.to(self.tdevice)
                conf_img = confusion_matrix(pred, label_t, ncls, ignore_index=ignore)
                conf_np = conf_img if self.on_host else conf_img.cpu().numpy()
                row = image_row(image_id, idx, conf_np, stats, present)
                metric_s = time.perf_counter() - t1
            except Exception as exc:
                log.debug("predict of %s on %s failed", label_name, image_id, exc_info=True)
                self._fail(chunk, s, image_id, _one_line(exc))
                continue
            s.updating = True  # conf, rows and next change together; an async interrupt here skips the slot
            s.conf += conf_img
            s.state["rows"].append(row)
            s.state["next"] = idx + 1
            s.state["model_seconds"] += dt
            s.state["timed_images"] += 1
            s.state["pipeline_seconds"] += data_seconds + dt + metric_s
            s.state["data_seconds"] += data_seconds
            s.updating = False
            s.seconds_here += dt
            s.timed_here += 1
            if self.tdevice.type == "cuda":
                peak = torch.cuda.max_memory_allocated(self.tdevice) / 2**20
                old = s.state.get("peak_mem_mb")
                s.state["peak_mem_mb"] = peak if old is None or math.isnan(old) else max(old, peak)
            s.dirty = True
            if save_k and idx < save_k:
                _save_png(self.rd.root / "preds" / s.key / f"{_safe(image_id)}.png", np.asarray(pred.cpu() if hasattr(pred, "cpu") else pred))

    def _warm_up(self, mi: int, dataset: str, image: np.ndarray) -> None:
        """``warmup_calls`` untimed ``predict`` calls of method ``mi`` on the first image of ``dataset``
        it sees in this process (allocator, kernel selection, caches), so that every image is timed."""
        if (mi, dataset) in self._warm:
            return
        self._warm.add((mi, dataset))
        m = self.methods[mi]
        for _ in range(self.cfg.run.warmup_calls):
            with self.torch.inference_mode(), self._autocast():
                m.predict(image.copy())
        self._sync(m)

    def _sync(self, method: Any) -> None:
        if self.backend is not None and getattr(method, "needs_backend", False):
            self.backend.synchronize()
        if self.tdevice.type == "cuda":
            self.torch.cuda.synchronize(self.tdevice)

    def _autocast(self) -> Any:
        if self.dtype == "bf16":
            return self.torch.autocast(device_type=self.tdevice.type, dtype=self.torch.bfloat16)
        return contextlib.nullcontext()


# -- helpers ----------------------------------------------------------------------------------------


def rotated(items: list[Any], k: int) -> list[Any]:
    """``items`` starting at position ``k mod len``: image k's method order (each method goes first
    equally often over consecutive images)."""
    if not items:
        return []
    j = k % len(items)
    return items[j:] + items[:j]


def _backend_manifest(name: str, backend: Any) -> dict[str, Any]:
    """Backend provenance: name, identity, and the numerics and TF32 flags it runs with."""
    out: dict[str, Any] = {"name": name, "identity": getattr(backend, "identity", None)}
    report = getattr(backend, "numerics_report", None)
    if report is not None:
        out.update(report.to_dict())
    return out


def _one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())[:500]


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)[:200]


def _save_png(path: Path, arr: np.ndarray) -> None:
    """A label map (uint8, or uint16 beyond 255 classes) or an RGB image as PNG."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.asarray(arr)
    if a.ndim == 2:
        a = a.astype(np.uint8 if a.max(initial=0) < 256 else np.uint16)
    Image.fromarray(a).save(path)


class _DeferredStop:
    """SIGINT/SIGTERM handlers that let the current ``predict`` finish, so the state is checkpointed
    at an image boundary; a second signal stops at once. Inactive outside the main thread."""

    def __init__(self, install: bool = True) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}
        for sig in (signal.SIGINT, signal.SIGTERM) if install else ():
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                break

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            raise self.exception()
        self.signum = signum
        log.warning("%s: stopping after the current prediction and checkpointing (send it again to stop at once)",
                    signal.Signals(signum).name)  # fmt: skip

    def exception(self) -> BaseException:
        return Terminated() if self.signum == signal.SIGTERM else KeyboardInterrupt()

    def check(self) -> None:
        if self.signum is not None:
            raise self.exception()

    def restore(self) -> None:
        for sig, old in self._old.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(sig, old)
        self._old = {}
