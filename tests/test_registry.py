"""Registry behaviour: decorator registration, lazy built-ins, globs, did-you-mean, plugins."""

from __future__ import annotations

import logging
from importlib import metadata

import pytest

from robustbench_ovss.errors import OvssError, UnknownNameError
from robustbench_ovss.registry import CORRUPTIONS, DATASETS, METHODS, Registry


def make_registry() -> Registry:
    return Registry("widgets", "ovss_bench.test_widgets", {"alpha": "tests.nonexistent_module"})


def test_register_and_get_by_decorator() -> None:
    reg = Registry("widgets", "ovss_bench.test_widgets", {})

    @reg.register("beta")
    class Beta:
        pass

    assert reg.get("beta") is Beta
    assert reg.names() == ["beta"]
    assert reg.source("beta").startswith("module ")
    assert "beta" in reg


def test_unknown_name_suggests_close_match() -> None:
    reg = Registry("widgets", "ovss_bench.test_widgets", {})
    reg.register("segearth-ov3", object())
    with pytest.raises(UnknownNameError, match=r"did you mean 'segearth-ov3'"):
        reg.get("segearth-ov")
    with pytest.raises(UnknownNameError) as info:
        reg.get("zzzzzz")
    assert "did you mean" not in str(info.value) and "known: segearth-ov3" in str(info.value)


def test_globs_and_expand() -> None:
    reg = Registry("widgets", "ovss_bench.test_widgets", {})
    for n in ("gaussian_noise", "shot_noise", "fog"):
        reg.register(n, object())
    assert reg.names("*_noise") == ["gaussian_noise", "shot_noise"]
    assert reg.expand(["fog", "*noise"]) == ["fog", "gaussian_noise", "shot_noise"]
    with pytest.raises(UnknownNameError, match="no widgets match"):
        reg.expand(["blur*"])


def test_builtins_are_listed_without_import() -> None:
    reg = make_registry()
    assert reg.names() == ["alpha"]
    assert reg.source("alpha") == "built-in"
    with pytest.raises(ModuleNotFoundError):  # only get() imports the module
        reg.get("alpha")


def test_builtin_wins_over_foreign_registration(caplog: pytest.LogCaptureFixture) -> None:
    reg = make_registry()
    with caplog.at_level(logging.WARNING):
        reg.register("alpha", object())  # registered from this test module, not the built-in module
    assert "clashes with a built-in" in caplog.text
    assert "alpha" not in reg._objects


class _FakeDist:
    name = "fake-dist"


def _ep(name: str, value: str) -> metadata.EntryPoint:
    ep = metadata.EntryPoint(name=name, value=value, group="ovss_bench.test_widgets")
    return ep


def test_entry_point_plugins_loaded_and_broken_reported(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    reg = make_registry()
    eps = [_ep("good", "collections:OrderedDict"), _ep("bad", "no_such_module_xyz:thing"), _ep("alpha", "collections:deque")]
    monkeypatch.setattr(metadata, "entry_points", lambda group: [e for e in eps if e.group == group])
    with caplog.at_level(logging.WARNING):
        assert reg.names() == ["alpha", "bad", "good"]  # clash with a built-in is dropped
        broken = reg.load_plugins()
    assert set(broken) == {"bad"} and "ModuleNotFoundError" in broken["bad"]
    assert "failed to load" in caplog.text and "name of a built-in" in caplog.text
    import collections

    assert reg.get("good") is collections.OrderedDict
    assert "bad" not in reg.names()
    with pytest.raises(OvssError, match="plugin 'bad' failed to load"):
        reg.get("bad")


def test_builtin_tables_cover_the_design_names() -> None:
    assert set(METHODS.names()) >= {"activesam", "segearth-ov3", "sam3"}
    assert set(DATASETS.names()) >= {
        "voc21", "voc20", "context59", "context60", "coco_object", "coco_stuff", "cityscapes", "ade20k",
        "synthetic", "voc-sample",
    }
    assert len([n for n in CORRUPTIONS.names() if n in CORRUPTIONS._builtin_modules]) >= 19
