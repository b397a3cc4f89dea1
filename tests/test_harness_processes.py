"""Runs in separate processes: SIGKILL part-way then resume, and a two-process torchrun run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from harness_plugins.helpers import PLUGIN, assert_same_results, bench_cmd, subprocess_env, write_config
from robustbench_ovss.cli import main

pytestmark = pytest.mark.slow


def start_and_signal(cfg, out, sig, after_files):
    """Start a run, send ``sig`` once more than ``after_files`` checkpoint files exist; returns the exit code."""
    proc = subprocess.Popen([*bench_cmd(), "run", str(cfg), "--plugins", PLUGIN], env=subprocess_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 120
    try:
        while len(list((out / "chunks").glob("*/*.json"))) <= after_files:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.01)
        os.kill(proc.pid, sig)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    return proc.returncode


def test_sigterm_then_sigkill_then_rerun_gives_identical_results(tmp_path):
    methods = [{"name": "toy-color", "params": {"sleep": 0.03}}, {"name": "toy-const", "params": {"value": 2}}]
    out = tmp_path / "killed"
    cfg = write_config(tmp_path / "c.toml", out, n=8, methods=methods, run={"checkpoint_images": 1, "chunk_size": 3})
    # SIGTERM (Slurm pre-emption): finish the current prediction, checkpoint, exit 143
    assert start_and_signal(cfg, out, signal.SIGTERM, after_files=0) == 143
    n_files = len(list((out / "chunks").glob("*/*.json")))
    # SIGKILL: no warning at all, part-way through the resumed run
    assert start_and_signal(cfg, out, signal.SIGKILL, after_files=n_files) == -signal.SIGKILL
    assert len(list((out / "units").glob("*.json"))) < 10  # killed part-way, not after the end
    assert main(["run", str(cfg), "--plugins", PLUGIN]) == 0
    ref = tmp_path / "ref"
    assert main(["run", str(write_config(tmp_path / "r.toml", ref, n=8, methods=methods, run={"chunk_size": 3})), "--plugins", PLUGIN]) == 0
    assert_same_results(out, ref)


def test_torchrun_two_processes_equal_one(tmp_path):
    out = tmp_path / "ddp"
    cfg = write_config(tmp_path / "c.toml", out, n=5)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone", "-m",
           "robustbench_ovss.cli", "run", str(cfg), "--plugins", PLUGIN]  # fmt: skip
    p = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "[rank 0] chunk" in p.stderr and "[rank 1] chunk" in p.stderr  # both ranks evaluated chunks
    ref = tmp_path / "one"
    assert main(["run", str(write_config(tmp_path / "r.toml", ref, n=5)), "--plugins", PLUGIN]) == 0
    assert_same_results(out, ref)
