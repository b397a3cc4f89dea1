"""Resolve a SAM 3 checkpoint spec to a Hugging Face directory, load it, and name it.

A spec is one of (checked in this order):

- ``builtin:<name>``: a checkpoint shipped in the package (``builtin:tiny-random``), found with
  importlib.resources, so a non-editable install works;
- an existing directory in Hugging Face format (``config.json``, ``model.safetensors`` or a sharded
  index, tokenizer files), e.g. a ``facebook/sam3`` snapshot or the output of
  ``ovss-bench convert-checkpoint``;
- an existing Meta-format file (``sam3.pt``): converted once into a cache directory
  (``$OVSS_BENCH_CACHE`` or ``~/.cache/ovss-bench``), then loaded from there like any directory;
- a hub id (``facebook/sam3``): looked up in the local Hugging Face cache only, unless
  ``allow_download`` (and even then ``HF_HUB_OFFLINE`` wins).

Every user-caused failure raises one :class:`~robustbench_ovss.errors.CheckpointError` line saying what
was expected and where. Loading always goes through :func:`load_model` (``Sam3Model.from_pretrained``
with the loading report checked), for the real and the tiny model alike.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import CheckpointError

log = logging.getLogger(__name__)

BUILTINS = {"tiny-random": "tiny-sam3-random", "demo": "demo-sam3"}
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt")
META_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ResolvedCheckpoint:
    """Where a checkpoint spec points.

    Attributes:
        kind: "builtin" | "dir" | "meta" | "hub".
        spec: the spec as given.
        name: stable name for the identity (builtin spec, hub id, or absolute path).
        path: the HF-format directory, or the Meta file for kind "meta".
    """

    kind: str
    spec: str
    name: str
    path: Path


def resolve_checkpoint(spec: str | os.PathLike[str], allow_download: bool = False) -> ResolvedCheckpoint:
    """Classify and locate ``spec`` (see the module docstring); raises CheckpointError if it is not found."""
    text = str(spec).strip()
    if not text:
        raise CheckpointError(f"backend.checkpoint is empty: expected an HF directory, a sam3.pt file, a hub id or {_builtin_names()}")
    if text.startswith("builtin:"):
        return ResolvedCheckpoint("builtin", text, text, _builtin_dir(text.split(":", 1)[1]))
    path = Path(os.path.expanduser(text))
    if path.is_dir():
        return ResolvedCheckpoint("dir", text, str(path.resolve()), path.resolve())
    if path.is_file():
        if path.suffix.lower() in META_SUFFIXES:
            return ResolvedCheckpoint("meta", text, str(path.resolve()), path.resolve())
        raise CheckpointError(
            f"checkpoint {text!r} is a {path.suffix or 'suffix-less'} file: expected a Hugging Face checkpoint "
            f"directory (config.json + model.safetensors + tokenizer) or a Meta sam3.pt file"
        )
    if _HUB_ID.match(text) and not text.startswith((".", "/", "~")):
        return ResolvedCheckpoint("hub", text, text, _hub_snapshot(text, allow_download))
    raise CheckpointError(
        f"checkpoint {text!r} does not exist: expected an HF checkpoint directory, a sam3.pt file, "
        f"a hub id such as facebook/sam3, or {_builtin_names()}"
    )


def _builtin_names() -> str:
    return " / ".join(f"builtin:{name}" for name in BUILTINS)


def _builtin_dir(name: str) -> Path:
    folder = BUILTINS.get(name)
    if folder is None:
        raise CheckpointError(f"unknown builtin checkpoint {name!r}: available {', '.join('builtin:' + k for k in BUILTINS)}")
    entry = resources.files("robustbench_ovss").joinpath("assets", folder)
    if isinstance(entry, Path):
        path = entry
    else:  # zipped install: materialise once
        path = cache_root() / "builtin" / folder
        if not (path / "config.json").is_file():
            path.mkdir(parents=True, exist_ok=True)
            for item in entry.iterdir():
                (path / item.name).write_bytes(item.read_bytes())
    if not (path / "config.json").is_file():
        raise CheckpointError(
            f"builtin checkpoint {name!r} is missing from the installed package ({path}); "
            f"rebuild it with scripts/make_tiny_checkpoint.py"
        )
    return path


def _hub_snapshot(repo_id: str, allow_download: bool) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub import constants as hf_constants

    offline = bool(hf_constants.HF_HUB_OFFLINE) or not allow_download
    patterns = ["*.json", "*.safetensors", "*.txt", "*.model"]
    try:
        return Path(snapshot_download(repo_id, local_files_only=offline, allow_patterns=patterns))
    except Exception as exc:  # the hub raises many types; all mean "not available here"
        kind = type(exc).__name__
        if "Gated" in kind:
            raise CheckpointError(
                f"hub id {repo_id!r} is gated: accept its license on huggingface.co and log in "
                f"(huggingface-cli login), or pass a local directory"
            ) from None
        if offline:
            why = "HF_HUB_OFFLINE is set" if hf_constants.HF_HUB_OFFLINE else "backend.allow_download is false"
            raise CheckpointError(
                f"hub id {repo_id!r} is not in the local Hugging Face cache ({hf_constants.HF_HUB_CACHE}) and {why}: "
                f"download it once with network access or pass a local checkpoint directory"
            ) from None
        raise CheckpointError(f"hub id {repo_id!r} could not be downloaded ({kind}: {str(exc).splitlines()[0]})") from None


def cache_root() -> Path:
    """Where converted Meta checkpoints are kept (``$OVSS_BENCH_CACHE`` or ``~/.cache/ovss-bench``)."""
    return Path(os.environ.get("OVSS_BENCH_CACHE") or Path.home() / ".cache" / "ovss-bench")


def hf_directory(resolved: ResolvedCheckpoint) -> Path:
    """The HF-format directory to load; a Meta file is converted into the cache on first use."""
    if resolved.kind != "meta":
        check_hf_directory(resolved.path, resolved.spec)
        return resolved.path
    from .convert import convert_checkpoint

    key = file_fingerprint(resolved.path)
    out = cache_root() / "converted" / f"{resolved.path.stem}-{key}"
    if not (out / ".complete").is_file():
        log.info("converting Meta checkpoint %s -> %s (once)", resolved.path, out)
        convert_checkpoint(resolved.path, out)
        (out / ".complete").write_text(str(resolved.path) + "\n")
    check_hf_directory(out, resolved.spec)
    return out


def check_hf_directory(path: Path, spec: str = "") -> None:
    """Raise CheckpointError unless ``path`` holds config.json (model_type sam3), weights and a tokenizer."""
    where = f"checkpoint {spec or str(path)!r} ({path})" if spec and spec != str(path) else f"checkpoint directory {str(path)!r}"
    cfg = path / "config.json"
    if not cfg.is_file():
        raise CheckpointError(f"{where} has no config.json: expected a Hugging Face SAM 3 directory (config.json, model.safetensors, tokenizer files)")
    try:
        model_type = json.loads(cfg.read_text()).get("model_type")
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{where}: config.json is not valid JSON ({exc})") from None
    if model_type not in ("sam3", "sam3_video"):
        raise CheckpointError(f"{where}: config.json has model_type {model_type!r}, expected 'sam3'")
    if not any((path / w).is_file() for w in WEIGHT_FILES):
        raise CheckpointError(f"{where} has no model.safetensors (or model.safetensors.index.json)")
    if not any((path / t).is_file() for t in ("tokenizer.json", "vocab.json", "tokenizer_config.json")):
        raise CheckpointError(
            f"{where} has no tokenizer files (tokenizer.json or vocab.json + merges.txt): copy them from a facebook/sam3 snapshot"
        )


def file_fingerprint(path: Path, chunk: int = 1 << 20) -> str:
    """Short hash of a file's size and its first and last MiB (cheap on multi-GB weights)."""
    h = hashlib.sha256()
    size = path.stat().st_size
    h.update(f"{path.name}:{size}".encode())
    with open(path, "rb") as f:
        h.update(f.read(chunk))
        if size > chunk:
            f.seek(max(size - chunk, chunk))
            h.update(f.read(chunk))
    return h.hexdigest()[:16]


def checkpoint_identity(resolved: ResolvedCheckpoint, directory: Path) -> str:
    """``<name>@<hash12>``: hash of config.json and the weight files' sizes and head/tail bytes."""
    h = hashlib.sha256((directory / "config.json").read_bytes())
    for name in sorted(os.listdir(directory)):
        if name.endswith(".safetensors"):
            h.update(file_fingerprint(directory / name).encode())
    if resolved.kind == "meta":
        h.update(file_fingerprint(resolved.path).encode())
    return f"{resolved.name}@{h.hexdigest()[:12]}"


def load_model(directory: Path, spec: str = "") -> tuple[Any, Any]:
    """Load ``Sam3Model`` (float32, eval) and its tokenizer from an HF-format directory.

    Raises CheckpointError when the weights do not match the architecture in config.json (missing,
    unexpected or shape-mismatched keys) or the tokenizer cannot be read.
    """
    import torch
    from transformers import AutoTokenizer, Sam3Model
    from transformers.utils import logging as hf_logging

    where = spec or str(directory)
    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # we report mismatches ourselves, as one line
    hf_logging.disable_progress_bar()  # a per-tensor bar for a sub-second load only clutters run logs
    try:
        model, info = Sam3Model.from_pretrained(
            str(directory), dtype=torch.float32, local_files_only=True, output_loading_info=True
        )
    except Exception as exc:
        mismatch = _shape_mismatches(directory)
        if mismatch:
            raise CheckpointError(f"checkpoint {where!r} does not match its config.json architecture: {mismatch}") from None
        raise CheckpointError(f"checkpoint {where!r} could not be loaded as Sam3Model: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    problems = []
    for label in ("missing_keys", "mismatched_keys", "unexpected_keys"):
        keys = sorted(str(k) for k in info.get(label, ()) or ())
        if keys:
            problems.append(f"{len(keys)} {label.replace('_', ' ')} (e.g. {', '.join(keys[:3])})")
    unexpected_only = problems and not info.get("missing_keys") and not info.get("mismatched_keys")
    if unexpected_only:  # extra tensors (e.g. a newer release's heads) do not change what we run
        log.warning("checkpoint %s: ignoring %s", where, problems[0])
    elif problems:
        raise CheckpointError(f"checkpoint {where!r} does not match its config.json architecture: {'; '.join(problems)}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    except Exception as exc:
        raise CheckpointError(f"checkpoint {where!r}: tokenizer could not be loaded ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    return model.eval(), tokenizer


def _shape_mismatches(directory: Path) -> str:
    """'N mismatched keys (e.g. k (file shape) vs (config shape))' from the safetensors headers, or ''."""
    import torch
    from safetensors import safe_open
    from transformers import AutoConfig, Sam3Model

    try:
        config = AutoConfig.from_pretrained(str(directory), local_files_only=True)
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in Sam3Model(config).state_dict().items()}
        found: dict[str, tuple[int, ...]] = {}
        for name in sorted(os.listdir(directory)):
            if name.endswith(".safetensors"):
                with safe_open(str(directory / name), framework="pt") as f:
                    found.update({k: tuple(f.get_slice(k).get_shape()) for k in f.keys()})
    except Exception:
        return ""
    wrong = sorted(k for k in expected.keys() & found.keys() if expected[k] != found[k])
    if not wrong:
        return ""
    k = wrong[0]
    return f"{len(wrong)} mismatched keys (e.g. {k} {found[k]} in the file vs {expected[k]} in config.json)"
