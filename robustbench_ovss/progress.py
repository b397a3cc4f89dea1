"""Progress of a run: a rich bar on a terminal, plain log lines otherwise (CI logs, Slurm files).

Either way a line is written for every finished chunk, so a log shows where a run was when it
stopped.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

log = logging.getLogger("robustbench_ovss.runner")


class Progress:
    """Counts evaluated images.

    Args:
        total: images this process will load (each is shared by all methods).
        prefix: text put in front of every line (e.g. "[rank 1] ").
        interval_s: seconds between plain progress lines when stderr is not a terminal.
        tty: force (True/False) or detect (None) the terminal mode.
    """

    def __init__(self, total: int, prefix: str = "", interval_s: float = 30.0, tty: bool | None = None):
        self.total = total
        self.done = 0
        self.prefix = prefix
        self.interval_s = interval_s
        self._t0 = self._last = time.monotonic()
        self._bar: Any = None
        self._task: Any = None
        if tty is None:
            tty = sys.stderr.isatty()
        if tty and total > 0:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TimeRemainingColumn(), console=Console(stderr=True), transient=False,
            )  # fmt: skip
            self._bar.start()
            self._task = self._bar.add_task(f"{prefix}images", total=total)

    def advance(self, n: int = 1, what: str = "") -> None:
        """Count ``n`` more images; ``what`` describes the current chunk."""
        self.done += n
        if self._bar is not None:
            self._bar.update(self._task, advance=n, description=f"{self.prefix}{what or 'images'}")
            return
        now = time.monotonic()
        if now - self._last >= self.interval_s:
            self._last = now
            log.info("%s%d/%d images (%.0f%%), %s elapsed%s", self.prefix, self.done, self.total,
                     100.0 * self.done / max(self.total, 1), _fmt_s(now - self._t0), f", at {what}" if what else "")  # fmt: skip

    def line(self, text: str) -> None:
        """A line that is always shown (a finished chunk, a failure)."""
        if self._bar is not None:
            self._bar.console.print(f"{self.prefix}{text}", highlight=False, markup=False)
        else:
            log.info("%s%s", self.prefix, text)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def _fmt_s(s: float) -> str:
    m, s = divmod(int(s), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
