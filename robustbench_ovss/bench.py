"""``ovss-bench bench``: images/s and peak memory of the methods on this device, with random weights of
the real SAM 3 architecture and no data, and the wall time of a config's whole grid estimated from them.

No checkpoint and no dataset are needed: the model is built from its config with random weights
(``real`` = ``Sam3Config()``, the 840 M-parameter architecture; ``mid`` and ``tiny`` for CPUs and
tests) and wrapped in the project's backend, so the timed code is exactly what a run executes. The
images are random pixels at each dataset's typical size; the vocabularies are the datasets' own. Random
weights make the model's cost real (every prompt runs the same layers) but not what the fusion finds in
its outputs: how many instances pass the confidence threshold and how many prompts the skip proofs
remove (``methods/bounds.py``) depend on the weights, so the post-processing share on random weights is
a bound, not a forecast. ``--model checkpoint`` times the config's own checkpoint instead.

Grid estimate: per (method, dataset), images (the split size, or the run's ``limit``) x conditions
(clean + corruptions x severities x seeds; one for ``clean_only`` datasets) x measured seconds per
image, plus the method's setup once per dataset. Corruption, data loading and result writing are not
included (loader workers overlap them with the model in a run).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigError

__all__ = ["MODEL_SIZES", "MID_CONFIG", "random_backend", "peak_memory", "typical_size", "dataset_facts",
           "Case", "measure_case", "grid_estimate", "cli_bench"]

T = TypeVar("T")
MODEL_SIZES = ("real", "mid", "tiny", "checkpoint")
#: The mid-size random SAM 3 of the CPU benchmarks: ViT 4 x 192 at 504 px (mask grid 144), DETR width 128,
#: 2 encoder / 3 decoder layers, 50 queries.
MID_CONFIG = dict(hidden_size=128, text_hidden_size=128, vit_layers=4, text_layers=2, detr_encoder_layers=2,
                  detr_decoder_layers=3, num_queries=50, num_heads=4, window_size=12)
MID_VIT_WIDTH = 192  # the mid ViT is wider than the DETR
MID_IMAGE_SIZE = 504

#: Typical image size (H, W) of each benchmark's images, for timing (the images vary within most sets).
TYPICAL_SIZE = {
    "voc21": (375, 500), "voc20": (375, 500), "voc-sample": (375, 500),
    "context60": (375, 500), "context59": (375, 500), "pc459": (375, 500),
    "coco_object": (480, 640), "coco_stuff": (480, 640),
    "cityscapes": (1024, 2048), "acdc-fog": (1080, 1920), "acdc-night": (1080, 1920),
    "acdc-rain": (1080, 1920), "acdc-snow": (1080, 1920), "dark-zurich": (1080, 1920),
    "ade20k": (512, 683), "ade847": (512, 683),
}  # fmt: skip
DEFAULT_SIZE = (512, 683)


# -- models ---------------------------------------------------------------------------------------
def random_model(size: str, device: str = "cpu") -> tuple[Any, Any]:
    """A random-weight ``Sam3Model`` (eval mode) and the word-level tokenizer of the tiny models.

    ``real`` = ``Sam3Config()`` (built on ``device``); ``mid`` = :data:`MID_CONFIG`; seed 0 either way.
    """
    import torch
    from transformers import Sam3Config, Sam3Model

    from .backends.tiny import build_tokenizer, tiny_config, tiny_word_list

    tok = build_tokenizer(tiny_word_list())  # ids < 49408; random weights make the words irrelevant
    if size == "real":
        config = Sam3Config()
        config.text_config.pad_token_id, config.text_config.bos_token_id = tok.pad_token_id, tok.bos_token_id
        config.text_config.eos_token_id = tok.eos_token_id
    elif size == "mid":
        config = tiny_config(image_size=MID_IMAGE_SIZE, vocab_size=len(tok), initializer_range=0.2, **MID_CONFIG)
        vit = config.vision_config.backbone_config
        vit.hidden_size, vit.intermediate_size = MID_VIT_WIDTH, 4 * MID_VIT_WIDTH
    else:
        raise ConfigError(f"model size must be real or mid, got {size!r}")
    torch.manual_seed(0)
    with torch.device(device):
        model = Sam3Model(config).eval()
    return model, tok


def random_backend(size: str, device: str = "cpu", dtype: str = "fp32", checkpoint: str = "") -> Any:
    """The backend on a random model of ``size`` (:data:`MODEL_SIZES`): ``tiny`` = ``builtin:tiny-random``,
    ``checkpoint`` = the given checkpoint (real weights)."""
    from .backends.sam3 import Sam3Backend, resolve_device

    if size == "tiny":
        return Sam3Backend("builtin:tiny-random", device=device, dtype=dtype)
    if size == "checkpoint":
        return Sam3Backend(checkpoint, device=device, dtype=dtype)
    dev = str(resolve_device(device))
    model, tok = random_model(size, dev)
    return Sam3Backend.from_model(model, tok, device=dev, dtype=dtype, identity=f"random-{size}")


# -- measuring --------------------------------------------------------------------------------------
def peak_memory(fn: Callable[[], T], device: Any) -> tuple[T, int]:
    """Run ``fn`` and return (its result, the peak of extra tensor memory during it, bytes).

    CUDA: ``max_memory_allocated`` over the call minus what was allocated before. CPU: the running total
    of the profiler's allocation events in time order (CPU tensors bypass tracemalloc); the profiler
    slows the call, so time it separately.
    """
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
        out = fn()
        torch.cuda.synchronize(dev)
        return out, int(torch.cuda.max_memory_allocated(dev) - base)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = fn()
    current = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        current += event.self_cpu_memory_usage
        peak = max(peak, current)
    return out, int(peak)


# -- what a config's grid holds ---------------------------------------------------------------------
@dataclass(frozen=True)
class DatasetFacts:
    """What timing and the estimate need of one dataset of a config, read without its files.

    Attributes:
        name: registry name; vocabulary: alias lists per label id (the prompts a method decodes);
        bg_idx, prob_thd: the background rule; n_images: images evaluated (split size, or the run's limit);
        conditions: clean + corruption x severity x seed conditions it is evaluated under;
        image_hw: (H, W) of the timing image (:data:`TYPICAL_SIZE`; synthetic: its own size).
    """

    name: str
    vocabulary: tuple[tuple[str, ...], ...]
    bg_idx: int | None
    prob_thd: float
    n_images: int
    conditions: int
    image_hw: tuple[int, int]

    @property
    def prompts(self) -> int:
        return sum(len(a) for a in self.vocabulary)


def _vocabulary_of(name: str, cls: Any, override: str, options: dict[str, Any]) -> tuple[list[list[str]], Any, float, int | None]:
    """(classes, bg_idx, prob_thd, split size) of a dataset, without listing its files where the class allows."""
    from .datasets.large_vocab import _SynonymDataset
    from .datasets.mmseg import MMSegDataset
    from .datasets.vocabulary import packaged_vocabulary, resolve_vocabulary

    if isinstance(cls, type) and issubclass(cls, MMSegDataset):
        classes = resolve_vocabulary(name, packaged_vocabulary(cls.vocab_name or name), override or None)
        if issubclass(cls, _SynonymDataset) and not options.get("synonyms", False):
            classes = [[a[0]] for a in classes]
        return classes, cls.default_bg_idx, float(cls.default_prob_thd), cls.split_size
    ds = cls(vocab=override or None, **options)  # file-free datasets (synthetic, voc-sample) or plugins
    return [list(a) for a in ds.classes], ds.bg_idx, float(ds.prob_thd), len(ds)


def dataset_facts(cfg: Any) -> list[DatasetFacts]:
    """One :class:`DatasetFacts` per dataset of a :class:`~robustbench_ovss.config.RunConfig`."""
    from .plan import conditions
    from .registry import DATASETS

    conds = conditions(cfg.corruptions.names, cfg.corruptions.severities, cfg.run.seeds, cfg.corruptions.clean)
    out = []
    for name in cfg.datasets.names:
        cls = DATASETS.get(name)
        options = dict(cfg.datasets.options.get(name, {}))
        classes, bg_idx, prob_thd, size = _vocabulary_of(name, cls, cfg.datasets.vocab.get(name, ""), options)
        if size is None:
            raise ConfigError(f"dataset {name!r} has no known split size; set [run] limit to estimate its grid")
        n = min(size, cfg.run.limit) if cfg.run.limit > 0 else size
        n_cond = sum(1 for c in conds if c.is_clean or name not in cfg.corruptions.clean_only)
        out.append(DatasetFacts(name, tuple(tuple(a) for a in classes), bg_idx, prob_thd, n, n_cond,
                                typical_size(name, options)))
    return out


def typical_size(dataset: str, options: dict[str, Any] | None = None) -> tuple[int, int]:
    """(H, W) of a dataset's timing image: :data:`TYPICAL_SIZE`, the synthetic set's own size, else 512 x 683."""
    if dataset == "synthetic":
        from .datasets.synthetic import SyntheticDataset, _size_hw

        return _size_hw((options or {}).get("size", SyntheticDataset.OPTION_DEFAULTS["size"]))
    return TYPICAL_SIZE.get(dataset, DEFAULT_SIZE)


# -- measuring one case -----------------------------------------------------------------------------
@dataclass
class Case:
    """One method on one dataset's vocabulary and image size: measured cost per image."""

    method: str  # display label
    dataset: str
    prompts: int
    image_hw: tuple[int, int]
    seconds_per_image: float
    images_per_s: float
    setup_s: float
    peak_extra_mb: float  # extra tensor memory of one predict over what was allocated before it
    peak_total_mb: float | None  # CUDA: the device's peak allocation during predict (model weights included)
    decoded: float  # prompts decoded per image (ActiveSAM: its active set)
    previewed: float
    timed_images: int
    resolved: dict[str, Any]


def _autocast(backend: Any) -> Any:
    import contextlib

    import torch

    if getattr(backend, "dtype", "fp32") == "bf16":
        return torch.autocast(device_type=backend.device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def measure_case(spec: Any, backend: Any, facts: DatasetFacts, images: int, warmup: int, seed: int = 0) -> Case:
    """Time ``predict`` of the configured method ``spec`` on random images of ``facts.image_hw``.

    ``warmup`` untimed calls come first; the first of them (or an extra call when ``warmup`` is 0)
    measures peak memory (:func:`peak_memory`), then ``images`` calls are timed, synchronised.
    """
    import numpy as np
    import torch

    from .method import MethodContext
    from .registry import METHODS

    m = METHODS.get(spec.name)(**spec.params)
    device = backend.device
    ctx = MethodContext(vocabulary=[list(a) for a in facts.vocabulary], bg_idx=facts.bg_idx, prob_thd=facts.prob_thd,
                        dataset=facts.name, device=str(device), dtype=backend.dtype,
                        backend=backend if getattr(m, "needs_backend", False) else None,
                        class_names=[a[0] for a in facts.vocabulary])
    rng = np.random.default_rng(seed)
    h, w = facts.image_hw
    pics = [(rng.random((h, w, 3)) * 255).astype(np.uint8) for _ in range(max(1, images))]

    def predict(img: Any) -> Any:
        with torch.inference_mode(), _autocast(backend):
            return m.predict(img)

    backend.synchronize()
    t0 = time.perf_counter()
    with warnings.catch_warnings(), _autocast(backend):
        warnings.simplefilter("ignore")  # e.g. no reference confidence for a plugin dataset: reported elsewhere
        m.setup(ctx)
    backend.synchronize()
    setup_s = time.perf_counter() - t0
    total_before = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
    _, peak = peak_memory(lambda: predict(pics[0]), device)
    peak_total = (total_before + peak) / 2**20 if device.type == "cuda" else None
    for _ in range(max(0, warmup - 1)):
        predict(pics[0])
    times, decoded, previewed = [], [], []
    for img in pics[:images]:
        backend.synchronize()
        t0 = time.perf_counter()
        predict(img)
        backend.synchronize()
        times.append(time.perf_counter() - t0)
        st = m.stats() if hasattr(m, "stats") else {}
        decoded.append(float(st.get("prompts_decoded", 0)))
        previewed.append(float(st.get("prompts_previewed", 0)))
    sec = statistics.mean(times) if times else float("nan")
    resolved = m.resolved_params() if hasattr(m, "resolved_params") else dict(getattr(m, "params", {}))
    return Case(spec.display, facts.name, facts.prompts, (h, w), sec, 1.0 / sec if times else float("nan"), setup_s,
                peak / 2**20, peak_total, statistics.mean(decoded) if decoded else 0.0,
                statistics.mean(previewed) if previewed else 0.0, len(times), resolved)


# -- the estimate -----------------------------------------------------------------------------------
def grid_estimate(cases: Sequence[Case], facts: Sequence[DatasetFacts]) -> list[dict[str, Any]]:
    """Seconds of each (method, dataset) of the grid: images x conditions x seconds per image + setup."""
    by_name = {f.name: f for f in facts}
    rows = []
    for c in cases:
        f = by_name[c.dataset]
        images = f.n_images * f.conditions
        rows.append({"method": c.method, "dataset": c.dataset, "images": f.n_images, "conditions": f.conditions,
                     "predict_calls": images, "seconds": images * c.seconds_per_image + c.setup_s})
    return rows


# -- the command ------------------------------------------------------------------------------------
def _fmt_hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 360 else f"{seconds / 60:.1f} min"


def render(cases: Sequence[Case], grid: Sequence[dict[str, Any]], header: dict[str, Any]) -> str:
    """Markdown: the measured cases, then the grid estimate."""
    lines = [f"device {header['device']}, dtype {header['dtype']}, model {header['model']}, "
             f"torch threads {header['threads']}; {header['timed_images']} timed image(s) per case", "",
             "| method | dataset | prompts | decoded / image | image | s / image | images/s | setup s | peak extra MB |"
             + (" peak total MB |" if any(c.peak_total_mb is not None for c in cases) else ""),
             "|---|---|---:|---:|---|---:|---:|---:|---:|" + ("---:|" if any(c.peak_total_mb is not None for c in cases) else "")]
    for c in cases:
        row = (f"| {c.method} | {c.dataset} | {c.prompts} | {c.decoded:.0f} | {c.image_hw[0]}x{c.image_hw[1]} | "
               f"{c.seconds_per_image:.3f} | {c.images_per_s:.3f} | {c.setup_s:.1f} | {c.peak_extra_mb:.0f} |")
        if c.peak_total_mb is not None:
            row += f" {c.peak_total_mb:.0f} |"
        lines.append(row)
    lines += ["", "Grid estimate (images x conditions x s/image + setup; corruption and data loading not included):", "",
              "| method | dataset | images | conditions | predict calls | time |", "|---|---|---:|---:|---:|---:|"]
    for g in grid:
        lines.append(f"| {g['method']} | {g['dataset']} | {g['images']} | {g['conditions']} | {g['predict_calls']} | "
                     f"{_fmt_hours(g['seconds'])} |")
    per_method: dict[str, float] = {}
    for g in grid:
        per_method[g["method"]] = per_method.get(g["method"], 0.0) + g["seconds"]
    for name, s in per_method.items():
        lines.append(f"| **{name}** | all | | | | **{_fmt_hours(s)}** |")
    lines.append(f"| **all methods** | | | | | **{_fmt_hours(sum(per_method.values()))}** |")
    return "\n".join(lines)


def cli_bench(args: argparse.Namespace) -> int:
    """``ovss-bench bench [CONFIG]``: measure each (method, dataset) of the config and estimate its grid."""
    import torch

    from .backends.sam3 import resolve_device, resolve_dtype
    from .config import load_config

    cfg = load_config(args.config)
    if args.threads:
        torch.set_num_threads(args.threads)
    elif cfg.run.threads > 0:
        torch.set_num_threads(cfg.run.threads)
    device = resolve_device(args.device or cfg.run.device)
    dtype = resolve_dtype(args.dtype or cfg.run.dtype, device)
    facts = dataset_facts(cfg)
    if args.datasets:
        unknown = sorted(set(args.datasets) - {f.name for f in facts})
        if unknown:
            raise ConfigError(f"--datasets {', '.join(unknown)}: not in the config's datasets ({', '.join(f.name for f in facts)})")
        facts = [f for f in facts if f.name in args.datasets]
    specs = [s for s in cfg.methods if not args.methods or s.display in args.methods or s.name in args.methods]
    if not specs:
        raise ConfigError(f"--methods {' '.join(args.methods)}: none of the config's methods "
                          f"({', '.join(s.display for s in cfg.methods)})")
    if args.image_size:
        facts = [DatasetFacts(f.name, f.vocabulary, f.bg_idx, f.prob_thd, f.n_images, f.conditions, tuple(args.image_size))
                 for f in facts]
    t_build = time.perf_counter()
    backend = random_backend(args.model, str(device), dtype, checkpoint=cfg.backend.checkpoint)
    build_s = time.perf_counter() - t_build
    cases = []
    for f in facts:
        for spec in specs:
            case = measure_case(spec, backend, f, args.images, args.warmup)
            cases.append(case)
            print(f"{case.method} on {case.dataset} ({case.prompts} prompts, {case.image_hw[0]}x{case.image_hw[1]}): "
                  f"{case.images_per_s:.3f} images/s, peak extra {case.peak_extra_mb:.0f} MB", flush=True)
    grid = grid_estimate(cases, facts)
    header = {"device": device_name(device), "dtype": dtype, "model": backend.identity, "threads": torch.get_num_threads(),
              "timed_images": args.images, "config": str(cfg.source or cfg.name), "build_s": round(build_s, 1),
              "torch": torch.__version__}
    text = render(cases, grid, header)
    print("\n" + text)
    if args.json:
        out = {"header": header, "cases": [asdict(c) for c in cases], "grid": grid,
               "total_hours": sum(g["seconds"] for g in grid) / 3600}
        Path(args.json).write_text(json.dumps(out, indent=1, default=str) + "\n", encoding="utf-8")
    return 0


def device_name(device: Any) -> str:
    """"cuda:0 (NVIDIA H200)" or "cpu"."""
    import torch

    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)
