"""The run directory (DESIGN §4): where each record of a run lives, and reading and writing them.

Layout of ``RUN_DIR``::

    config.toml                   the run directory's config: every unit it holds was planned from it
    manifest.json                 versions, git sha, device, dataset roots and fingerprints
    plan.json                     every unit of the run (so partial runs know what is missing)
    chunks/<unit_key>/<start>-<stop>.json   one checkpoint per (unit, image range): state.ChunkState
    units/<unit_key>.json         the finished (or failed) unit: state.UnitRecord
    claims/                       which worker process evaluates which chunk (robustbench_ovss.runner.claims)
    results.csv, per_class.csv, per_image.csv   rebuilt from units/ by ``collect``
    preds/<unit_key>/<image_id>.png            --save-preds: the predicted label map (uint8 or uint16)
    preds/<unit_key>/<image_id>.overlay.png    --save-preds: image | prediction | ground truth
    samples/<dataset>/<condition>/<image_id>.png   --save-preds: the corrupted input the methods saw

Every file goes through :func:`robustbench_ovss.files.atomic_write_bytes` (temp file, then
``os.replace``; the mode follows the umask), so a process killed at any moment leaves the old or the
new version, never a torn one. Checkpoints and unit files are also fsynced before the rename; the
tables, config, manifest, plan and PNGs are not (they are rebuilt or rewritten by the next run).
This module never imports torch.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

from .errors import OvssError
from .files import read_json, remove_stale_temp_files, write_json
from .plan import Chunk, Unit
from .state import ChunkState, Status, UnitRecord, peek_status

log = logging.getLogger(__name__)

#: Files whose presence makes a directory a run directory (any one of them).
RUN_MARKERS = ("plan.json", "config.toml", "units")


class RunDir:
    """Paths and file operations of one run directory."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def units_dir(self) -> Path:
        return self.root / "units"

    @property
    def chunks_dir(self) -> Path:
        return self.root / "chunks"

    @property
    def claims_dir(self) -> Path:
        return self.root / "claims"

    @property
    def config_path(self) -> Path:
        return self.root / "config.toml"

    @property
    def plan_path(self) -> Path:
        return self.root / "plan.json"

    def is_run(self) -> bool:
        """True when the directory holds what ``ovss-bench run`` writes (a plan, a config or units/)."""
        return any((self.root / m).exists() for m in RUN_MARKERS)

    def ensure_writable(self) -> None:
        """Create the directory tree, or raise a one-line ``OvssError`` saying why it cannot be."""
        try:
            for d in (self.root, self.units_dir, self.chunks_dir, self.claims_dir):
                d.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".write-test-{os.getpid()}"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
            raise OvssError(f"output directory {self.root}: cannot write ({why}); pass a writable --out DIR") from None

    def remove_stale_temp_files(self) -> int:
        """Delete temp files left by killed writers in the run's folders; returns how many."""
        n = remove_stale_temp_files(self.root) + remove_stale_temp_files(self.units_dir)
        if self.chunks_dir.is_dir():
            for d in self.chunks_dir.iterdir():
                if d.is_dir():
                    n += remove_stale_temp_files(d)
        return n

    # unit files ----------------------------------------------------------------------------------
    def unit_path(self, key: str) -> Path:
        return self.units_dir / f"{key}.json"

    def read_unit(self, key: str) -> UnitRecord | None:
        d = read_json(self.unit_path(key))
        return None if d is None else UnitRecord.from_json(d)

    def write_unit(self, rec: UnitRecord) -> None:
        write_json(self.unit_path(rec.unit_key), rec.to_json())

    def unit_status(self, key: str) -> Status | None:
        """Status of a unit file (None when there is none), read from its head only."""
        return peek_status(self.unit_path(key))

    def unit_keys(self) -> list[str]:
        """Keys of every unit file, sorted."""
        if not self.units_dir.is_dir():
            return []
        return sorted(p.stem for p in self.units_dir.glob("*.json"))

    # chunk files ---------------------------------------------------------------------------------
    def chunk_path(self, key: str, chunk: Chunk) -> Path:
        return self.chunks_dir / key / f"{chunk.chunk_id}.json"

    def read_chunk(self, key: str, chunk: Chunk) -> ChunkState | None:
        d = read_json(self.chunk_path(key, chunk))
        return None if d is None else ChunkState.from_json(d)

    def write_chunk(self, state: ChunkState) -> None:
        path = self.chunks_dir / state.unit_key / f"{state.start:06d}-{state.stop:06d}.json"
        write_json(path, state.to_json())

    def forget(self, key: str, chunks: Iterable[Chunk]) -> None:
        """Delete the unit file of ``key`` and its checkpoints of ``chunks`` (``--force``)."""
        for c in chunks:
            self.chunk_path(key, c).unlink(missing_ok=True)
        self.unit_path(key).unlink(missing_ok=True)

    def finalize_unit(self, unit: Unit, chunks: Iterable[Chunk], force: bool = False) -> Status | None:
        """Merge the checkpoints of ``unit`` into its unit file when they allow it.

        Returns the status written, the status already on disk, or None when chunks are still
        missing or open (another worker, or a later rerun, will finish them). Idempotent: concurrent
        processes write the same numbers.
        """
        current = self.unit_status(unit.unit_key)
        if current is Status.COMPLETE and not force:
            return current
        rec = UnitRecord.from_chunks(unit, [self.read_chunk(unit.unit_key, c) for c in chunks])
        if rec is None:
            return current
        self.write_unit(rec)
        return rec.status


def require_run_dir(path: str | Path, command: str) -> RunDir:
    """The run directory at ``path``, or a one-line error when it is missing or not a run."""
    rd = RunDir(path)
    if not rd.root.is_dir():
        raise OvssError(f"{rd.root}: no such directory (pass the --out DIR of a run)")
    if not rd.is_run():
        raise OvssError(f"{rd.root}: not a run directory (no plan.json, config.toml or units/); "
                        f"pass the --out DIR of `ovss-bench run` to `ovss-bench {command}`")  # fmt: skip
    return rd
