"""Loading and corrupting images ahead of the model, in DataLoader worker processes.

A work item is ``(chunk index, image index)``. :class:`WorkItems` turns one into a
:class:`LoadedImage`: the image under the chunk's condition, its label, and the seconds it took. A
data error in a worker comes back as a :class:`LoadedImage` with ``error`` set instead of an
exception, because the DataLoader re-raises a worker's exception with the worker's traceback pasted
into the message; the main process raises it as the same one-line :class:`DataError` whether the
image was loaded in a worker or in-process (``workers = 0``).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import DataError, OvssError
from ..plan import Chunk

log = logging.getLogger("robustbench_ovss.runner")


@dataclass
class LoadedImage:
    """One loaded work item.

    Attributes:
        item: the ``(chunk index, image index)`` it was asked for.
        image_id: the dataset's id of the image.
        image: uint8 [H, W, 3] RGB under the chunk's condition (None when ``error``).
        label: integer [H, W] (None when ``error``).
        seconds: wall time of loading and corrupting it.
        error: one line naming the file and what is wrong ("" when loaded).
    """

    item: tuple[int, int]
    image_id: str
    image: np.ndarray | None
    label: np.ndarray | None
    seconds: float
    error: str = ""

    def raise_error(self) -> None:
        if self.error:
            raise DataError(self.error)


def load_item(ds: Any, chunk: Chunk, idx: int, cache: Any = None, fingerprint: str | None = None
              ) -> tuple[str, np.ndarray, np.ndarray]:  # fmt: skip
    """Image ``idx`` of ``ds`` under the chunk's condition: (image_id, image uint8 HxWx3, label HxW).

    The corruption seed is ``image_seed(run seed, dataset, image_id, corruption, severity)``; a
    corruption cache, when configured and holding the image, gives the same pixels without the cost.

    Raises:
        OvssError: a malformed image or label (one line naming the dataset and image).
    """
    from ..corruptions import corrupt_pair, image_seed

    image_id, image, label = ds[idx]
    image_id = str(image_id)
    image = np.asarray(image)
    label = np.asarray(label)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise DataError(f"dataset {chunk.dataset!r}: image {image_id} is {image.dtype} {image.shape}, expected uint8 HxWx3 RGB")
    if label.shape != image.shape[:2]:
        raise DataError(f"dataset {chunk.dataset!r}: image {image_id} has label shape {label.shape} != image {image.shape[:2]}")
    cond = chunk.condition
    if cond.is_clean:
        return image_id, image, label
    if cache is not None:
        hit = cache.get(chunk.dataset, image_id, cond.corruption, cond.severity, cond.seed, fingerprint=fingerprint)
        if hit is not None:  # the cache stores a label only for corruptions that move pixels
            return image_id, np.asarray(hit[0]), label if hit[1] is None else np.asarray(hit[1])
    seed = image_seed(cond.seed, chunk.dataset, image_id, cond.corruption, cond.severity)
    image, label = corrupt_pair(image, label, cond.corruption, cond.severity, seed)
    return image_id, image, label


def open_cache(path: str, data_roots: dict[str, str] | None = None) -> Any:
    """The corruption cache at ``path``, or None when none is configured; ``data_roots`` (dataset ->
    its folder) completes the regeneration command its errors suggest."""
    if not path:
        return None
    from ..corruptions.cache import CorruptionCache

    return CorruptionCache(path, data_roots)


class WorkItems:
    """Map-style dataset over ``(chunk index, image index)`` keys; loads and corrupts in the workers.

    Args:
        chunks: chunk index -> chunk, for every chunk a key may name.
        datasets: dataset name -> dataset object.
        cache: a corruption cache or None.
        fingerprints: dataset name -> fingerprint (checked against the cache's manifest).
    """

    def __init__(self, chunks: dict[int, Chunk], datasets: dict[str, Any], cache: Any = None,
                 fingerprints: dict[str, str] | None = None):  # fmt: skip
        self.chunks = chunks
        self.datasets = datasets
        self.cache = cache
        self.fingerprints = fingerprints or {}

    def __getitem__(self, item: tuple[int, int]) -> LoadedImage:
        chunk = self.chunks[item[0]]
        t0 = time.perf_counter()
        try:
            image_id, image, label = load_item(self.datasets[chunk.dataset], chunk, item[1], self.cache,
                                               self.fingerprints.get(chunk.dataset))  # fmt: skip
        except OvssError as exc:
            return LoadedImage(item, "", None, None, time.perf_counter() - t0, error=str(exc))
        except Exception as exc:  # noqa: BLE001 - a plugin dataset's own failure: say where, in one line
            log.debug("loading %s image %d failed", chunk.dataset, item[1], exc_info=True)
            text = " ".join(f"{type(exc).__name__}: {exc}".split())[:400]
            return LoadedImage(item, "", None, None, time.perf_counter() - t0,
                               error=f"dataset {chunk.dataset!r}: loading image index {item[1]} failed: {text}")  # fmt: skip
        return LoadedImage(item, image_id, image, label, time.perf_counter() - t0)


def die_with_parent(parent_pid: int, worker_id: int) -> None:
    """DataLoader ``worker_init_fn`` (bound to the run's pid with functools.partial): have the kernel
    kill this worker when the run's process ``parent_pid`` dies.

    Without it, a run killed with ``kill -9`` leaves its loader workers behind for good: their
    watchdog sees the parent gone, but their exit waits on a queue feeder thread that can never flush
    into a pipe nobody reads. Linux only (prctl); elsewhere the watchdog is all there is.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the parent died before the line above took effect
        os._exit(1)


def identity(x: Any) -> Any:
    """The DataLoader's collate function: items go through one by one, unbatched."""
    return x
