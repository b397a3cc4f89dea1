"""Plan: unit keys, clean-once, chunk order and shards (no torch, no files)."""

from __future__ import annotations

import dataclasses

import pytest

from robustbench_ovss.errors import ConfigError
from robustbench_ovss.plan import CLEAN, DatasetInfo, MethodInfo, build_plan, conditions, resolve_shard

M = [MethodInfo("a", "toy-color", "1", "p1"), MethodInfo("b", "toy-const", "1", "p2")]
D = [DatasetInfo("toy", "v1", "f1", "o1", n_images=7, limit=0), DatasetInfo("toy2", "v2", "f2", "o2", n_images=4, limit=0)]


def plan(**kw):
    conds = conditions(kw.get("corr", ["x", "y"]), kw.get("sev", [1, 3]), kw.get("seeds", [0, 1]), kw.get("clean", True))
    return build_plan(kw.get("methods", M), kw.get("datasets", D), conds, kw.get("chunk", 3), "fp32")


def test_clean_once_not_per_seed():
    conds = conditions(["x"], [1, 5], [0, 1, 2], clean=True)
    assert conds[0].corruption == CLEAN and conds[0].severity == 0 and conds[0].seed == 0
    assert sum(c.is_clean for c in conds) == 1
    assert len(conds) == 1 + 1 * 2 * 3
    assert not any(c.is_clean for c in conditions(["x"], [1], [0], clean=False))


def test_units_and_chunks():
    p = plan()
    assert len(p.units) == 2 * 2 * (1 + 2 * 2 * 2)
    # chunks: 3 + 3 + 1 images for toy (3 chunks), 3 + 1 for toy2 (2 chunks), per condition
    assert len(p.chunks) == 9 * 3 + 9 * 2
    assert [c.index for c in p.chunks] == list(range(len(p.chunks)))
    assert all(c.size <= 3 for c in p.chunks)
    for d in D:
        for cond in p.conditions:
            covered = sorted(i for c in p.chunks if c.dataset == d.name and c.condition == cond for i in range(c.start, c.stop))
            assert covered == list(range(d.n_images))
    assert len({u.unit_key for u in p.units.values()}) == len(p.units)


def test_unit_key_changes_with_every_field():
    u = next(iter(plan().units.values()))
    for f in dataclasses.fields(u):
        v = getattr(u, f.name)
        other = dataclasses.replace(u, **{f.name: v + 1 if isinstance(v, int) else f"{v}x"})
        assert other.unit_key != u.unit_key, f.name
    assert dataclasses.replace(u).unit_key == u.unit_key


def test_changed_param_gives_new_keys_only_for_that_method():
    p1 = plan()
    p2 = plan(methods=[M[0], dataclasses.replace(M[1], params_hash="p3")])
    k1 = {k: u.unit_key for k, u in p1.units.items()}
    k2 = {k: u.unit_key for k, u in p2.units.items()}
    assert all(k1[k] == k2[k] for k in k1 if k[0] == "a")
    assert all(k1[k] != k2[k] for k in k1 if k[0] == "b")


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_shards_are_disjoint_and_cover_the_plan(n):
    p = plan()
    parts = [p.shard(k, n) for k in range(1, n + 1)]
    idx = [c.index for part in parts for c in part]
    assert sorted(idx) == list(range(len(p.chunks)))
    assert all(c.index % n == k - 1 for k, part in enumerate(parts, 1) for c in part)


def test_resolve_shard():
    assert resolve_shard(None, {}) == resolve_shard((1, 1), {})
    s = resolve_shard((2, 3), {})
    assert (s.k, s.n, s.distributed) == (2, 3, False)
    s = resolve_shard(None, {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"})
    assert (s.k, s.n, s.local_rank, s.distributed) == (2, 2, 1, True)
    # a Slurm array task 2/3 running torchrun with 2 ranks: 6 disjoint shards in all
    got = {(resolve_shard((k, 3), {"RANK": str(r), "WORLD_SIZE": "2"}).k) for k in (1, 2, 3) for r in (0, 1)}
    assert got == set(range(1, 7))
    with pytest.raises(ConfigError):
        resolve_shard(None, {"RANK": "2", "WORLD_SIZE": "2"})
