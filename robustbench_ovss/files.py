"""Atomic, permission-respecting file writes and one-line messages for file-system errors.

Every file the suite writes into a run directory, a report or a corruption cache goes through
:func:`atomic_write_bytes`: the bytes go to a temp file in the target's directory, which gets the
mode a plain ``open()`` would give (``0o666`` minus the umask, so a lab's shared file system can read
the results) and, when ``durable``, an ``fsync``; then ``os.replace`` puts it under its name. A
process killed at any moment leaves the old file or the new one, never a torn one, plus at worst a
temp file that :func:`remove_stale_temp_files` deletes later.

Temp names carry the host and process id (``.<name>.<host>.<pid>.<random>.tmp``) so that the clean-up
never deletes a file another live process is still writing, even on a file system shared by hosts.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from .errors import OvssError

TEMP_SUFFIX = ".tmp"
#: A temp file of another host is only removed when it is older than this (its writer may be alive).
STALE_TEMP_SECONDS = 24 * 3600

_umask_lock = threading.Lock()
_umask: int | None = None


def process_umask() -> int:
    """The process's umask (read once; Linux reports it in /proc without changing it)."""
    global _umask
    if _umask is None:
        with _umask_lock:
            try:
                for line in Path("/proc/self/status").read_text().splitlines():
                    if line.startswith("Umask:"):
                        _umask = int(line.split()[1], 8)
                        break
            except OSError:
                pass
            if _umask is None:  # elsewhere: set and restore (once, before any worker thread writes)
                _umask = os.umask(0o022)
                os.umask(_umask)
    return _umask


def file_mode() -> int:
    """Mode of a newly written file: what ``open(path, "w")`` would give under the current umask."""
    return 0o666 & ~process_umask()


def host_name() -> str:
    """This machine's name as it appears in temp-file and claim names (no dots or slashes)."""
    return socket.gethostname().split(".")[0].replace("/", "_") or "host"


def atomic_write_bytes(path: str | Path, data: bytes, durable: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same directory, then ``os.replace``).

    ``durable`` fsyncs the temp file before the rename, so a machine crash cannot leave an empty file
    under the new name. Raises :class:`OvssError` (one line naming the path) on a file-system error.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{host_name()}.{os.getpid()}.",
                                   suffix=TEMP_SUFFIX)  # fmt: skip
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), file_mode())  # mkstemp creates 0600
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise OvssError(write_error(path, exc)) from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def atomic_write_text(path: str | Path, text: str, durable: bool = True) -> None:
    """:func:`atomic_write_bytes` of ``text`` in UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"), durable=durable)


def write_json(path: str | Path, obj: Any, durable: bool = True) -> None:
    """Atomic compact JSON write (NaN kept as the JSON extension ``NaN`` that Python and pandas read)."""
    atomic_write_text(path, json.dumps(obj, default=json_default, separators=(",", ":")), durable=durable)


def read_json(path: str | Path) -> Any | None:
    """Parsed JSON of ``path``, or None when it does not exist; a torn or foreign file is a one-line error."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise OvssError(f"{path}: unreadable ({exc}); delete it and rerun to recompute that part") from None
    except OSError as exc:
        raise OvssError(f"{path}: cannot read ({exc.strerror or exc})") from None


def json_default(x: Any) -> Any:
    """JSON form of numpy scalars and arrays, paths and tensors (without importing torch)."""
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    if hasattr(x, "tolist"):
        return x.tolist()
    return str(x)


def write_error(path: str | Path, exc: OSError) -> str:
    """One line saying why ``path`` could not be written and what to do."""
    if exc.errno == errno.ENOSPC:
        return f"{path}: no space left on device; free space and rerun the same command (finished work is kept)"
    if exc.errno == errno.EDQUOT:
        return f"{path}: disk quota exceeded; free space and rerun the same command (finished work is kept)"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{path}: cannot write ({exc.strerror}); choose a writable place"
    return f"{path}: cannot write ({exc.strerror or type(exc).__name__})"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def remove_stale_temp_files(folder: str | Path) -> int:
    """Delete temp files left in ``folder`` by killed writers; returns how many were removed.

    A temp file of this host is stale when its process is gone; one of another host (or of an
    unknown form) only when it is older than ``STALE_TEMP_SECONDS``.
    """
    folder = Path(folder)
    removed = 0
    me = host_name()
    try:
        entries = list(folder.glob(f".*{TEMP_SUFFIX}"))
    except OSError:
        return 0
    for p in entries:
        parts = p.name[: -len(TEMP_SUFFIX)].rsplit(".", 3)  # .<name>.<host>.<pid>.<random>
        stale = False
        if len(parts) == 4 and parts[1] == me and parts[2].isdigit():
            stale = not _pid_alive(int(parts[2]))
        if not stale:
            try:
                stale = time.time() - p.stat().st_mtime > STALE_TEMP_SECONDS
            except OSError:
                continue
        if stale:
            try:
                p.unlink()
                removed += 1
            except OSError:
                pass
    return removed
