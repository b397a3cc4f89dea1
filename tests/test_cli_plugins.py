"""Entry-point plugins: found and listed (without importing torch), run, and a broken one reported."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from harness_plugins.helpers import PLUGIN, bench_cmd, subprocess_env, write_config

pytestmark = pytest.mark.slow


@pytest.fixture()
def site(tmp_path):
    """A directory holding two fake installed distributions: a working method and a broken one."""
    site = tmp_path / "site"
    (site / "fakeplug").mkdir(parents=True)
    (site / "fakeplug" / "__init__.py").write_text(textwrap.dedent('''
        from robustbench_ovss.method import Method

        class Fake(Method):
            version = "1"
            defaults = {"value": 3}

            def predict(self, image):
                import torch
                return torch.full(image.shape[:2], self.params["value"] % self.ctx.num_classes, dtype=torch.long)
    '''))
    (site / "brokenplug").mkdir()
    (site / "brokenplug" / "__init__.py").write_text("raise RuntimeError('broken on purpose')\n")
    for dist, ep in (("fakeplug", "fake-plug = fakeplug:Fake"), ("brokenplug", "broken-plug = brokenplug:Thing")):
        info = site / f"{dist}-0.1.dist-info"
        info.mkdir()
        info.joinpath("METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        info.joinpath("entry_points.txt").write_text(f"[ovss_bench.methods]\n{ep}\n")
    return site


def test_ls_lists_plugins_reports_broken_and_imports_no_torch(site):
    code = "import sys; from robustbench_ovss.cli import main; rc = main(['ls', 'methods']); print('TORCH', 'torch' in sys.modules); sys.exit(rc)"
    p = subprocess.run([sys.executable, "-c", code], env=subprocess_env([str(site)]), capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    lines = {ln.split()[0]: ln for ln in p.stdout.splitlines() if ln.strip()}
    assert "plugin fakeplug" in lines["fake-plug"]
    assert "built-in" in lines["activesam"] and "built-in" in lines["segearth-ov3"]
    assert "broken-plug" not in lines
    assert "broken-plug" in p.stderr and "BROKEN" in p.stderr and "broken on purpose" in p.stderr
    assert "TORCH False" in p.stdout


def test_entry_point_method_runs_beside_a_broken_plugin(site, tmp_path):
    out = tmp_path / "run"
    # built-ins (the voc-sample dataset, the gaussian_noise corruption) run beside the plugins
    cfg = write_config(tmp_path / "c.toml", out, n=3, corruptions=["gaussian_noise"], severities=[2],
                       datasets=["toy", "voc-sample"],
                       methods=[{"name": "fake-plug", "params": {"value": 2}}, {"name": "toy-color"}])  # fmt: skip
    p = subprocess.run([*bench_cmd(), "run", str(cfg), "--plugins", PLUGIN], env=subprocess_env([str(site)]),
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    assert "broken-plug" in p.stderr  # reported as a warning, not fatal
    res = pd.read_csv(out / "results.csv")
    assert sorted(res["label"].unique()) == ["fake-plug", "toy-color"]
    assert sorted(res["dataset"].unique()) == ["toy", "voc-sample"] and len(res) == 2 * 2 * 2
    assert (res["status"] == "complete").all()
    fake = res[res["label"] == "fake-plug"]
    assert (fake["aacc"] < 0.5).all() and (fake["params"].str.contains('"value": 2')).all()


def test_ls_datasets_shows_details_and_filters(capsys):
    import harness_plugins.toy  # noqa: F401  (registers toy and toy-b in this process)
    from robustbench_ovss.cli import main

    assert main(["ls", "datasets", "toy*", "--data-root", "nowhere"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["name", "source", "classes", "size", "root", "found"]
    names = [ln.split()[0] for ln in out[1:]]
    assert names == ["toy", "toy-b"]
    assert "module harness_plugins.toy" in out[1]
    assert main(["ls", "corruptions", "toy_*"]) == 0
    assert [ln.split()[0] for ln in capsys.readouterr().out.splitlines()[1:]] == ["toy_noise", "toy_roll"]
    assert main(["ls", "backends", "zzz*"]) == 0
    assert "no backends match" in capsys.readouterr().out
