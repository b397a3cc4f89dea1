#!/usr/bin/env python
"""How far an exact skip could take the time outside the model (issue #14's two unmet targets).

    .venv/bin/python benchmarks/bench_fusion_bounds.py                       # the three cases below
    .venv/bin/python benchmarks/bench_fusion_bounds.py --cases activesam-cityscapes

Mid random SAM 3 (``robustbench_ovss.bench.MID_CONFIG``, seed 0), one torch thread, default method
parameters, one synthetic image per case after a warm-up on a 64 x 64 image:

- ``activesam-cityscapes``, ``segearth-ov3-cityscapes``: 1024 x 2048, the 19 Cityscapes classes;
- ``activesam-847``: 512 x 683, ADE20K-847's first names.

Per case one plain ``predict`` is timed, split into the backend's own calls (image encoder, presence,
decoder: "the model"), the fusion of decoded prompts (``PromptFuser.fuse``: full-resolution resize,
sigmoid, product, max) and the rest. A second, instrumented ``predict`` (not timed) measures for every map
the fusion could compute (a kept instance or a semantic map, skipped or not):

- *above the floor*: the fraction of its full-resolution pixels above the running floor when its prompt
  is folded in. Only those pixels can change the labels (:mod:`robustbench_ovss.methods.running`); an
  oracle would compute nothing else;
- *open cells*: the fraction of its model-grid cells that the skip proof
  (:mod:`robustbench_ovss.methods.bounds`) cannot close, i.e. what a proof that does not compute the map
  leaves to compute.

It prints the share of ``predict`` outside the model, and that share again if fusing cost only the open
cells, with no overhead for selecting them: a lower bound for any exact skip at the proof's granularity
(ATen's bilinear kernel computes whole output rows, so a finer skip would re-implement its rounding). For
ActiveSAM at 847 classes it prints the presence preview's share of ``predict``: ``predict / presence`` is
the most any change outside the preview could speed the method up.

Not part of the pass/fail suite; figures from one run, on a shared machine read the shares, not seconds.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from robustbench_ovss.bench import random_backend
from robustbench_ovss.datasets.vocabulary import packaged_vocabulary
from robustbench_ovss.method import MethodContext
from robustbench_ovss.methods import fusion, streaming
from robustbench_ovss.methods.bounds import GridGeometry, sigmoid_upper
from robustbench_ovss.methods.fusion import resize_logits
from robustbench_ovss.registry import METHODS

CASES = {  # name: (method, vocabulary, image (H, W))
    "activesam-cityscapes": ("activesam", "cityscapes", (1024, 2048)),
    "segearth-ov3-cityscapes": ("segearth-ov3", "cityscapes", (1024, 2048)),
    "activesam-847": ("activesam", "ade847", (512, 683)),
}
BACKEND_CALLS = ("encode_image", "presence", "decode")


@dataclass
class Figures:
    """One case's figures (seconds; fractions in [0, 1])."""

    case: str
    predict_s: float = 0.0
    model_s: dict[str, float] = field(default_factory=dict)
    fusion_s: float = 0.0
    maps: int = 0  # maps the fusion could compute (kept instances and semantic maps)
    above_floor: float = 0.0  # mean over maps
    open_cells: float = 0.0  # mean over maps

    @property
    def model_total(self) -> float:
        return sum(self.model_s.values())

    @property
    def outside_share(self) -> float:
        return (self.predict_s - self.model_total) / self.predict_s

    @property
    def pruned_outside_share(self) -> float:
        """The share outside the model if fusion cost only ``open_cells`` of itself, nothing more."""
        outside = self.predict_s - self.model_total - self.fusion_s * (1.0 - self.open_cells)
        return outside / (self.model_total + outside)


def _timed(obj: Any, name: str, sink: dict[str, float]) -> None:
    """Wrap ``obj.name`` so that its wall time adds to ``sink[name]``."""
    fn = getattr(obj, name)

    @functools.wraps(fn)  # keeps the signature: methods inspect the backend's keywords
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            sink[name] = sink.get(name, 0.0) + time.perf_counter() - t0

    setattr(obj, name, wrapper)


def _map_fractions(state: Any, out_hw: tuple[int, int], logits: torch.Tensor, factor: torch.Tensor) -> tuple[float, float]:
    """(above the floor, open cells) of one map: ``logits`` [h, w] on the model grid, ``factor`` its score x
    presence; computed as the fusion computes the map (resize, sigmoid, product)."""
    floor = state.floor()
    value = resize_logits(logits, out_hw).sigmoid_() * factor.float()
    above = float((value > floor).float().mean())
    blocks = GridGeometry(tuple(logits.shape[-2:]), out_hw, floor.device).block_min(floor)
    upper = sigmoid_upper(logits[None])[0] * factor.double()
    return above, float((upper > blocks).double().mean())


def _instrument(sink: list[tuple[float, float]]) -> Callable[[], None]:
    """Record (above, open) for every map offered to ``StreamingLabels.add``; returns the undo."""
    original = streaming.StreamingLabels.add

    def add(self: Any, mask_logits: torch.Tensor, scores: torch.Tensor, semantic_logits: torch.Tensor | None,
            presence: torch.Tensor, label: int) -> None:
        keep = scores > self.conf
        for q in keep.nonzero().flatten().tolist():
            sink.append(_map_fractions(self.state, self.out_hw, mask_logits[q], scores[q].float() * presence.float()))
        if semantic_logits is not None:
            sink.append(_map_fractions(self.state, self.out_hw, semantic_logits, presence.float()))
        return original(self, mask_logits, scores, semantic_logits, presence, label)

    streaming.StreamingLabels.add = add
    return lambda: setattr(streaming.StreamingLabels, "add", original)


def measure(case: str, backend: Any, calls: dict[str, float]) -> Figures:
    """One case on ``backend``, whose :data:`BACKEND_CALLS` add their seconds to ``calls``."""
    method_name, vocab_name, (h, w) = CASES[case]
    vocab = packaged_vocabulary(vocab_name)
    if vocab_name == "ade847":
        vocab = [[names[0]] for names in vocab]  # the dataset's default: first names
    method = METHODS.get(method_name)()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        method.setup(MethodContext(vocabulary=vocab, bg_idx=None, prob_thd=0.0, dataset=vocab_name, backend=backend,
                                   class_names=[names[0] for names in vocab]))
    rng = np.random.default_rng(0)
    method.predict((rng.random((64, 64, 3)) * 255).astype(np.uint8))  # warm-up
    image = (np.random.default_rng(1).random((h, w, 3)) * 255).astype(np.uint8)

    fig = Figures(case)
    calls.clear()  # the timed predict's calls only
    fusion_time: dict[str, float] = {}
    fuse = fusion.PromptFuser.fuse
    _timed(fusion.PromptFuser, "fuse", fusion_time)
    try:
        t0 = time.perf_counter()
        method.predict(image)
        fig.predict_s = time.perf_counter() - t0
    finally:
        fusion.PromptFuser.fuse = fuse
    fig.model_s = {k: calls.get(k, 0.0) for k in BACKEND_CALLS}
    fig.fusion_s = fusion_time.get("fuse", 0.0)

    fractions: list[tuple[float, float]] = []
    undo = _instrument(fractions)
    try:
        method.predict(image)
    finally:
        undo()
    fig.maps = len(fractions)
    if fractions:
        fig.above_floor = float(np.mean([a for a, _ in fractions]))
        fig.open_cells = float(np.mean([o for _, o in fractions]))
    return fig


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--json", action="store_true", help="also print the figures as JSON lines")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    backend = random_backend("mid")
    calls: dict[str, float] = {}
    for name in BACKEND_CALLS:
        _timed(backend, name, calls)
    rows = []
    for case in args.cases:
        fig = measure(case, backend, calls)
        rows.append(fig)
        print(f"{case}: predict {fig.predict_s:.2f} s, model {fig.model_total:.2f} s "
              f"({', '.join(f'{k} {v:.2f}' for k, v in fig.model_s.items() if v)}), fusion {fig.fusion_s:.2f} s", flush=True)
        if args.json:
            print(json.dumps({**asdict(fig), "outside_share": fig.outside_share,
                              "pruned_outside_share": fig.pruned_outside_share}))
    print("\n| case | predict s | model s | outside the model | fusion s | maps | pixels above the floor | "
          "cells the proof leaves open | outside the model if only open cells were fused | presence share |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for f in rows:
        presence = f.model_s.get("presence", 0.0) / f.predict_s
        print(f"| {f.case} | {f.predict_s:.2f} | {f.model_total:.2f} | {f.outside_share:.0%} | {f.fusion_s:.2f} | {f.maps} | "
              f"{f.above_floor:.1%} | {f.open_cells:.1%} | {f.pruned_outside_share:.0%} | {presence:.0%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
