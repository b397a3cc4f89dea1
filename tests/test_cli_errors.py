"""Bad input: one line on stderr naming the problem, no traceback, exit status 2."""

from __future__ import annotations

import subprocess

import pytest

from harness_plugins.helpers import PLUGIN, bench_cmd, subprocess_env, write_config
from robustbench_ovss.cli import main


def one_line_error(capsys, argv, *needles):
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert "\n" not in err and "Traceback" not in err, err
    for n in needles:
        assert n in err, err
    return err


def edit(path, old, new):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return path


def test_missing_config_file(capsys, tmp_path):
    one_line_error(capsys, ["run", str(tmp_path / "nope.toml")], "config file not found", "nope.toml")


def test_unknown_key_and_wrong_type(capsys, tmp_path):
    cfg = edit(write_config(tmp_path / "c.toml", tmp_path / "o"), "[run]\n", "[run]\nchunksize = 5\n")
    one_line_error(capsys, ["run", str(cfg), "--plugins", PLUGIN], "c.toml", "unknown key 'chunksize'", "chunk_size")
    cfg = edit(write_config(tmp_path / "c.toml", tmp_path / "o"), "chunk_size = 3", 'chunk_size = "three"')
    one_line_error(capsys, ["run", str(cfg), "--plugins", PLUGIN], "c.toml", "chunk_size", "integer")


@pytest.mark.parametrize(
    ("kind", "bad", "good"),
    [("methods", "toy-colr", "toy-color"), ("datasets", "toyy", "toy"), ("corruptions", "toy_noize", "toy_noise")],
)
def test_unknown_names_suggest(capsys, tmp_path, kind, bad, good):
    cfg = write_config(tmp_path / "c.toml", tmp_path / "o")
    if kind == "methods":
        edit(cfg, 'name = "toy-color"', f'name = "{bad}"')
    elif kind == "datasets":
        edit(cfg, '"toy",\n]', f'"{bad}",\n]')
    else:
        edit(cfg, '"toy_noise"', f'"{bad}"')
    one_line_error(capsys, ["run", str(cfg), "--plugins", PLUGIN], bad, f"did you mean '{good}'")
    # the same names as flags
    one_line_error(capsys, ["run", str(write_config(tmp_path / "d.toml", tmp_path / "o")), "--plugins", PLUGIN,
                            f"--{kind}", bad], bad, f"did you mean '{good}'")  # fmt: skip


def test_unknown_method_param(capsys, tmp_path):
    cfg = write_config(tmp_path / "c.toml", tmp_path / "o", methods=[{"name": "toy-const", "params": {"valu": 1}}])
    one_line_error(capsys, ["run", str(cfg), "--plugins", PLUGIN], "unknown param", "valu", "value")


def test_unwritable_output_directory(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    cfg = write_config(tmp_path / "c.toml", blocker / "run")
    one_line_error(capsys, ["run", str(cfg), "--plugins", PLUGIN], "output directory", "cannot write", "--out")


def test_bad_plugin_module_and_collect_of_nothing(capsys, tmp_path):
    one_line_error(capsys, ["run", str(write_config(tmp_path / "c.toml", tmp_path / "o")), "--plugins", "no_such_mod_xyz"],
                   "--plugins", "no_such_mod_xyz")  # fmt: skip
    one_line_error(capsys, ["collect", str(tmp_path / "missing")], "no such directory")


@pytest.mark.slow
def test_error_from_a_real_process_is_one_line(tmp_path):
    cfg = edit(write_config(tmp_path / "c.toml", tmp_path / "o"), "[run]\n", "[run]\nbogus = 1\n")
    p = subprocess.run([*bench_cmd(), "run", str(cfg), "--plugins", PLUGIN], env=subprocess_env(),
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert p.returncode == 2
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "unknown key 'bogus'" in lines[0] and "Traceback" not in p.stderr
