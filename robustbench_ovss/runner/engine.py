"""One ``ovss-bench run`` process from start to end.

1. take the run directory (:mod:`.reuse`: resume, extend or refuse), remove temp files of killed writers;
2. build the datasets, methods, backend and plan (:mod:`.build`) and write the provenance files;
3. evaluate this process's chunks, claiming each one first (:mod:`.evaluate`, :mod:`.claims`), so that
   shards, torchrun ranks and extra workers started on the same directory split the work;
4. merge finished chunks into unit files, collect the tables and, once every unit of the plan is
   finished, write the report (:func:`finish`) - whichever worker finishes last does it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from ..collect import collect
from ..config import RunConfig, config_hash, config_to_toml
from ..distributed import ProcessGroup
from ..errors import ConfigError
from ..files import atomic_write_text, read_json, write_json
from ..plan import Chunk, Plan, ShardInfo
from ..provenance import git_sha, now_iso, versions
from ..state import Status, UnitMeta
from ..store import RunDir
from . import reuse
from .build import (
    Datasets, Methods, backend_manifest, build_datasets, build_methods, build_run_plan, device_description,
    resolve_device, resolve_dtype,
)  # fmt: skip
from .claims import ChunkClaims
from .evaluate import Evaluator

log = logging.getLogger("robustbench_ovss.runner")

FINALIZE = "finalize"  # the claim that serialises merging, collecting and reporting between workers


@dataclass
class RunResult:
    """Outcome of :func:`run` in this process.

    Attributes:
        exit_code: 0 ok (also when other workers still hold units), 1 when a unit failed.
        run_dir: the run directory.
        plan: this invocation's plan.
        statuses: unit_key -> COMPLETE | FAILED | None (still open: another shard or worker, or a
            rerun, finishes it); filled by the process that finalised (every process outside torchrun,
            rank 0 under it).
        predict_calls: method label -> ``predict`` calls on evaluated images in this process (warm-up
            calls are not counted).
        images_loaded: images this process loaded and corrupted.
        held_elsewhere: units with chunks that other live workers hold.
        collected: this process rebuilt the CSV tables.
        report: the report written at the end (None when not written here).
    """

    exit_code: int
    run_dir: Path
    plan: Plan
    statuses: dict[str, Status | None] = field(default_factory=dict)
    predict_calls: dict[str, int] = field(default_factory=dict)
    images_loaded: int = 0
    held_elsewhere: int = 0
    collected: bool = False
    report: Path | None = None

    @property
    def finished(self) -> bool:
        """Every unit of the plan is complete or failed."""
        return bool(self.statuses) and all(v is not None for v in self.statuses.values())


def run(cfg: RunConfig, shard: ShardInfo | None = None, force: bool = False, extend: bool = False,
        tty: bool | None = None) -> RunResult:  # fmt: skip
    """Run this process's part of ``cfg``'s plan into ``cfg.out_dir``; finalise and collect at the end.

    Args:
        cfg: a validated config (flags already applied).
        shard: which chunks to run (default: all).
        force: recompute this plan's units even when finished; over another config, replace the run
            directory's results.
        extend: allow units the run directory's config does not have (its config grows to the union).
        tty: force the progress display mode (None = detect).
    """
    import torch

    shard = shard or ShardInfo()
    rd = RunDir(cfg.out_dir)
    rd.ensure_writable()
    group = ProcessGroup(shard)
    claims = ChunkClaims(rd.claims_dir, cfg.run.lease_seconds)
    prefix = f"[rank {shard.rank}] " if shard.distributed else (f"[shard {shard.k}/{shard.n}] " if shard.n > 1 else "")
    try:
        if cfg.run.threads > 0:
            torch.set_num_threads(cfg.run.threads)
        device = resolve_device(cfg.run.device, shard)
        dtype = resolve_dtype(cfg.run.dtype, device)
        if torch.device(device).type == "cuda":  # a bare "cuda" inside methods then means this rank's GPU
            torch.cuda.set_device(torch.device(device))
        decision = _take_run_dir(rd, cfg, shard, group, force, extend)
        datasets = build_datasets(cfg)
        _check_data(rd, datasets, force, shard, group)
        methods = build_methods(cfg, device, dtype)
        plan = build_run_plan(cfg, datasets, methods, dtype)
        meta = UnitMeta(device=device_description(device), threads=torch.get_num_threads(), versions=versions(),
                        git_sha=git_sha(), config_hash=config_hash(cfg))  # fmt: skip
        if group.is_leader:
            _write_provenance(rd, cfg, decision, plan, datasets, methods, meta, device, dtype, shard)
        group.barrier()
        my_chunks = plan.shard(shard.k, shard.n)
        if force:
            for c in my_chunks:
                for u in plan.units_of_chunk(c):
                    rd.forget(u.unit_key, [c])
        complete_at_start = {u.unit_key for u in plan.units.values() if rd.unit_status(u.unit_key) is Status.COMPLETE}
        todo = [c for c in my_chunks if any(u.unit_key not in complete_at_start for u in plan.units_of_chunk(c))]
        log.info("%splan: %d unit(s), %d chunk(s); this process: %d chunk(s), %d to do; device %s (%s), %s, %d thread(s)",
                 prefix, len(plan.units), len(plan.chunks), len(my_chunks), len(todo), device, meta.device, dtype,
                 meta.threads)  # fmt: skip
        evaluator = Evaluator(cfg, rd, plan, methods.objects, datasets.objects, methods.backend, device, dtype, meta,
                              claims, datasets.roots, prefix, tty)  # fmt: skip
        claims.start()
        ev = evaluator.run(todo, complete_at_start, images_todo=sum(c.size for c in todo))
        group.barrier()  # every rank is done with its chunks before rank 0 merges them (no-op outside torchrun)
        result = RunResult(exit_code=1 if ev.failed else 0, run_dir=rd.root, plan=plan,
                           predict_calls=dict(ev.predict_calls), images_loaded=ev.images_loaded)  # fmt: skip
        held = {u.unit_key for c in ev.held_elsewhere for u in plan.units_of_chunk(c)}
        result.held_elsewhere = len(held - complete_at_start)
        if group.is_leader:
            finish(rd, cfg, plan, result, complete_at_start, ev.touched, claims, prefix)
        return result
    finally:
        claims.stop()
        group.close()


def _take_run_dir(rd: RunDir, cfg: RunConfig, shard: ShardInfo, group: ProcessGroup, force: bool,
                  extend: bool) -> reuse.Decision:  # fmt: skip
    decision = reuse.decide(rd, cfg, extend, force)
    if decision.kind == "replace":
        if shard.n > 1 and not group.active:
            raise ConfigError(f"{rd.root}: --force cannot replace a run directory's results from one shard; run once "
                              "without --shard to replace them, or use another --out DIR")  # fmt: skip
        if group.is_leader:
            reuse.clear_results(rd)
            rd.ensure_writable()
        group.barrier()
    elif decision.kind == "extend":
        log.info("%s: extending the run with %s", rd.root, ", ".join(decision.added))
    removed = rd.remove_stale_temp_files()
    if removed:
        log.info("%s: removed %d temp file(s) left by killed processes", rd.root, removed)
    return decision


def _check_data(rd: RunDir, datasets: Datasets, force: bool, shard: ShardInfo, group: ProcessGroup) -> None:
    changed = reuse.changed_datasets(rd, {d.name: d.fingerprint for d in datasets.infos})
    if not changed:
        return
    if not force or (shard.n > 1 and not group.active):
        raise ConfigError(f"{rd.root}: the files of dataset(s) {', '.join(changed)} changed since this run started "
                          "(fingerprint differs from manifest.json); use another --out DIR, or --force to replace "
                          "its results")  # fmt: skip
    if group.is_leader:
        reuse.clear_results(rd)
        rd.ensure_writable()
    group.barrier()


def _write_provenance(rd: RunDir, cfg: RunConfig, decision: reuse.Decision, plan: Plan, datasets: Datasets,
                      methods: Methods, meta: UnitMeta, device: str, dtype: str, shard: ShardInfo) -> None:  # fmt: skip
    """config.toml (the directory's config), plan.json (every unit it plans: this plan's and earlier
    invocations'), manifest.json (versions, device, dataset roots and fingerprints)."""
    import tomli_w

    if decision.kind != "resume" or not rd.config_path.exists():
        atomic_write_text(rd.config_path, tomli_w.dumps(decision.stored) if decision.kind == "extend"
                          else config_to_toml(cfg), durable=False)  # fmt: skip
    old = read_json(rd.plan_path) or {}
    units = {u["unit_key"]: u for u in old.get("units", [])} if decision.kind in ("resume", "extend") else {}
    before = len(units)
    units.update({u.unit_key: {"unit_key": u.unit_key, **u.to_dict()} for u in plan.units.values()})
    if len(units) != before or not rd.plan_path.exists():
        write_json(rd.plan_path, {"config_hash": meta.config_hash, "chunk_size": cfg.run.chunk_size,
                                  "units": list(units.values())}, durable=False)  # fmt: skip
    man = read_json(rd.root / "manifest.json") or {}
    known = man.get("datasets", {}) if decision.kind in ("resume", "extend") else {}
    ds_entries = {**known, **{d.name: {"root": datasets.roots[d.name], "fingerprint": d.fingerprint,
                                       "vocab_hash": d.vocab_hash, "n_images": d.n_images, "limit": d.limit}
                              for d in datasets.infos}}  # fmt: skip
    if man and ds_entries == man.get("datasets") and decision.kind == "resume":
        return  # the provenance of each unit is in its own file; the manifest describes the directory
    write_json(rd.root / "manifest.json", {
        "device": meta.device, "threads": meta.threads, "versions": meta.versions, "git_sha": meta.git_sha,
        "config_hash": meta.config_hash, "dtype": dtype, "device_spec": device, "written_at": now_iso(),
        "shard": [shard.k, shard.n], "world_size": shard.world_size,
        "backend": backend_manifest(cfg.backend.name, methods.backend) if methods.backend is not None else None,
        "datasets": ds_entries,
    }, durable=False)  # fmt: skip


def finish(rd: RunDir, cfg: RunConfig, plan: Plan, result: RunResult, complete_at_start: set[str], touched: set[str],
           claims: ChunkClaims, prefix: str = "") -> None:  # fmt: skip
    """Merge every finished unit, collect the tables, and write the report when the whole plan is done.

    Workers on one directory take turns here (the "finalize" claim), so the last one to finish sees
    every other worker's units and writes the report.
    """
    if not claims.wait_claim(FINALIZE, timeout=4 * claims.lease):
        log.warning("%sanother worker has been collecting %s for a long time; skipping the tables here", prefix, rd.root)
        return
    try:
        chunks_by_cond: dict[tuple[str, object], list[Chunk]] = {}
        for c in plan.chunks:
            chunks_by_cond.setdefault((c.dataset, c.condition), []).append(c)
        for u in plan.units.values():
            k = u.unit_key
            if k in complete_at_start and k not in touched:
                result.statuses[k] = Status.COMPLETE
            else:
                result.statuses[k] = rd.finalize_unit(u, chunks_by_cond.get((u.dataset, u.condition), []),
                                                      force=k in touched)  # fmt: skip
        collect(rd.root)
        result.collected = True
        st = list(result.statuses.values())
        n_ok, n_fail = st.count(Status.COMPLETE), st.count(Status.FAILED)
        waiting = len(st) - n_ok - n_fail
        more = ""
        if result.held_elsewhere:
            more = f", {result.held_elsewhere} held by other workers (they finish them)"
        elif waiting:
            more = f", {waiting} still open (other shards, or rerun the same command)"
        log.info("%s%d/%d unit(s) complete, %d failed%s; results in %s", prefix, n_ok, len(st), n_fail, more,
                 rd.root / "results.csv")  # fmt: skip
        for u in plan.units.values():
            if result.statuses[u.unit_key] is Status.FAILED:
                rec = rd.read_unit(u.unit_key)
                log.error("%sFAILED %s on %s %s-s%d seed %d at image %s: %s", prefix, u.label, u.dataset, u.corruption,
                          u.severity, u.seed, rec.failed_image if rec else "?", rec.error if rec else "?")  # fmt: skip
        if n_fail:
            result.exit_code = 1
        if cfg.report.auto and result.finished:
            result.report = write_report(rd.root)
    finally:
        claims.release_name(FINALIZE)


def write_report(run_dir: Path) -> Path | None:
    """Build RUN_DIR/report after a finished run; a report problem never fails the run itself."""
    from ..report import build_report

    try:
        path = build_report([run_dir])
    except Exception as exc:  # the results are safe on disk; say how to retry
        log.warning("report not written (%s: %s); run `ovss-bench report %s`", type(exc).__name__, exc, run_dir)
        return None
    log.info("report: %s", path)
    return path
