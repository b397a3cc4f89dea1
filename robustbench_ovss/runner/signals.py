"""Stopping a run cleanly: SIGINT/SIGTERM let the current ``predict`` finish, then the run checkpoints."""

from __future__ import annotations

import contextlib
import logging
import signal
from typing import Any

log = logging.getLogger("robustbench_ovss.runner")


class Terminated(BaseException):
    """SIGTERM arrived (Slurm pre-emption, ``kill``): checkpoint and stop."""


class DeferredStop:
    """SIGINT/SIGTERM handlers that let the current ``predict`` finish, so the state is checkpointed
    at an image boundary; a second signal stops at once. Inactive outside the main thread."""

    def __init__(self, install: bool = True) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}
        for sig in (signal.SIGINT, signal.SIGTERM) if install else ():
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                break

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            raise self.exception()
        self.signum = signum
        log.warning("%s: stopping after the current prediction and checkpointing (send it again to stop at once)",
                    signal.Signals(signum).name)  # fmt: skip

    def exception(self) -> BaseException:
        return Terminated() if self.signum == signal.SIGTERM else KeyboardInterrupt()

    def check(self) -> None:
        """Raise the stop (KeyboardInterrupt or Terminated) when a signal arrived."""
        if self.signum is not None:
            raise self.exception()

    def restore(self) -> None:
        for sig, old in self._old.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(sig, old)
        self._old = {}
