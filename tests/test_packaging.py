"""What a non-editable install gets: every package and package-data file; and the runtime never
imports the test fixtures."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from fnmatch import fnmatch
from pathlib import Path

import pytest

from harness_plugins.helpers import REPO, subprocess_env

pytestmark = pytest.mark.slow


def _wheel(tmp: Path) -> zipfile.ZipFile:
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp),
                        str(REPO)], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert p.returncode == 0, p.stderr[-2000:]
    (whl,) = tmp.glob("ovss_bench-*.whl")
    return zipfile.ZipFile(whl)


def test_wheel_holds_every_package_and_data_file(tmp_path):
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    dirs = meta["package-dir"]
    names = set(_wheel(tmp_path).namelist())
    # every folder of the checkout with an __init__.py under a mapped package is a package in the wheel
    for pkg, folder in dirs.items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.relative_to(REPO / folder).parent
            if "__pycache__" in rel.parts:
                continue
            target = "/".join([*pkg.split("."), *rel.parts, "__init__.py"])
            assert target in names, f"{init.parent} is not in the wheel (add it to [tool.setuptools] packages)"
    # and every package-data file
    for pkg, patterns in meta["package-data"].items():
        folder = REPO / dirs.get(pkg, pkg.replace(".", "/"))
        for f in folder.rglob("*"):
            rel = f.relative_to(folder).as_posix()
            if f.is_file() and any(fnmatch(rel, pat) or fnmatch(rel, pat.replace("**/", "")) for pat in patterns):
                assert "/".join([*pkg.split("."), rel]) in names, f"{f} is not in the wheel"
    assert "robustbench_ovss/assets/demo-sam3/model.safetensors" in names
    assert not any(n.startswith(("methods/", "corruptions/", "tests/")) for n in names)  # no bare top-level modules


def test_a_run_never_imports_the_test_fixtures(tmp_path):
    code = (
        "import sys\n"
        "from robustbench_ovss.cli import main\n"
        f"rc = main(['run', '--methods', 'activesam', 'sam3', '--datasets', 'voc-sample', '--no-clean', '--corruptions', 'fog',"
        f" '--severities', '1', '--limit', '1', '--checkpoint', 'builtin:tiny-random', '--out', {str(tmp_path / 'o')!r}])\n"
        "assert rc == 0, rc\n"
        "leaked = sorted(m for m in sys.modules if m.startswith('robustbench_ovss.testing'))\n"
        "assert not leaked, leaked\n"
        "print('ok')\n"
    )
    p = subprocess.run([sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True, timeout=600,
                       cwd=tmp_path)  # fmt: skip
    assert p.returncode == 0 and p.stdout.strip().endswith("ok"), p.stderr[-3000:]
