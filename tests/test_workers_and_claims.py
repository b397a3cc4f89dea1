"""Several workers on one run directory: chunks claimed with leases, split between processes, taken
over when their owner is gone; the last worker collects."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pandas as pd
import pytest

from harness_plugins import toy
from harness_plugins.helpers import PLUGIN, assert_same_results, bench_cmd, subprocess_env, write_config
from robustbench_ovss.cli import main
from robustbench_ovss.files import host_name
from robustbench_ovss.plan import Chunk, Condition
from robustbench_ovss.runner.claims import ChunkClaims, chunk_claim_name

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _reset_toy():
    toy.ToyColour.calls = toy.ToyConst.calls = 0


def run(cfg, *flags):
    return main(["run", str(cfg), "--plugins", PLUGIN, *flags])


def fake_claim(folder, chunk, host, pid, age_s=0.0, gen=0):
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / f"{chunk_claim_name(chunk)}.{gen:06d}"
    p.write_text(json.dumps({"host": host, "pid": pid, "token": "other"}))
    t = time.time() - age_s
    os.utime(p, (t, t))
    return p


CLEAN0 = Chunk(0, "toy", Condition("none", 0, 0), 0, 3)


def test_claims_are_exclusive_renewed_and_taken_over(tmp_path):
    a, b = ChunkClaims(tmp_path, lease_seconds=0.6), ChunkClaims(tmp_path, lease_seconds=0.6)
    b.token = "b"  # a second worker of this process: another token
    assert a.try_claim(CLEAN0) and a.holds(CLEAN0)
    assert not b.try_claim(CLEAN0) and b.held_elsewhere(CLEAN0)
    a.start()  # the heartbeat keeps the lease alive past its length
    time.sleep(1.2)
    assert not b.try_claim(CLEAN0)
    a._stop.set()
    a._thread.join()
    time.sleep(0.8)  # no heartbeat for longer than the lease: expired
    assert b.try_claim(CLEAN0) and b.holds(CLEAN0)
    assert not a.holds(CLEAN0)  # the slow owner finds out at its next checkpoint
    b.release(CLEAN0)
    assert not list(tmp_path.iterdir())


def test_dead_local_owner_is_taken_over_at_once_a_live_remote_one_is_not(tmp_path, capsys):
    out = tmp_path / "run"
    cfg = write_config(tmp_path / "c.toml", out, n=6, corruptions=[], methods=[{"name": "toy-color"}])
    chunks = [Chunk(0, "toy", Condition("none", 0, 0), 0, 3), Chunk(1, "toy", Condition("none", 0, 0), 3, 6)]
    fake_claim(out / "claims", chunks[0], host_name(), 999_999_999)  # this host, a process that is gone
    remote = fake_claim(out / "claims", chunks[1], "other-host", 1, age_s=1.0)  # renewed a second ago
    assert run(cfg) == 0
    err = capsys.readouterr().err
    assert "1 unit(s) are still held by other workers" in err
    assert toy.ToyColour.calls == 3  # the dead worker's chunk only
    assert not list((out / "units").glob("*.json"))  # the unit waits for the other worker's chunk
    # the other host stops renewing: once its lease has expired, a rerun takes the chunk over
    t = time.time() - 3600
    os.utime(remote, (t, t))
    toy.ToyColour.calls = 0
    assert run(cfg) == 0
    assert toy.ToyColour.calls == 3
    assert pd.read_csv(out / "results.csv")["status"].tolist() == ["complete"]
    assert not list((out / "claims").iterdir())


def test_two_workers_on_one_directory_split_the_work(tmp_path):
    out = tmp_path / "shared"
    methods = [{"name": "toy-color", "params": {"sleep": 0.25}}, {"name": "toy-const", "params": {"value": 2}}]
    cfg = write_config(tmp_path / "c.toml", out, n=9, methods=methods, run={"chunk_size": 3}, report_auto=True)
    procs = [subprocess.Popen([*bench_cmd(), "run", str(cfg), "--plugins", PLUGIN], env=subprocess_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(2)]  # fmt: skip
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    worked = [sum(line.count(" chunk ") for line in e.splitlines() if "chunk" in line and "images" in line) for e in errs]
    assert all(w > 0 for w in worked), errs  # both evaluated chunks
    assert sum(worked) == 15  # 5 conditions x 3 chunks, each evaluated once
    assert (out / "report" / "report.md").is_file()  # the last one to finish wrote the report
    ref = tmp_path / "one"
    assert run(write_config(tmp_path / "r.toml", ref, n=9, methods=methods, run={"chunk_size": 3})) == 0
    assert_same_results(out, ref)
