"""Where a result came from: timestamps, library versions and the package's git commit."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path


def now_iso() -> str:
    """Current UTC time, ISO 8601 with microseconds (orders unit files finished within one second)."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _dist_version(*names: str) -> str:
    for n in names:
        try:
            return metadata.version(n)
        except metadata.PackageNotFoundError:
            continue
    return ""


def versions() -> dict[str, str]:
    """Versions of the libraries that shape the numbers (read from metadata; imports nothing)."""
    return {
        "torch": _dist_version("torch"),
        "transformers": _dist_version("transformers"),
        "corruption_lib": _dist_version("imagecorruptions-imaug", "imagecorruptions"),
        "package": _dist_version("ovss-bench"),
        "python": ".".join(str(x) for x in sys.version_info[:3]),
    }


def git_sha() -> str:
    """Commit of the package's checkout, with ``-dirty`` for uncommitted tracked changes; "" outside git."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return ""
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5,
        )  # fmt: skip
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return ""
