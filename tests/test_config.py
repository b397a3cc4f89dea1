"""TOML run configs: validation errors name the file and key; overrides; round trip; hash."""

from __future__ import annotations

import dataclasses
from importlib import resources
from pathlib import Path

import pytest

from robustbench_ovss.config import (
    RunConfig,
    apply_overrides,
    config_hash,
    config_to_toml,
    load_config,
)
from robustbench_ovss.errors import ConfigError

GOOD = """
[run]
seeds = [0, 1]
limit = 5
[datasets]
names = ["voc21"]
[corruptions]
names = ["fog"]
severities = [1, 5]
[[methods]]
name = "activesam"
params = { preview = false, bucket_size = 8 }
[[methods]]
name = "activesam"
label = "activesam-nomabc"
params = { mabc = false }
[report]
reference = "activesam"
"""


def write(tmp_path: Path, text: str, name: str = "exp.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_load_good_config(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.name == "exp"
    assert cfg.run.seeds == (0, 1) and cfg.run.limit == 5
    assert cfg.corruptions.severities == (1, 5)
    assert [m.display for m in cfg.methods] == ["activesam", "activesam-nomabc"]
    assert cfg.methods[0].params == {"preview": False, "bucket_size": 8}
    assert cfg.out_dir == Path("runs/exp")


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("[run]\nchunksize = 5\n", r"exp\.toml: \[run\] unknown key 'chunksize' \(allowed: .*chunk_size"),
        ("[run]\nseeds = 'a'\n", r"\[run\] seeds must be an integer, got 'a'"),
        ("[run]\nchunk_size = 0\n", r"chunk_size must be >= 1"),
        ("[run]\ndevice = 'gpu'\n", r"device 'gpu' is not one of"),
        ("[corruptions]\nseverities = [6]\n", r"severities must be in 1..5"),
        ("[datasets]\nnames = ['voc22']\n", r"unknown dataset 'voc22'; did you mean 'voc21'"),
        ("[corruptions]\nnames = ['gausian_noise']\n", r"did you mean 'gaussian_noise'"),
        ("[[methods]]\nname = 'activesan'\n", r"unknown method 'activesan'; did you mean 'activesam'"),
        ("[[methods]]\nparams = {}\n", r"\[\[methods\]\] #1 is missing required key\(s\) name"),
        ("[[methods]]\nname='sam3'\n[[methods]]\nname='sam3'\n", r"sam3 listed twice; give each a distinct label"),
        ("[bogus]\nx = 1\n", r"unknown top-level key 'bogus'"),
        ("[run\n", r"not valid TOML"),
    ],
)
def test_bad_configs_are_one_line_errors(tmp_path: Path, text: str, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern) as info:
        load_config(write(tmp_path, text))
    assert "\n" not in str(info.value)


def test_missing_file_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


def test_overrides_replace_and_select(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD))
    new = apply_overrides(cfg, methods=["*nomabc", "sam3"], seeds=[3], limit=2, no_clean=True, data_root="/d")
    assert [m.display for m in new.methods] == ["activesam-nomabc", "sam3"]
    assert new.run.seeds == (3,) and new.run.limit == 2 and not new.corruptions.clean
    assert new.data.root == "/d"
    with pytest.raises(ConfigError, match="--datasets: unknown dataset 'ade20'"):
        apply_overrides(cfg, datasets=["ade20"])
    with pytest.raises(ConfigError, match="device"):
        apply_overrides(cfg, device="tpu")


def test_round_trip_and_hash(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD))
    again = load_config(write(tmp_path, config_to_toml(cfg), "exp.toml"))
    assert again.run == cfg.run and again.methods == cfg.methods and again.corruptions == cfg.corruptions
    assert config_hash(again) == config_hash(cfg)
    moved = apply_overrides(cfg, out="elsewhere")
    assert config_hash(moved) == config_hash(cfg), "the output directory does not change results"
    assert config_hash(apply_overrides(cfg, seeds=[7])) != config_hash(cfg)


def test_every_packaged_config_validates() -> None:
    names = [p.name for p in resources.files("robustbench_ovss.configs").iterdir() if p.name.endswith(".toml")]
    for name in names:
        cfg = load_config(name[:-5])
        assert isinstance(cfg, RunConfig)


# -- nested values are checked at load time, before any model or data is touched -----------------------


def _cfg(tmp_path, text):
    p = tmp_path / "n.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("text, needle", [
    ('[datasets]\nnames = ["synthetic"]\n[datasets.options.synthetic]\nn_images = "eight"\n',
     "[datasets.options.synthetic] n_images must be an integer"),
    ('[datasets]\nnames = ["synthetic"]\n[datasets.options.synthetic]\ncolours = 3\n',
     "[datasets.options.synthetic] unknown option(s) colours"),
    ('[datasets]\nnames = ["voc21"]\n[datasets.options.voc21]\nsynonyms = true\n',
     "[datasets.options.voc21] unknown option(s) synonyms (allowed: none)"),
    ('[datasets]\nnames = ["ade847"]\n[datasets.options.ade847]\nsynonyms = "yes"\n',
     "[datasets.options.ade847] synonyms must be true or false"),
    ('[datasets]\nnames = ["voc21"]\nvocab.voc21 = 3\n', "[datasets] vocab.voc21 must be the path of a vocabulary file"),
    ('[datasets]\nnames = ["voc21"]\nvocab.voc21 = "no/such/file.txt"\n', "[datasets] vocab.voc21: file no/such/file.txt not found"),
    ('[[methods]]\nname = "activesam"\nparams = { bucket = 4 }\n', "[[methods]] #1 (activesam): method 'activesam': unknown param(s) bucket"),
])  # fmt: skip
def test_nested_values_are_checked_when_the_config_is_read(tmp_path, text, needle):
    with pytest.raises(ConfigError) as exc:
        load_config(_cfg(tmp_path, text))
    assert needle in str(exc.value) and str(tmp_path / "n.toml") in str(exc.value)
    assert "\n" not in str(exc.value)


def test_config_hash_covers_only_what_changes_results(tmp_path):
    from robustbench_ovss.config import config_hash

    base = load_config("demo")
    same = dataclasses.replace(base, name="other", run=dataclasses.replace(
        base.run, out="elsewhere", workers=7, threads=3, checkpoint_images=5, checkpoint_seconds=9.0, warmup_calls=1,
        save_preds=4, lease_seconds=10.0), report=dataclasses.replace(base.report, auto=False, reference="sam3"))  # fmt: skip
    assert config_hash(same) == config_hash(base)
    for changed in (dataclasses.replace(base.run, limit=3), dataclasses.replace(base.run, dtype="bf16"),
                    dataclasses.replace(base.run, chunk_size=7), dataclasses.replace(base.run, seeds=(0, 1))):  # fmt: skip
        assert config_hash(dataclasses.replace(base, run=changed)) != config_hash(base)
    assert config_hash(dataclasses.replace(base, data=dataclasses.replace(base.data, root="/x"))) != config_hash(base)
