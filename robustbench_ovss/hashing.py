"""The one stable hash of the project: sha256 over a canonical JSON dump.

Unit keys, params hashes, vocabulary hashes and the config hash are all this function. Keys are
sorted and non-JSON values go through ``str``, so equal content gives an equal hash on any machine
and Python version (never Python's salted ``hash()``).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def stable_hash(obj: Any, n: int = 12, *, compact: bool = True) -> str:
    """First ``n`` hex digits of sha256 over ``json.dumps(obj, sort_keys=True, default=str)``.

    Args:
        obj: JSON-like data (dicts, lists, numbers, strings; anything else is hashed as ``str(x)``).
        n: number of hex digits returned.
        compact: ``separators=(",", ":")`` when True, json's default ``", "`` / ``": "`` when False.
            Both forms exist because params hashes were first written with the default separators;
            changing the bytes would change every unit key and orphan every existing run directory.
    """
    separators = (",", ":") if compact else (", ", ": ")
    blob = json.dumps(obj, sort_keys=True, default=str, separators=separators)
    return hashlib.sha256(blob.encode()).hexdigest()[:n]
