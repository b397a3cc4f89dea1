"""``ovss-bench bench``: the grid a config describes, read without data, and one end-to-end run on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from robustbench_ovss.bench import TYPICAL_SIZE, dataset_facts
from robustbench_ovss.cli import main
from robustbench_ovss.config import config_from_dict
from robustbench_ovss.datasets.vocabulary import packaged_vocabulary


def test_dataset_facts_of_a_paper_like_config_without_data() -> None:
    cfg = config_from_dict({
        "run": {"seeds": [0, 1]},
        "datasets": {"names": ["cityscapes", "ade847", "voc21", "acdc-fog"]},
        "corruptions": {"names": ["fog", "gaussian_noise", "jpeg_compression"], "severities": [1, 5],
                        "clean_only": ["acdc-fog"]},
    })
    facts = {f.name: f for f in dataset_facts(cfg)}
    # split sizes of DESIGN §7 / the dataset classes; 1 clean + 3 corruptions x 2 severities x 2 seeds
    assert {n: f.n_images for n, f in facts.items()} == {"cityscapes": 500, "ade847": 2000, "voc21": 1449, "acdc-fog": 100}
    assert facts["voc21"].conditions == 13 and facts["acdc-fog"].conditions == 1
    # prompts: every alias (Cityscapes has two multi-alias lines), ade847 by first name only (its default)
    city = packaged_vocabulary("cityscapes")
    assert facts["cityscapes"].prompts == sum(len(a) for a in city) > len(city) == 19
    assert facts["ade847"].prompts == 847 and facts["voc21"].bg_idx == 0 and facts["voc21"].prob_thd == 0.4
    assert facts["cityscapes"].image_hw == (1024, 2048) == TYPICAL_SIZE["cityscapes"]
    # the run's limit caps the images; synonyms make every ade847 synonym a prompt
    limited = config_from_dict({"run": {"limit": 7}, "datasets": {"names": ["ade847"], "options": {"ade847": {"synonyms": True}}},
                                "corruptions": {"names": [], "severities": [1]}})
    (ade,) = dataset_facts(limited)
    assert ade.n_images == 7 and ade.conditions == 1
    assert ade.prompts == sum(len(a) for a in packaged_vocabulary("ade847")) > 847


TINY = """
name = "bench-tiny"
[run]
device = "cpu"
dtype = "fp32"
limit = 10
threads = 1
[backend]
checkpoint = "builtin:tiny-random"
[datasets]
names = ["synthetic"]
[datasets.options.synthetic]
vocab_size = 6
n_images = 40
size = 64
[corruptions]
names = ["gaussian_noise"]
severities = [1, 3]
[[methods]]
name = "activesam"
params = { hypernym_source = "table" }
[[methods]]
name = "segearth-ov3"
params = { bucket_size = 4 }
"""


def test_bench_runs_a_tiny_config_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY)
    out = tmp_path / "bench.json"
    assert main(["bench", str(cfg), "--model", "tiny", "--images", "2", "--warmup", "1", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    cases = {c["method"]: c for c in res["cases"]}
    assert set(cases) == {"activesam", "segearth-ov3"}
    for c in cases.values():
        assert c["dataset"] == "synthetic" and c["prompts"] == 7 and c["image_hw"] == [64, 64]
        assert c["timed_images"] == 2 and c["seconds_per_image"] > 0 and c["peak_extra_mb"] > 0
        assert c["images_per_s"] == pytest.approx(1 / c["seconds_per_image"])
    assert cases["segearth-ov3"]["decoded"] == 7 and cases["segearth-ov3"]["resolved"]["bucket_size"] == 4
    # 7 prompts <= 40: no preview, every prompt decoded; "auto" resolved for a CPU on one thread
    assert cases["activesam"]["decoded"] == 7 and cases["activesam"]["previewed"] == 0
    assert (cases["activesam"]["resolved"]["preview_bucket_size"], cases["activesam"]["resolved"]["bucket_size"]) == (8, 1)
    # the grid: 10 images (limit) x (clean + 1 corruption x 2 severities) x s/image + setup
    for g in res["grid"]:
        c = cases[g["method"]]
        assert g["images"] == 10 and g["conditions"] == 3 and g["predict_calls"] == 30
        assert g["seconds"] == pytest.approx(30 * c["seconds_per_image"] + c["setup_s"])
    assert res["total_hours"] == pytest.approx(sum(g["seconds"] for g in res["grid"]) / 3600)
    text = capsys.readouterr().out
    assert "Grid estimate" in text and "| **all methods** |" in text


def test_bench_names_unknown_methods_and_datasets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY)
    assert main(["bench", str(cfg), "--model", "tiny", "--methods", "nope"]) == 2
    assert "none of the config's methods" in capsys.readouterr().err
    assert main(["bench", str(cfg), "--model", "tiny", "--datasets", "voc21"]) == 2
    assert "not in the config's datasets" in capsys.readouterr().err
