"""A run directory belongs to one results-relevant config: resume, extend, refuse, replace; files
others can read; collect and report that never damage or write into what they read."""

from __future__ import annotations

import json
import os
import stat
import tomllib

import pandas as pd
import pytest

from harness_plugins import toy
from harness_plugins.helpers import PLUGIN, assert_same_results, unit_records, write_config
from robustbench_ovss.cli import main


def run(cfg, *flags):
    return main(["run", str(cfg), "--plugins", PLUGIN, *flags])


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if "error:" in line]
    assert len(errors) == 1, err
    return errors[0]


def test_another_limit_or_params_is_refused_naming_the_keys(tmp_path, capsys):
    out = tmp_path / "run"
    assert run(write_config(tmp_path / "a.toml", out, corruptions=["toy_noise", "toy_roll"], severities=[1])) == 0
    before = (out / "results.csv").read_bytes()
    cfg_before = (out / "config.toml").read_bytes()
    capsys.readouterr()
    # the case: fewer corruptions, another limit
    assert run(write_config(tmp_path / "b.toml", out, corruptions=["toy_roll"], severities=[1], run={"limit": 2})) == 2
    line = one_line(capsys)
    assert "[run] limit" in line and "another --out" in line and "--force" in line
    params = write_config(tmp_path / "c.toml", out, corruptions=["toy_roll"], severities=[1],
                          methods=[{"name": "toy-color"}, {"name": "toy-const", "params": {"value": 3}}])  # fmt: skip
    assert run(params) == 2
    assert "[[methods]] toy-const params" in one_line(capsys)
    # nothing was touched
    assert (out / "results.csv").read_bytes() == before and (out / "config.toml").read_bytes() == cfg_before
    # --force replaces the directory's results with the new config's
    assert run(params, "--force") == 0
    res = pd.read_csv(out / "results.csv")
    assert set(res["corruption"]) == {"none", "toy_roll"}
    assert res.loc[res["label"] == "toy-const", "params"].str.contains('"value": 3').all()
    assert len(list((out / "units").glob("*.json"))) == len(res) == 4


def test_execution_settings_never_block_a_resume(tmp_path):
    out = tmp_path / "run"
    assert run(write_config(tmp_path / "a.toml", out, corruptions=[])) == 0
    toy.ToyColour.calls = 0
    other = write_config(tmp_path / "b.toml", out, corruptions=[],
                         run={"workers": 1, "checkpoint_images": 7, "checkpoint_seconds": 12.0, "warmup_calls": 2,
                              "threads": 1, "save_preds": 1, "lease_seconds": 30.0},
                         report_auto=True)  # fmt: skip
    assert run(other) == 0
    assert toy.ToyColour.calls == 0  # resumed: nothing to do


def test_more_units_need_extend_fewer_resume(tmp_path, capsys):
    out = tmp_path / "run"
    base = write_config(tmp_path / "a.toml", out, corruptions=["toy_noise"], severities=[1])
    assert run(base) == 0
    capsys.readouterr()
    more = write_config(tmp_path / "b.toml", out, corruptions=["toy_noise", "toy_roll"], severities=[1], seeds=[0, 1])
    assert run(more) == 2
    line = one_line(capsys)
    assert "--extend" in line and "corruptions: toy_roll" in line and "seeds: 1" in line
    assert run(more, "--extend") == 0
    stored = tomllib.loads((out / "config.toml").read_text())
    assert stored["corruptions"]["names"] == ["toy_noise", "toy_roll"] and stored["run"]["seeds"] == [0, 1]
    res = pd.read_csv(out / "results.csv")
    assert len(res) == 2 * (1 + 2 * 2)  # methods x (clean + 2 corruptions x 2 seeds)
    plan = json.loads((out / "plan.json").read_text())
    assert {u["unit_key"] for u in plan["units"]} == set(res["unit_key"])
    # the original, narrower command resumes (a subset) and leaves the directory's config alone
    toy.ToyColour.calls = 0
    assert run(base) == 0
    assert toy.ToyColour.calls == 0
    assert tomllib.loads((out / "config.toml").read_text()) == stored
    assert len(pd.read_csv(out / "results.csv")) == len(res)
    # and equals a run that had the whole grid from the start
    ref = tmp_path / "ref"
    assert run(write_config(tmp_path / "r.toml", ref, corruptions=["toy_noise", "toy_roll"], severities=[1],
                            seeds=[0, 1])) == 0  # fmt: skip
    assert_same_results(out, ref)


def test_changed_dataset_files_are_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert run(write_config(tmp_path / "a.toml", out, corruptions=[])) == 0
    man = json.loads((out / "manifest.json").read_text())
    man["datasets"]["toy"]["fingerprint"] = "0" * 16  # as if the files had changed since
    (out / "manifest.json").write_text(json.dumps(man))
    capsys.readouterr()
    assert run(write_config(tmp_path / "a.toml", out, corruptions=[])) == 2
    assert "dataset(s) toy changed" in one_line(capsys)


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_files_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        from robustbench_ovss import files

        files._umask = None  # read again under this test's umask
        out = tmp_path / "run"
        assert run(write_config(tmp_path / "a.toml", out, corruptions=[], report_auto=True)) == 0
    finally:
        os.umask(old)
        files._umask = None
    want = 0o666 & ~umask
    checked = [p for p in out.rglob("*") if p.is_file() and "claims" not in p.parts]
    assert any(p.name == "results.csv" for p in checked) and any(p.parent.name == "units" for p in checked)
    assert any(p.suffix == ".png" for p in checked)  # the report's figures too
    for p in checked:
        assert stat.S_IMODE(p.stat().st_mode) == want, p


def test_stale_temp_files_of_killed_writers_are_removed(tmp_path):
    out = tmp_path / "run"
    cfg = write_config(tmp_path / "a.toml", out, corruptions=[])
    assert run(cfg) == 0
    from robustbench_ovss.files import host_name

    dead = out / "units" / f".abc.json.{host_name()}.999999999.x1y2.tmp"  # a pid that cannot exist
    alive = out / "units" / f".abc.json.{host_name()}.{os.getpid()}.x1y2.tmp"  # a live writer's
    for p in (dead, alive):
        p.write_text("{")
    assert run(cfg) == 0
    assert not dead.exists() and alive.exists()


# -- collect and report ------------------------------------------------------------------------------


def test_collect_refuses_what_is_not_a_run_and_never_empties_a_table(tmp_path, capsys):
    somewhere = tmp_path / "photos"
    somewhere.mkdir()
    assert main(["collect", str(somewhere)]) == 2
    assert "not a run directory" in one_line(capsys)
    assert list(somewhere.iterdir()) == []  # nothing written there
    out = tmp_path / "run"
    assert run(write_config(tmp_path / "a.toml", out, corruptions=[])) == 0
    before = (out / "results.csv").read_bytes()
    for p in (out / "units").glob("*.json"):
        p.unlink()
    capsys.readouterr()
    assert main(["collect", str(out)]) == 2
    assert "no unit files" in one_line(capsys)
    assert (out / "results.csv").read_bytes() == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_report_of_a_read_only_run(tmp_path, capsys):  # pragma: no cover - CI runs as root
    _read_only_report(tmp_path, capsys)


def test_report_with_o_writes_nothing_into_the_run(tmp_path, capsys, monkeypatch):
    """-o: the run directory is read only (checked by making every write into it fail), the report
    is complete; without -o on a directory it cannot write: one line."""
    out = tmp_path / "run"
    assert run(write_config(tmp_path / "a.toml", out, corruptions=["toy_noise"], severities=[1])) == 0
    os.unlink(out / "results.csv")  # report -o must rebuild its tables in memory, not in the run
    snapshot = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    import robustbench_ovss.files as files

    real = files.atomic_write_bytes

    def guarded(path, data, durable=True):
        assert not str(os.path.abspath(path)).startswith(str(out)), f"wrote into the run: {path}"
        return real(path, data, durable)

    monkeypatch.setattr(files, "atomic_write_bytes", guarded)
    rep = tmp_path / "elsewhere"
    assert main(["report", str(out), "-o", str(rep)]) == 0
    assert (rep / "report.md").is_file() and "toy_noise" in (rep / "report.md").read_text()
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == snapshot
    monkeypatch.setattr(os, "access", lambda path, mode: not str(path).startswith(str(out)))
    capsys.readouterr()
    assert main(["report", str(out)]) == 2
    assert "pass -o DIR" in one_line(capsys)


def _read_only_report(tmp_path, capsys):
    out = tmp_path / "run"
    assert run(write_config(tmp_path / "a.toml", out, corruptions=[])) == 0
    for p in [out, *out.rglob("*")]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        assert main(["report", str(out), "-o", str(tmp_path / "rep")]) == 0
        assert main(["report", str(out)]) == 2
        assert "pass -o DIR" in one_line(capsys)
    finally:
        for p in [out, *out.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)


def test_unwritable_report_destination_is_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert run(write_config(tmp_path / "a.toml", out, corruptions=[])) == 0
    blocker = tmp_path / "file"
    blocker.write_text("x")
    capsys.readouterr()
    assert main(["report", str(out), "-o", str(blocker / "rep")]) == 2
    assert str(blocker / "rep") in one_line(capsys)


def test_full_disk_is_one_line_and_a_rerun_resumes_to_identical_numbers(tmp_path, capsys, monkeypatch):
    import errno

    import robustbench_ovss.files as files

    out = tmp_path / "run"
    cfg = write_config(tmp_path / "a.toml", out, run={"checkpoint_images": 1})
    real, n = files.os.fsync, {"calls": 0}

    def fsync(fd):
        n["calls"] += 1
        if n["calls"] > 9:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)

    monkeypatch.setattr(files.os, "fsync", fsync)
    assert run(cfg) == 2
    line = one_line(capsys)
    assert "no space left on device" in line and "rerun the same command" in line
    monkeypatch.setattr(files.os, "fsync", real)
    assert run(cfg) == 0
    ref = tmp_path / "ref"
    assert run(write_config(tmp_path / "r.toml", ref)) == 0
    assert_same_results(out, ref)
    assert unit_records(out)
