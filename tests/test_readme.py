"""The README's set-up commands are the ones CI runs, and the packaged files it names exist."""

from __future__ import annotations

import re
from pathlib import Path


def _commands(readme: str) -> list[str]:
    block = re.search(r"<!-- setup -->\s*```bash\n(.*?)```", readme, re.S)
    assert block, "README must keep the two set-up commands in the <!-- setup --> bash block"
    return [ln.strip() for ln in block.group(1).splitlines() if ln.strip() and not ln.startswith("#")]


def test_readme_has_exactly_two_setup_commands(repo_root: Path) -> None:
    cmds = _commands((repo_root / "README.md").read_text())
    assert len(cmds) == 2
    assert cmds[0].endswith("ovss-bench run")


def test_ci_runs_the_readme_test_command(repo_root: Path) -> None:
    cmds = _commands((repo_root / "README.md").read_text())
    ci = (repo_root / ".ci" / "run").read_text().splitlines()
    assert cmds[1] in [ln.strip() for ln in ci], ".ci/run must call the README's test command verbatim"
