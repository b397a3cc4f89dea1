"""``ovss-bench run``, one job per module:

- :mod:`.command`   command-line flags -> one config -> :func:`run` -> exit code;
- :mod:`.engine`    one process from start to end: take the run directory, build, evaluate, finish;
- :mod:`.reuse`     whether a run directory may be resumed or extended by this config;
- :mod:`.build`     plugins, device and dtype, datasets, methods and backend, the plan;
- :mod:`.evaluate`  the per-image path: every open unit of a chunk predicts on each image;
- :mod:`.loading`   loading and corrupting images in DataLoader workers, errors as one line;
- :mod:`.claims`    which worker evaluates which chunk (create-exclusive claims with leases);
- :mod:`.outputs`   ``--save-preds`` samples, predictions and overlays;
- :mod:`.signals`   SIGINT / SIGTERM: finish the prediction, checkpoint, stop.

The records it writes are typed in :mod:`robustbench_ovss.state` and laid out by
:mod:`robustbench_ovss.store`.
"""

from .command import cli_run
from .engine import RunResult, run, write_report
from .evaluate import rotated

__all__ = ["RunResult", "cli_run", "rotated", "run", "write_report"]
