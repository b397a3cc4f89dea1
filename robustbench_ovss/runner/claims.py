"""Which worker evaluates which chunk: claims with leases, safe on a file system shared by hosts.

Several ``ovss-bench run`` processes may work on one run directory at once (another worker started
on the same ``--out``, on this machine or another one sharing the file system). Before a process
evaluates a chunk it claims it; a chunk claimed by a live worker is left to that worker.

A claim is a file ``claims/<chunk name>.<generation>`` created with ``O_CREAT | O_EXCL``, which
exactly one process can win (also over NFS v3+). It holds the owner's host, pid and a random token.
The owner keeps it alive by touching it every ``lease / 6`` seconds from a heartbeat thread (the
lease); PIDs do not cross hosts, so:

- a claim of this host whose process is gone is free at once (a rerun after ``kill -9``);
- any claim untouched for longer than the lease is free (a worker on another host died; hosts'
  clocks must agree to well within the lease, as NTP keeps them).

A free claim is taken over by creating the next generation's file (again create-exclusive, so two
takers cannot both win); the taker then resumes from the chunk's checkpoint. A worker that was only
slow and lost its claim finds a newer generation at its next checkpoint (:meth:`ChunkClaims.holds`)
and drops the chunk; checkpoints are self-consistent files, so nothing it wrote before is wrong.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..files import file_mode, host_name
from ..plan import Chunk

log = logging.getLogger("robustbench_ovss.runner")

DEFAULT_LEASE_SECONDS = 60.0


def chunk_claim_name(chunk: Chunk) -> str:
    """File-name stem of a chunk's claims: dataset, condition and image range."""
    text = f"{chunk.dataset}__{chunk.condition.tag}__{chunk.chunk_id}"
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in text)


@dataclass(frozen=True)
class Claim:
    """One claim file as read: its generation, owner and when it was last renewed (epoch seconds)."""

    path: Path
    generation: int
    host: str
    pid: int
    token: str
    renewed_at: float


class ChunkClaims:
    """The claims of one worker process in ``folder`` (``RUN_DIR/claims``).

    Args:
        folder: the claims directory.
        lease_seconds: a claim not renewed for this long is free (the heartbeat renews it every
            ``lease_seconds / 6``).
    """

    def __init__(self, folder: Path, lease_seconds: float = DEFAULT_LEASE_SECONDS):
        self.folder = Path(folder)
        self.lease = float(lease_seconds)
        self.host = host_name()
        self.pid = os.getpid()
        self.token = uuid.uuid4().hex[:12]
        self._held: dict[str, Path] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- reading -------------------------------------------------------------------------------------
    def _claims(self, name: str) -> list[Claim]:
        """Claims of ``name`` on disk, oldest generation first (a vanished file is skipped)."""
        out = []
        prefix = name + "."
        try:
            entries = [e for e in os.listdir(self.folder) if e.startswith(prefix) and e[len(prefix):].isdigit()]
        except FileNotFoundError:
            return []
        for e in sorted(entries, key=lambda x: int(x[len(prefix):])):
            p = self.folder / e
            try:
                owner = json.loads(p.read_text(encoding="utf-8") or "{}")
                renewed = p.stat().st_mtime
            except (OSError, ValueError):
                continue  # removed meanwhile, or still being written: its creator holds it
            out.append(Claim(p, int(e[len(prefix):]), str(owner.get("host", "")), int(owner.get("pid", -1)),
                             str(owner.get("token", "")), renewed))  # fmt: skip
        return out

    def _mine(self, c: Claim) -> bool:
        return c.host == self.host and c.pid == self.pid and c.token == self.token

    def alive(self, c: Claim) -> bool:
        """Whether a claim still binds: renewed within the lease and, on this host, its process lives."""
        if time.time() - c.renewed_at > self.lease:
            return False
        if c.host == self.host:
            try:
                os.kill(c.pid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                pass
        return True

    def held_elsewhere(self, chunk: Chunk) -> bool:
        """True when another live worker holds ``chunk``."""
        claims = self._claims(chunk_claim_name(chunk))
        return bool(claims) and not self._mine(claims[-1]) and self.alive(claims[-1])

    def holds(self, chunk: Chunk) -> bool:
        """True while this process still holds ``chunk`` (no newer generation took it over)."""
        name = chunk_claim_name(chunk)
        if name not in self._held:
            return False
        claims = self._claims(name)
        return bool(claims) and self._mine(claims[-1])

    # -- claiming ------------------------------------------------------------------------------------
    def try_claim(self, chunk: Chunk) -> bool:
        """Claim ``chunk`` for this process; False when a live worker holds it or won the race."""
        return self.claim(chunk_claim_name(chunk))

    def claim(self, name: str) -> bool:
        """Claim ``name`` (a chunk's, or a task's such as "finalize"); False when a live worker holds it."""
        claims = self._claims(name)
        if claims and self._mine(claims[-1]):
            return True
        if claims and self.alive(claims[-1]):
            return False
        gen = claims[-1].generation + 1 if claims else 0
        path = self.folder / f"{name}.{gen:06d}"
        body = json.dumps({"host": self.host, "pid": self.pid, "token": self.token, "claimed_at": time.time()})
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, file_mode())
        except FileExistsError:
            return False  # another worker took this generation first
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(body)
        if claims:
            log.info("chunk %s: taking over the expired claim of %s pid %d", name, claims[-1].host, claims[-1].pid)
        for old in claims:  # older generations are history now
            old.path.unlink(missing_ok=True)
        with self._lock:
            self._held[name] = path
        return True

    def release(self, chunk: Chunk) -> None:
        """Give up ``chunk`` (finished, or this process stops)."""
        self.release_name(chunk_claim_name(chunk))

    def release_name(self, name: str) -> None:
        with self._lock:
            path = self._held.pop(name, None)
        if path is not None and self.holds_path(path):
            path.unlink(missing_ok=True)

    def holds_path(self, path: Path) -> bool:
        try:
            owner = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return owner.get("host") == self.host and owner.get("pid") == self.pid and owner.get("token") == self.token

    def wait_claim(self, name: str, timeout: float) -> bool:
        """Claim ``name``, waiting while a live worker holds it (at most ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        while not self.claim(name):
            if time.monotonic() > deadline:
                return False
            time.sleep(min(1.0, self.lease / 6.0))
        return True

    def release_all(self) -> None:
        with self._lock:
            paths = list(self._held.values())
            self._held.clear()
        for p in paths:
            if self.holds_path(p):
                p.unlink(missing_ok=True)

    # -- the heartbeat -------------------------------------------------------------------------------
    def renew(self) -> None:
        """Touch every held claim (its mtime is the lease clock)."""
        with self._lock:
            paths = list(self._held.values())
        for p in paths:
            try:
                os.utime(p)
            except FileNotFoundError:  # taken over and cleaned up by another worker: holds() says so
                pass
            except OSError as exc:
                log.warning("claim %s: cannot renew (%s)", p, exc.strerror)

    def start(self) -> None:
        """Start the heartbeat thread (daemon: it never keeps a finished process alive)."""
        if self._thread is not None:
            return
        interval = max(0.05, self.lease / 6.0)

        def beat() -> None:
            while not self._stop.wait(interval):
                self.renew()

        self._thread = threading.Thread(target=beat, name="ovss-claims-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the heartbeat and release every claim."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.release_all()
