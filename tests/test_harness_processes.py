"""Runs in separate processes: SIGKILL part-way then resume, and a two-process torchrun run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from harness_plugins.helpers import PLUGIN, assert_same_results, bench_cmd, subprocess_env, write_config
from robustbench_ovss.cli import main

pytestmark = pytest.mark.slow


def run_until_signal(cfg, spec):
    """Run in a subprocess whose toy-color method signals its own process at a given predict call
    (``spec`` as ``OVSS_TOY_SIGNAL``, e.g. "SIGTERM@4"); returns (exit code, stderr)."""
    env = dict(subprocess_env(), OVSS_TOY_SIGNAL=spec)
    p = subprocess.run([*bench_cmd(), "run", str(cfg), "--plugins", PLUGIN], env=env, capture_output=True, text=True,
                       timeout=300)  # fmt: skip
    return p.returncode, p.stderr


def test_sigterm_then_sigkill_then_rerun_gives_identical_results(tmp_path):
    methods = [{"name": "toy-color"}, {"name": "toy-const", "params": {"value": 2}}]
    out = tmp_path / "killed"
    cfg = write_config(tmp_path / "c.toml", out, n=8, methods=methods, run={"checkpoint_images": 1, "chunk_size": 3})
    # SIGTERM (Slurm pre-emption) during toy-color's 4th prediction: it finishes, checkpoints, exits 143
    rc, err = run_until_signal(cfg, "SIGTERM@4")
    assert rc == 143, err
    states = [json.loads(p.read_text()) for p in (out / "chunks").glob("*/*.json")]
    assert sum(len(s["rows"]) for s in states) >= 4  # the interrupted prediction was kept
    # SIGKILL: no warning at all, during the 7th prediction of the resumed run
    rc, err = run_until_signal(cfg, "SIGKILL@7")
    assert rc == -signal.SIGKILL, err
    assert not list((out / "units").glob("*.json"))  # killed part-way: no unit was merged yet
    assert main(["run", str(cfg), "--plugins", PLUGIN]) == 0
    ref = tmp_path / "ref"
    assert main(["run", str(write_config(tmp_path / "r.toml", ref, n=8, methods=methods, run={"chunk_size": 3})), "--plugins", PLUGIN]) == 0
    assert_same_results(out, ref)


def _processes_mentioning(text):
    found = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                cmd = open(f"/proc/{d}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmd:
                found.append(int(d))
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_leaves_no_loader_workers_behind(tmp_path):
    import time

    # images large enough that the prefetched ones fill the workers' pipe: that is when a worker whose
    # parent died used to hang for good at exit
    cfg = write_config(tmp_path / "orphans.toml", tmp_path / "o", n=12, run={"workers": 2},
                       options={"h": 240, "w": 320})  # fmt: skip
    rc, err = run_until_signal(cfg, "SIGKILL@3")
    assert rc == -signal.SIGKILL, err
    deadline = time.monotonic() + 20
    while _processes_mentioning(str(cfg)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _processes_mentioning(str(cfg))  # the kernel took the workers down with the run


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
