"""Shared test fixtures. Area-specific fixtures live in the area's own test modules."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Nothing in the test suite may reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random SAM 3 checkpoint directory (HF layout + word-level tokenizer), built once per session.

    336 px native input (224 preview), random weights with initializer_range 0.2 so that different
    prompts give visibly different outputs. Load it with ``BACKENDS.get("sam3")(checkpoint=str(path))``.
    """
    from robustbench_ovss.backends.tiny import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny-sam3"), image_size=336, seed=0, initializer_range=0.2)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models are op-overhead bound: one torch thread is fastest and immune to a busy machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
