"""``ovss-bench run``: command-line flags -> one validated config -> :func:`.engine.run` -> exit code."""

from __future__ import annotations

import logging
import sys
from typing import Any

from ..config import apply_overrides, load_config
from ..plan import resolve_shard
from .build import load_plugins
from .engine import run
from .signals import Terminated

log = logging.getLogger("robustbench_ovss.runner")


def cli_run(args: Any) -> int:
    """Load plugins and the config, apply every flag through ``apply_overrides``, run this process's part.

    Exit codes: 0 done (also when other workers still hold some units), 1 a unit failed, 2 a user
    error (one line), 130 Ctrl-C, 143 SIGTERM (progress checkpointed: rerun the same command).
    """
    shard = resolve_shard(args.shard)
    load_plugins(args.plugins or [])
    cfg = load_config(args.config)
    cfg = apply_overrides(
        cfg, methods=args.methods, datasets=args.datasets, corruptions=args.corruptions,
        severities=args.severities, seeds=args.seeds, limit=args.limit, out=args.out,
        data_root=args.data_root, checkpoint=args.checkpoint, device=args.device, no_clean=args.no_clean,
        workers=args.workers, save_preds=args.save_preds,
    )  # fmt: skip
    limit = f"at most {cfg.run.limit} image(s) per dataset" if cfg.run.limit else "whole splits"
    if args.config is None:
        log.info("config: the packaged demo (%s): %s; pass a config file or --limit N to change that", cfg.source, limit)
        if args.datasets and args.limit is None and cfg.run.limit:
            log.warning("no CONFIG given: the demo's limit = %d applies to --datasets %s too; pass --limit 0 to "
                        "evaluate the whole split", cfg.run.limit, " ".join(args.datasets))  # fmt: skip
    else:
        log.info("config: %s: %s", cfg.source, limit)
    try:
        res = run(cfg, shard=shard, force=bool(args.force), extend=bool(args.extend))
    except Terminated:
        print("ovss-bench run: terminated; progress is checkpointed, rerun the same command to resume", file=sys.stderr)
        return 143
    if res.held_elsewhere and not res.finished:
        print(f"ovss-bench run: this worker is done; {res.held_elsewhere} unit(s) are still held by other workers "
              f"on {res.run_dir}, the last to finish collects and reports", file=sys.stderr)  # fmt: skip
    return res.exit_code
