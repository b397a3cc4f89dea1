"""Checkpoint resolution and its user errors: one CheckpointError line saying what was expected and where."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from robustbench_ovss.backends.checkpoint import resolve_checkpoint
from robustbench_ovss.backends.sam3 import Sam3Backend
from robustbench_ovss.errors import CheckpointError, ConfigError


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _one_line(exc: pytest.ExceptionInfo[CheckpointError]) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError) as exc:
        Sam3Backend(str(tmp_path / "no" / "such" / "dir"))
    assert "does not exist" in _one_line(exc) and "hub id" in str(exc.value)


def test_uncached_hub_id_offline() -> None:
    with pytest.raises(CheckpointError) as exc:
        Sam3Backend("ovss-bench-tests/definitely-not-cached-sam3")
    msg = _one_line(exc)
    assert "not in the local Hugging Face cache" in msg and "ovss-bench-tests/definitely-not-cached-sam3" in msg


def test_hub_offline_wins_over_allow_download(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(CheckpointError, match="HF_HUB_OFFLINE"):
        Sam3Backend("ovss-bench-tests/definitely-not-cached-sam3", allow_download=True)


def test_wrong_file_types(tmp_path: Path) -> None:
    text = tmp_path / "weights.txt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match=r"is a \.txt file: expected"):
        Sam3Backend(str(text))
    garbage = tmp_path / "sam3.pt"
    garbage.write_bytes(b"\x00not a torch file")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        Sam3Backend(str(garbage))


def test_directory_problems(tmp_path: Path, tiny_checkpoint: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="has no config.json"):
        Sam3Backend(str(empty))
    other = _copy(tiny_checkpoint, tmp_path / "other")
    cfg = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**cfg, "model_type": "sam2"}))
    with pytest.raises(CheckpointError, match="model_type 'sam2', expected 'sam3'"):
        Sam3Backend(str(other))
    no_weights = _copy(tiny_checkpoint, tmp_path / "no_weights")
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        Sam3Backend(str(no_weights))
    no_tok = _copy(tiny_checkpoint, tmp_path / "no_tok")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (no_tok / name).unlink()
    with pytest.raises(CheckpointError, match="no tokenizer files"):
        Sam3Backend(str(no_tok))


def test_weights_that_do_not_match_the_config(tmp_path: Path, tiny_checkpoint: Path) -> None:
    missing = _copy(tiny_checkpoint, tmp_path / "missing")
    state = load_file(str(missing / "model.safetensors"))
    del state["detr_decoder.presence_token.weight"]
    save_file(state, str(missing / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError) as exc:
        Sam3Backend(str(missing))
    assert "missing keys" in _one_line(exc) and "detr_decoder.presence_token.weight" in str(exc.value)

    shapes = _copy(tiny_checkpoint, tmp_path / "shapes")
    cfg = json.loads((shapes / "config.json").read_text())
    cfg["detr_decoder_config"]["num_queries"] = 5  # weights hold 8 queries
    (shapes / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="mismatched keys"):
        Sam3Backend(str(shapes))


def test_builtin_names(tmp_path: Path) -> None:
    assert resolve_checkpoint("builtin:tiny-random").kind == "builtin"
    with pytest.raises(CheckpointError, match="unknown builtin checkpoint 'nope'"):
        resolve_checkpoint("builtin:nope")


def test_identity_is_stable_and_follows_the_weights(tmp_path: Path, tiny_checkpoint: Path) -> None:
    a = _copy(tiny_checkpoint, tmp_path / "a")
    first, second = Sam3Backend(str(a)).identity, Sam3Backend(str(a)).identity
    assert first == second and first.startswith(str(a.resolve()) + "@")
    state = load_file(str(a / "model.safetensors"))
    state["detr_decoder.presence_token.weight"] = state["detr_decoder.presence_token.weight"] + 1
    save_file(state, str(a / "model.safetensors"), metadata={"format": "pt"})
    assert Sam3Backend(str(a)).identity != first


def test_device_and_dtype_checks(tiny_checkpoint: Path) -> None:
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="cuda"):
            Sam3Backend(str(tiny_checkpoint), device="cuda")
    with pytest.raises(ConfigError, match="dtype 'fp16'"):
        Sam3Backend(str(tiny_checkpoint), dtype="fp16")
    b = Sam3Backend(str(tiny_checkpoint), device="auto", dtype="auto")
    assert b.dtype == ("bf16" if torch.cuda.is_available() else "fp32")
