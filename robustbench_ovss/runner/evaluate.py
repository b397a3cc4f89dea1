"""The per-image path: every open unit of a chunk predicts on each of its images, in one place.

For each chunk this process claims (:mod:`.claims`), the units still open on it become
:class:`Slot` s, restored from their checkpoints. A DataLoader's workers load and corrupt the images
ahead of the model (:mod:`.loading`); for each image, top to bottom in :meth:`Evaluator.image`:

1. check the label's values against the dataset's classes and ignore index;
2. for each open slot, the methods taking turns going first: warm the method up on the first image
   of a dataset (untimed), time ``predict`` (device synchronised), check the prediction against the
   contract, count its confusion matrix (int64, on the device) and its per-image row;
3. a method that raises fails its unit (error and image recorded) and the run goes on.

Each slot's :class:`~robustbench_ovss.state.ChunkState` is checkpointed every ``checkpoint_images``
images or ``checkpoint_seconds`` and at the end of the chunk. Why the numbers do not depend on how the
run is cut up: confusion matrices are sums of per-image int64 matrices (exact, order-free), per-image
rows are kept in image order inside a chunk, the corruption seed of an image is a hash of its identity
(never the loader position), and a checkpoint stores the next image's index together with the sums up
to it, in one atomically written file.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import math
import resource
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..config import RunConfig
from ..errors import DataError
from ..method import Method, MethodContext, check_prediction
from ..metrics import confusion_matrix, image_scores
from ..plan import Chunk, Plan, Unit
from ..progress import Progress
from ..provenance import now_iso
from ..state import ChunkState, ImageRow, Status, UnitMeta
from ..store import RunDir
from .claims import ChunkClaims
from .loading import LoadedImage, WorkItems, die_with_parent, identity, open_cache
from .outputs import PredictionSaver
from .signals import DeferredStop, Terminated

log = logging.getLogger("robustbench_ovss.runner")


@dataclass
class Slot:
    """One unit's work on one chunk in this process.

    Attributes:
        unit: the unit.
        method_idx: the unit's method, as an index into the run's methods.
        state: its checkpoint; on the CPU ``state.conf`` is the running sum itself.
        device_conf: the running int64 [C, C] sum on an accelerator (None on the CPU), copied into
            ``state.conf`` at each checkpoint.
        dirty: changed since the last checkpoint.
        updating: between the first and last field of an image's update (a checkpoint skips it then).
        skip: its unit failed earlier in this process; not worth more time here.
    """

    unit: Unit
    method_idx: int
    state: ChunkState
    device_conf: Any = None
    dirty: bool = False
    updating: bool = False
    skip: bool = False
    seconds_here: float = 0.0
    timed_here: int = 0

    @property
    def key(self) -> str:
        return self.unit.unit_key

    @property
    def open(self) -> bool:
        return self.state.is_open and not self.skip


@dataclass
class EvalResult:
    """What one process's evaluation did."""

    images_loaded: int = 0
    predict_calls: dict[str, int] = field(default_factory=dict)  # method label -> evaluated predicts
    touched: set[str] = field(default_factory=set)  # unit keys whose checkpoints this process wrote
    failed: set[str] = field(default_factory=set)  # unit keys that failed in this process
    held_elsewhere: list[Chunk] = field(default_factory=list)  # open chunks another live worker holds


def rotated(items: list[Any], k: int) -> list[Any]:
    """``items`` starting at position ``k mod len``: image k's method order (each method goes first
    equally often over consecutive images)."""
    if not items:
        return []
    j = k % len(items)
    return items[j:] + items[:j]


def label_values(label: np.ndarray) -> np.ndarray:
    """Sorted distinct values of a label map (int64 [K]); a bincount for the usual uint8 maps, which is
    several times faster than ``np.unique`` at 1024x2048."""
    if label.dtype in (np.uint8, np.uint16):
        return np.flatnonzero(np.bincount(label.ravel())).astype(np.int64)
    return np.unique(label).astype(np.int64)


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


def image_row(image_id: str, idx: int, conf_img: np.ndarray, stats: dict[str, Any], present: np.ndarray) -> ImageRow:
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


def one_line(exc: BaseException) -> str:
    """``Type: message`` on one line, at most 500 characters (for error columns and logs)."""
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:500]


class Evaluator:
    """Evaluates this process's chunks of a plan into the run directory.

    Args:
        cfg: the run's config.
        rd: the run directory.
        plan: the plan.
        methods, datasets, backend: the constructed objects (methods in plan order).
        device, dtype: resolved ("cpu", "cuda:0"; "fp32", "bf16").
        meta: provenance stamped on every checkpoint (device, threads, versions, git sha, config hash).
        claims: this process's chunk claims.
        roots: dataset -> the folder it is read from (named in the corruption cache's errors).
        prefix: text in front of every log line ("[shard 1/2] ").
        tty: progress display mode (None = detect).
    """

    def __init__(self, cfg: RunConfig, rd: RunDir, plan: Plan, methods: list[Method], datasets: dict[str, Any],
                 backend: Any, device: str, dtype: str, meta: UnitMeta, claims: ChunkClaims,
                 roots: dict[str, str] | None = None, prefix: str = "", tty: bool | None = None):  # fmt: skip
        import torch

        self.torch = torch
        self.cfg, self.rd, self.plan = cfg, rd, plan
        self.methods, self.datasets, self.backend = methods, datasets, backend
        self.device, self.dtype, self.tdevice = device, dtype, torch.device(device)
        self.meta, self.claims, self.prefix, self.tty = meta, claims, prefix, tty
        self.roots = dict(roots or {})
        # On the CPU the confusion matrix is counted with numpy (same int64 counts): torch's
        # multi-threaded kernels slowed down ~10x when the cores were shared with other work, numpy's
        # single thread did not (benchmarks/bench_harness.py). On an accelerator the counts stay there.
        self.on_host = self.tdevice.type == "cpu"
        self.saver = PredictionSaver(rd.root, cfg.run.save_preds)
        self.result = EvalResult()
        self.stop = DeferredStop(install=False)
        self.setup_seconds: dict[tuple[int, str], float] = {}
        self.setup_errors: dict[tuple[int, str], str] = {}
        self.resolved_params: dict[tuple[int, str], dict[str, Any]] = {}
        self._set_up_for: dict[int, str] = {}
        self._warm: set[tuple[int, str]] = set()
        self._ready: dict[int, list[Slot]] = {}
        self._last_ck = time.monotonic()
        self._since_ck = 0

    # -- which slots are open ------------------------------------------------------------------------
    def open_slots(self, chunk: Chunk, complete_units: set[str]) -> list[Slot]:
        """The units still to evaluate on ``chunk``, restored from their checkpoints (read now)."""
        ncls = len(self.datasets[chunk.dataset].classes)
        slots = []
        for mi, u in enumerate(self.plan.units_of_chunk(chunk)):
            if u.unit_key in complete_units:
                continue
            st = self.rd.read_chunk(u.unit_key, chunk)
            if st is not None and st.status is Status.COMPLETE:
                continue
            if st is None:
                st = ChunkState.new(u.unit_key, chunk.start, chunk.stop, ncls)
            elif st.status is Status.FAILED:  # a rerun retries from the image that failed
                st.reopen()
            if st.done_evaluating:  # stopped after its last image, before the chunk was closed
                st.status, st.updated_at = Status.COMPLETE, now_iso()
                self.rd.write_chunk(st)
                self.result.touched.add(u.unit_key)
                continue
            slot = Slot(unit=u, method_idx=mi, state=st)
            if not self.on_host:
                slot.device_conf = self.torch.as_tensor(st.conf, dtype=self.torch.int64, device=self.tdevice)
            slots.append(slot)
        return slots

    def work_items(self, chunks: list[Chunk], complete_units: set[str]) -> Iterator[tuple[int, int]]:
        """The images to load, chunk by chunk: each chunk is claimed just before its first image is
        handed to the loader (so at most the loader's prefetch runs ahead of the claims)."""
        for c in chunks:
            if self.stop.requested:
                return
            if not self.claims.try_claim(c):
                self.result.held_elsewhere.append(c)
                continue
            slots = self.open_slots(c, complete_units)
            if not slots:
                self.claims.release(c)
                continue
            self._ready[c.index] = slots
            yield from ((c.index, i) for i in range(min(s.state.next for s in slots), c.stop))

    # -- the loop ------------------------------------------------------------------------------------
    def run(self, chunks: list[Chunk], complete_units: set[str], images_todo: int) -> EvalResult:
        """Evaluate ``chunks`` (this process's shard, in plan order); ``images_todo`` sizes the progress bar."""
        from torch.utils.data import DataLoader

        by_index = {c.index: c for c in chunks}
        workers = self.cfg.run.workers
        loader = DataLoader(
            WorkItems(by_index, self.datasets, open_cache(self.cfg.corruptions.cache, self.roots),
                      {d.name: d.fingerprint for d in self.plan.datasets}),
            sampler=_Lazy(lambda: self.work_items(chunks, complete_units)), batch_size=None, shuffle=False,
            num_workers=workers, collate_fn=identity, prefetch_factor=2 if workers else None,
            worker_init_fn=functools.partial(die_with_parent, os.getpid()) if workers else None,
        )  # fmt: skip
        progress = Progress(images_todo, prefix=self.prefix, tty=self.tty)
        cur: Chunk | None = None
        slots: list[Slot] = []
        batches = iter(loader)  # starts the workers before our signal handlers exist (they keep the defaults)
        stop = self.stop = DeferredStop()
        try:
            for loaded in batches:
                chunk = by_index[loaded.item[0]]
                if cur is None or chunk.index != cur.index:
                    if cur is not None:
                        self.finish_chunk(cur, slots, progress)
                    cur, slots = chunk, self._ready.pop(chunk.index)
                    self.start_chunk(cur, slots)
                loaded.raise_error()
                if self.claims_lost(cur, slots):
                    continue
                self.image(cur, slots, loaded)
                self.result.images_loaded += 1
                progress.advance(1, f"{cur.dataset} {cur.condition.tag}")
                self.maybe_checkpoint(cur, slots)
                stop.check()
            if cur is not None:
                self.finish_chunk(cur, slots, progress)
        except BaseException as exc:
            # Ctrl-C, SIGTERM, a loader worker killed with the job, a data error: each slot's state is
            # consistent at its own image boundary (a slot caught mid-update is left out), so keep
            # what was done since the last checkpoint
            if cur is not None:
                self.checkpoint(cur, slots)
            stop.restore()
            if stop.signum is not None and not isinstance(exc, (KeyboardInterrupt, Terminated)):
                raise stop.exception() from exc  # e.g. the loader's workers died of the same Ctrl-C
            raise
        finally:
            stop.restore()
            progress.close()
        return self.result

    def claims_lost(self, chunk: Chunk, slots: list[Slot]) -> bool:
        """True when another worker took ``chunk`` over (this process's lease expired while it stalled):
        its slots are dropped here, and what was checkpointed stays valid."""
        if self._since_ck or self.claims.holds(chunk):
            return False
        if all(not s.open for s in slots):
            return True
        log.warning("%schunk %d %s %s: taken over by another worker; leaving it to that worker", self.prefix,
                    chunk.index, chunk.dataset, chunk.condition.tag)  # fmt: skip
        for s in slots:
            s.skip, s.dirty = True, False
        return True

    # -- per chunk -----------------------------------------------------------------------------------
    def start_chunk(self, chunk: Chunk, slots: list[Slot]) -> None:
        """Set the chunk's methods up on its dataset; stamp provenance on its slots."""
        for s in slots:
            if s.key in self.result.failed and s.open:
                s.skip = True
        for mi in sorted({s.method_idx for s in slots if s.open}):
            self.setup(mi, chunk.dataset)
        for s in slots:
            if not s.open:
                continue
            err = self.setup_errors.get((s.method_idx, chunk.dataset))
            if err is not None:
                self.fail(chunk, s, "(setup)", err)
                continue
            mine = self.setup_seconds.get((s.method_idx, chunk.dataset), float("nan"))
            old = s.state.setup_seconds
            s.state.setup_seconds = mine if math.isnan(old) else (old if math.isnan(mine) else max(old, mine))
            s.state.meta = UnitMeta(
                device=self.meta.device, threads=self.meta.threads, versions=self.meta.versions,
                git_sha=self.meta.git_sha, config_hash=self.meta.config_hash,
                params=_plain(self.resolved_params[(s.method_idx, chunk.dataset)]),
                class_names=list(self.datasets[chunk.dataset].class_names),
            )  # fmt: skip

    def setup(self, mi: int, dataset: str) -> None:
        """Method ``mi``'s ``setup`` on ``dataset`` (once per switch of dataset), timed."""
        if self._set_up_for.get(mi) == dataset:
            return
        self._set_up_for[mi] = dataset
        m = self.methods[mi]
        ds = self.datasets[dataset]
        ctx = MethodContext(
            vocabulary=[list(a) for a in ds.classes], bg_idx=ds.bg_idx, prob_thd=float(ds.prob_thd), dataset=dataset,
            device=self.device, dtype=self.dtype, backend=self.backend if m.needs_backend else None,
            class_names=list(ds.class_names),
        )  # fmt: skip
        try:
            self.sync(m)
            t0 = time.perf_counter()
            with self.autocast():
                m.setup(ctx)
            self.sync(m)
            self.setup_seconds[(mi, dataset)] = time.perf_counter() - t0
            self.resolved_params[(mi, dataset)] = m.resolved_params()
        except Exception as exc:
            log.debug("setup of %s on %s failed", self.plan.methods[mi].label, dataset, exc_info=True)
            self.setup_errors[(mi, dataset)] = one_line(exc)
            self.resolved_params[(mi, dataset)] = dict(m.params)

    def finish_chunk(self, chunk: Chunk, slots: list[Slot], progress: Progress) -> None:
        """Close the slots that evaluated their last image, checkpoint, release the claim, log a line."""
        parts = []
        for s in slots:
            if s.open and s.state.done_evaluating:
                s.state.status = Status.COMPLETE
                s.dirty = True
            label = s.unit.label
            if s.state.status is Status.COMPLETE:
                parts.append(f"{label} {s.timed_here / s.seconds_here:.2f} img/s" if s.timed_here else f"{label} done")
            elif s.state.status is Status.FAILED:
                parts.append(f"{label} FAILED")
        self.checkpoint(chunk, slots)
        self.claims.release(chunk)
        progress.line(f"chunk {chunk.index} {chunk.dataset} {chunk.condition.tag} images {chunk.start}-{chunk.stop}: "
                      + (", ".join(parts) or "nothing to do"))  # fmt: skip

    def maybe_checkpoint(self, chunk: Chunk, slots: list[Slot]) -> None:
        self._since_ck += 1
        every = self.cfg.run.checkpoint_images
        if (every and self._since_ck >= every) or time.monotonic() - self._last_ck >= self.cfg.run.checkpoint_seconds:
            self.checkpoint(chunk, slots)

    def checkpoint(self, chunk: Chunk, slots: list[Slot]) -> None:
        """Write every changed slot of ``chunk`` (each file is self-consistent: sums up to ``next``),
        unless another worker has taken the chunk over."""
        self._last_ck, self._since_ck = time.monotonic(), 0
        changed = [s for s in slots if s.dirty and not s.updating and not s.skip]
        if not changed or not self.claims.holds(chunk):
            return
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB
        for s in changed:
            st = s.state
            if s.device_conf is not None:
                st.conf = s.device_conf.cpu().numpy()
            st.peak_rss_mb = rss_mb if math.isnan(st.peak_rss_mb) else max(st.peak_rss_mb, rss_mb)
            st.updated_at = now_iso()
            self.rd.write_chunk(st)
            self.result.touched.add(s.key)
            s.dirty = False

    def fail(self, chunk: Chunk, s: Slot, image_id: str, error: str) -> None:
        """Fail slot ``s``'s unit at ``image_id`` (recorded and checkpointed); the run goes on."""
        s.state.fail(image_id, error)
        s.dirty = True
        self.result.failed.add(s.key)
        log.error("%sFAILED %s on %s %s image %s: %s", self.prefix, s.unit.label, chunk.dataset, chunk.condition.tag,
                  image_id, error)  # fmt: skip
        self.checkpoint(chunk, [s])

    # -- per image -----------------------------------------------------------------------------------
    def image(self, chunk: Chunk, slots: list[Slot], loaded: LoadedImage) -> None:
        """Every open slot's method predicts on one loaded image (``loaded.seconds`` = its loading and
        corruption time, charged in full to each method's pipeline time).

        The methods take turns going first (the order rotates with the image index): whichever method
        runs while the loader's workers refill their queue shares the cores with them, so a fixed order
        would make one method's speed depend on its place in the list (benchmarks/bench_timing_order.py).
        """
        idx, image_id = loaded.item[1], loaded.image_id
        image, label = loaded.image, loaded.label
        assert image is not None and label is not None
        ds = self.datasets[chunk.dataset]
        ncls = len(ds.classes)
        ignore = int(ds.ignore_index)
        present = label_values(label)
        bad = present[(present != ignore) & ((present < 0) | (present >= ncls))]
        if bad.size:
            raise DataError(f"dataset {chunk.dataset!r}: image {image_id} has label values {bad.tolist()[:8]} outside "
                            f"[0, {ncls}) and {ignore}")  # fmt: skip
        present = present[present != ignore]
        label_t = label if self.on_host else self.torch.from_numpy(label.astype(np.int64)).to(self.tdevice)
        self.saver.sample(chunk, idx, image_id, image)
        for s in rotated(slots, idx):
            if not s.open or idx < s.state.next:
                continue
            if self.stop.requested:  # stopping: the remaining methods resume at this image
                break
            m = self.methods[s.method_idx]
            try:
                self.warm_up(s.method_idx, chunk.dataset, image)
                self.result.predict_calls[s.unit.label] = self.result.predict_calls.get(s.unit.label, 0) + 1
                pred, predict_s, stats = self.predict(m, image)
                t1 = time.perf_counter()
                pred = check_prediction(pred, label.shape, ncls, s.unit.label)
                pred = pred.cpu().numpy() if self.on_host else pred.to(self.tdevice)
                conf_img = confusion_matrix(pred, label_t, ncls, ignore_index=ignore)
                conf_np = conf_img if self.on_host else conf_img.cpu().numpy()
                row = image_row(image_id, idx, conf_np, stats, present)
                metric_s = time.perf_counter() - t1
            except Exception as exc:
                log.debug("predict of %s on %s failed", s.unit.label, image_id, exc_info=True)
                self.fail(chunk, s, image_id, one_line(exc))
                continue
            s.updating = True  # conf, rows and next change together; an async interrupt here skips the slot
            s.state.add_image(conf_np if self.on_host else None, row, idx, predict_s, loaded.seconds, metric_s)
            if s.device_conf is not None:
                s.device_conf += conf_img
            s.updating = False
            s.seconds_here += predict_s
            s.timed_here += 1
            if self.tdevice.type == "cuda":
                peak = self.torch.cuda.max_memory_allocated(self.tdevice) / 2**20
                old = s.state.peak_mem_mb
                s.state.peak_mem_mb = peak if math.isnan(old) else max(old, peak)
            s.dirty = True
            self.saver.prediction(s.key, idx, image_id, image, pred, label, ds)

    def predict(self, m: Method, image: np.ndarray) -> tuple[Any, float, dict[str, Any]]:
        """One timed ``predict`` (device synchronised around it) and the method's stats after it.

        The method gets a copy: one that writes into its input must not change what the next sees.
        """
        inp = image.copy()
        if self.tdevice.type == "cuda":
            self.torch.cuda.reset_peak_memory_stats(self.tdevice)
        self.sync(m)
        t0 = time.perf_counter()
        with self.torch.inference_mode(), self.autocast():
            pred = m.predict(inp)
        self.sync(m)
        return pred, time.perf_counter() - t0, m.stats()

    def warm_up(self, mi: int, dataset: str, image: np.ndarray) -> None:
        """``warmup_calls`` untimed ``predict`` calls of method ``mi`` on the first image of ``dataset``
        it sees in this process (allocator, kernel selection, caches), so that every image is timed."""
        if (mi, dataset) in self._warm:
            return
        self._warm.add((mi, dataset))
        m = self.methods[mi]
        for _ in range(self.cfg.run.warmup_calls):
            with self.torch.inference_mode(), self.autocast():
                m.predict(image.copy())
        self.sync(m)

    def sync(self, method: Method) -> None:
        if self.backend is not None and method.needs_backend:
            self.backend.synchronize()
        if self.tdevice.type == "cuda":
            self.torch.cuda.synchronize(self.tdevice)

    def autocast(self) -> Any:
        if self.dtype == "bf16":
            return self.torch.autocast(device_type=self.tdevice.type, dtype=self.torch.bfloat16)
        return contextlib.nullcontext()


class _Lazy:
    """A sampler over a generator made when the DataLoader starts iterating (it has no length)."""

    def __init__(self, make: Callable[[], Iterator[tuple[int, int]]]):
        self.make = make

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return self.make()
