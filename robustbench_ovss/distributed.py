"""Multi-process runs under torchrun: a gloo process group used only for an end-of-run barrier.

The run directory is the only channel that carries results: every process writes its own chunk
checkpoints, and whichever process sees all chunks of a unit complete writes the unit file (the
write is atomic and idempotent). That alone is enough for independent processes (a Slurm array, or
several nodes sharing a run directory). Under torchrun the ranks additionally meet at a barrier at
the end, so that rank 0 finalises every unit and collects the tables once, after all ranks are done,
and its exit code speaks for the whole run. gloo works on every machine (no GPU needed for a
barrier), so the same code path runs under CPU-only CI.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta

from .plan import ShardInfo

log = logging.getLogger(__name__)

# A shard can run for hours longer than another (ADE20K x a slow method); the barrier must outwait it.
DEFAULT_BARRIER_TIMEOUT_S = 7 * 24 * 3600


class ProcessGroup:
    """Holds the gloo group when one was created; every method is a no-op otherwise."""

    def __init__(self, shard: ShardInfo):
        self.shard = shard
        self.active = False
        if not shard.distributed:
            return
        if "MASTER_ADDR" not in os.environ or "MASTER_PORT" not in os.environ:
            log.warning(
                "WORLD_SIZE=%d without MASTER_ADDR/MASTER_PORT: no barrier; each process finalises what it "
                "sees complete (start with torchrun for a coordinated end)", shard.world_size,
            )  # fmt: skip
            return
        import torch.distributed as dist

        timeout = float(os.environ.get("OVSS_BENCH_BARRIER_TIMEOUT_S", DEFAULT_BARRIER_TIMEOUT_S))
        try:
            dist.init_process_group(
                "gloo", rank=shard.rank, world_size=shard.world_size, timeout=timedelta(seconds=timeout)
            )
            self.active = True
        except Exception as exc:  # the file-based protocol still gives correct results without it
            log.warning("torch.distributed (gloo) init failed (%s); continuing without a barrier", exc)

    @property
    def is_leader(self) -> bool:
        """True for the process that finalises and collects after the barrier (rank 0, or everyone
        when there is no group)."""
        return not self.active or self.shard.rank == 0

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.destroy_process_group()
            self.active = False
