"""The plan of a run (DESIGN §4): units, chunks and shards.

A *unit* is one row of results.csv: a method (with its params) on a dataset under one corruption,
severity and seed. Its ``unit_key`` hashes everything that can change its numbers, so a changed
parameter, vocabulary, dataset file, image limit, checkpoint or dtype never reuses stale results.

A *chunk* is a contiguous image range of one (dataset, corruption, severity, seed) condition; every
method of the plan runs on a chunk together, so each image is corrupted once. Chunks are listed in a
deterministic order (dataset, condition, image range) and shard K/N takes chunks i with
i % N == K - 1. Nothing here imports torch.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import ConfigError
from .hashing import stable_hash

CLEAN = "none"  # corruption name of clean units (severity 0, seed 0)

#: The fields that place a unit in the grid (one row of a results table per combination).
ROW_IDENTITY = ("label", "dataset", "corruption", "severity", "seed")


@dataclass(frozen=True)
class DatasetInfo:
    """What the plan needs to know about one constructed dataset.

    Attributes:
        name: registry name.
        vocab_hash: hash of the class alias lists, bg_idx and prob_thd the methods will see.
        fingerprint: the dataset's own hash of its split list and file sizes.
        options_hash: hash of the constructor options from ``[datasets.options.NAME]``.
        n_images: images evaluated (after ``limit``).
        limit: the run's limit (0 = whole split), recorded because it changes the numbers.
    """

    name: str
    vocab_hash: str
    fingerprint: str
    options_hash: str
    n_images: int
    limit: int


def dataset_info(name: str, ds: Any, limit: int, options: Mapping[str, Any] | None = None) -> DatasetInfo:
    """Build a :class:`DatasetInfo` from a constructed dataset (``len`` clipped to ``limit`` when > 0)."""
    n = len(ds)
    if limit > 0:
        n = min(n, limit)
    vocab = {"classes": [list(a) for a in ds.classes], "bg_idx": ds.bg_idx, "prob_thd": float(ds.prob_thd)}
    return DatasetInfo(
        name=name,
        vocab_hash=stable_hash(vocab),
        fingerprint=str(ds.fingerprint),
        options_hash=stable_hash(dict(options or {})),
        n_images=n,
        limit=limit,
    )


@dataclass(frozen=True)
class MethodInfo:
    """A configured method: display ``label``, registry ``name``, ``version``, ``params_hash``, and
    ``backend``/``checkpoint`` identity ("none" when the method does not use the shared backend)."""

    label: str
    name: str
    version: str
    params_hash: str
    backend: str = "none"
    checkpoint: str = "none"


@dataclass(frozen=True)
class Condition:
    """One (corruption, severity, seed); clean is ("none", 0, 0)."""

    corruption: str
    severity: int
    seed: int

    @property
    def is_clean(self) -> bool:
        return self.corruption == CLEAN

    @property
    def tag(self) -> str:
        return f"{self.corruption}-s{self.severity}-seed{self.seed}"


@dataclass(frozen=True)
class Unit:
    """One result row. ``unit_key`` is a hash of every field."""

    label: str
    method: str
    method_version: str
    params_hash: str
    dataset: str
    vocab_hash: str
    fingerprint: str
    options_hash: str
    limit: int
    n_images: int
    corruption: str
    severity: int
    seed: int
    backend: str
    checkpoint: str
    dtype: str

    @property
    def unit_key(self) -> str:
        return stable_hash(asdict(self), 16)

    @property
    def condition(self) -> Condition:
        return Condition(self.corruption, self.severity, self.seed)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Chunk:
    """Images [start, stop) of ``dataset`` under ``condition``; ``index`` = position in the full chunk list."""

    index: int
    dataset: str
    condition: Condition
    start: int
    stop: int

    @property
    def chunk_id(self) -> str:
        """File-name form of the image range, e.g. ``000050-000100``."""
        return f"{self.start:06d}-{self.stop:06d}"

    @property
    def size(self) -> int:
        return self.stop - self.start


@dataclass
class Plan:
    """Units and chunks of a run. ``units[(label, dataset, condition)]`` -> Unit."""

    units: dict[tuple[str, str, Condition], Unit]
    chunks: list[Chunk]
    methods: list[MethodInfo]
    datasets: list[DatasetInfo]
    conditions: list[Condition] = field(default_factory=list)

    def units_of_chunk(self, chunk: Chunk) -> list[Unit]:
        """Units (one per method, in method order) that a chunk contributes to."""
        return [self.units[(m.label, chunk.dataset, chunk.condition)] for m in self.methods]

    def chunks_of_unit(self, unit: Unit) -> list[Chunk]:
        return [c for c in self.chunks if c.dataset == unit.dataset and c.condition == unit.condition]

    def shard(self, k: int, n: int) -> list[Chunk]:
        """Chunks of shard ``k`` of ``n`` (1-based): those with index % n == k - 1."""
        return [c for c in self.chunks if c.index % n == k - 1]


def conditions(corruptions: Sequence[str], severities: Sequence[int], seeds: Sequence[int], clean: bool) -> list[Condition]:
    """Clean first (once, seed 0), then corruption x severity x seed in config order."""
    out = [Condition(CLEAN, 0, 0)] if clean else []
    out += [Condition(c, int(s), int(seed)) for c in corruptions for s in severities for seed in seeds]
    seen: set[Condition] = set()
    return [c for c in out if not (c in seen or seen.add(c))]


def build_plan(
    methods: Sequence[MethodInfo],
    datasets: Sequence[DatasetInfo],
    conds: Sequence[Condition],
    chunk_size: int,
    dtype: str,
    clean_only: Collection[str] = (),
) -> Plan:
    """Every unit and chunk of the grid, in a deterministic order (dataset, condition, image range).

    Datasets named in ``clean_only`` (real-condition sets such as ACDC) get the clean condition only.
    """
    units: dict[tuple[str, str, Condition], Unit] = {}
    chunks: list[Chunk] = []
    for d in datasets:
        for cond in conds:
            if d.name in clean_only and not cond.is_clean:
                continue
            for m in methods:
                units[(m.label, d.name, cond)] = Unit(
                    label=m.label, method=m.name, method_version=m.version, params_hash=m.params_hash,
                    dataset=d.name, vocab_hash=d.vocab_hash, fingerprint=d.fingerprint,
                    options_hash=d.options_hash, limit=d.limit, n_images=d.n_images,
                    corruption=cond.corruption, severity=cond.severity, seed=cond.seed,
                    backend=m.backend, checkpoint=m.checkpoint, dtype=dtype,
                )  # fmt: skip
            for start in range(0, d.n_images, chunk_size):
                chunks.append(Chunk(len(chunks), d.name, cond, start, min(start + chunk_size, d.n_images)))
    return Plan(units=units, chunks=chunks, methods=list(methods), datasets=list(datasets), conditions=list(conds))


# -- shards -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShardInfo:
    """Which part of the plan this process runs.

    Attributes:
        k, n: shard K of N (1-based) over the chunk list.
        rank, world_size, local_rank: torchrun's process coordinates (0, 1, 0 outside torchrun).
    """

    k: int = 1
    n: int = 1
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_shard(shard: tuple[int, int] | None, env: Mapping[str, str] | None = None) -> ShardInfo:
    """Combine ``--shard K/N`` with torchrun's RANK / WORLD_SIZE / LOCAL_RANK.

    Outside torchrun ``--shard`` is used as given (default 1/1). Under torchrun alone, rank r of W runs
    shard r+1/W. With both (a Slurm array of torchrun jobs), shard K/N is split again over the W
    ranks: the process runs shard (K-1)*W + r + 1 of N*W, so the union over all of them is the plan.
    """
    env = os.environ if env is None else env
    try:
        rank = int(env.get("RANK", "0"))
        world = int(env.get("WORLD_SIZE", "1"))
        local = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError as exc:
        raise ConfigError(f"RANK/WORLD_SIZE/LOCAL_RANK must be integers ({exc})") from exc
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"RANK={rank} WORLD_SIZE={world}: need 0 <= RANK < WORLD_SIZE")
    k, n = shard if shard is not None else (1, 1)
    if not 1 <= k <= n:
        raise ConfigError(f"--shard {k}/{n}: need 1 <= K <= N")
    return ShardInfo(k=(k - 1) * world + rank + 1, n=n * world, rank=rank, world_size=world, local_rank=local)
