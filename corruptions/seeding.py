"""Per-image corruption seeds (DESIGN §4): a pure function of the run seed and the image's identity.

Never Python's ``hash()`` (salted per process) and never the loader index (changes with sharding).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np


def image_seed(base_seed: int, dataset: str, image_id: str, corruption: str, severity: int) -> int:
    """Seed of one corrupted image: first 8 bytes (big-endian) of sha256("base|dataset|id|corruption|severity").

    Returns:
        int in [0, 2**64). Libraries that take 32-bit seeds get ``numpy_seed(seed)``.
    """
    key = f"{base_seed}|{dataset}|{image_id}|{corruption}|{severity}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big")


def numpy_seed(seed: int) -> int:
    """Fold a 64-bit seed into ``np.random.seed``'s range [0, 2**32) (xor of the two halves)."""
    return ((seed >> 32) ^ seed) & 0xFFFFFFFF


# One lock for every use of numpy's global RNG by the corruptions: the reference library draws from it,
# so two threads corrupting at once would interleave their draws and break determinism.
_GLOBAL_RNG_LOCK = threading.RLock()


@contextmanager
def seeded_global_numpy(seed: int) -> Iterator[None]:
    """Run a block with ``np.random.seed(numpy_seed(seed))`` and restore the global RNG state after.

    The global state (including numpy's cached Gaussian) is exactly as it was found when the block
    exits, normally or by an exception. Holds a process-wide lock, so threads are serialised here.
    """
    with _GLOBAL_RNG_LOCK:
        state = np.random.get_state()
        np.random.seed(numpy_seed(seed))
        try:
            yield
        finally:
            np.random.set_state(state)
