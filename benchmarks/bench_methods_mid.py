#!/usr/bin/env python
"""Old vs new code on the mid random SAM 3: predict time, peak memory, share outside the model, labels.

    .venv/bin/python benchmarks/bench_methods_mid.py                    # every case, e1439eb and 8c49086 vs this tree
    .venv/bin/python benchmarks/bench_methods_mid.py --cases activesam-847 --old main --variant bucket_size=32

Each ``--old`` git revision is exported (``git archive``, no worktree) to ``--scratch`` and run from there
with this virtual environment (the package's ``methods/``, ``corruptions/``, ``configs/`` directories are
linked under ``robustbench_ovss/`` so that imports resolve to the old files). Every (case, version) run is
a fresh process that builds the same mid model (``robustbench_ovss.bench.MID_CONFIG``, seed 0, one torch
thread), sets the method up, warms it up on a 64 x 64 image, then times one ``predict`` on the case's
image (512 x 683, or 1024 x 2048 for the Cityscapes cases). Versions alternate (old.., new, new, ..old
for two rounds by default), and per case the table shows the median of the rounds:

- predict seconds, and the seconds spent in the backend (image encoder, decoder, presence): the rest is
  post-processing, "outside the model";
- peak memory: the process's peak resident set during ``predict`` (``VmHWM`` after resetting it through
  ``/proc/self/clear_refs``) above its resident set before;
- labels: pixels that differ from the new code's labels, and from the first version's (0 = identical).

SegEarth-OV3 at 847 classes is not run (hours on a CPU): it is estimated from the 21- and 150-class runs as
fixed + per-prompt cost. Not part of the pass/fail suite.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = {  # name: (method, vocabulary, image (H, W)); default params (ActiveSAM's hypernyms: every
    # version finds the same ones, from WordNet or the shipped table, outside the timed predict)
    "activesam-21": ("activesam", "voc21", (512, 683)),
    "activesam-150": ("activesam", "ade20k", (512, 683)),
    "activesam-847": ("activesam", "ade847", (512, 683)),
    "segearth-ov3-21": ("segearth-ov3", "voc21", (512, 683)),
    "segearth-ov3-150": ("segearth-ov3", "ade20k", (512, 683)),
    "activesam-cityscapes": ("activesam", "cityscapes", (1024, 2048)),
    "segearth-ov3-cityscapes": ("segearth-ov3", "cityscapes", (1024, 2048)),
}
DEFAULT_OLD = ["e1439eb", "8c49086"]  # e1439eb: before items 2-4 of issue #14 (after 1 and 5); 8c49086 = 7349a4c^: when it was filed

WORKER = r'''
import functools, json, sys, time, warnings
spec = json.loads(sys.argv[1])
import numpy as np, torch
torch.set_num_threads(1)
from transformers import Sam3Model
import robustbench_ovss
from robustbench_ovss.backends.sam3 import Sam3Backend
from robustbench_ovss.backends.tiny import build_tokenizer, tiny_config, tiny_word_list
from robustbench_ovss.datasets.vocabulary import packaged_vocabulary
from robustbench_ovss.method import MethodContext
from robustbench_ovss.registry import METHODS

tok = build_tokenizer(tiny_word_list())
cfg = tiny_config(image_size=spec["image_size"], vocab_size=len(tok), initializer_range=0.2, **spec["mid"])
vit = cfg.vision_config.backbone_config
vit.hidden_size, vit.intermediate_size = spec["vit_width"], 4 * spec["vit_width"]
torch.manual_seed(0)
backend = Sam3Backend.from_model(Sam3Model(cfg).eval(), tok, identity="mid-random")
model_s = [0.0]
for name in ("encode_image", "decode", "presence"):
    fn = getattr(backend, name)
    @functools.wraps(fn)  # keeps the signature: ActiveSAM asks encode_image for presence_only
    def timed(*a, _fn=fn, **k):
        t0 = time.perf_counter()
        try:
            return _fn(*a, **k)
        finally:
            model_s[0] += time.perf_counter() - t0
    setattr(backend, name, timed)
vocab = packaged_vocabulary(spec["vocab"])
if spec["vocab"] == "ade847":
    vocab = [[a[0]] for a in vocab]  # the dataset's default: first names
bg = 0 if spec["vocab"] == "voc21" else None
m = METHODS.get(spec["method"])(**spec["params"])
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    m.setup(MethodContext(vocabulary=vocab, bg_idx=bg, prob_thd=0.4 if bg is not None else 0.0, dataset=spec["vocab"],
                          backend=backend, class_names=[a[0] for a in vocab]))
rng = np.random.default_rng(0)
m.predict((rng.random((64, 64, 3)) * 255).astype(np.uint8))  # warm-up: the model path at the same input size
h, w = spec["hw"]
image = (np.random.default_rng(1).random((h, w, 3)) * 255).astype(np.uint8)

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak resident set (VmHWM) to the current one
rss0 = status("VmRSS:")
model_s[0] = 0.0
t0 = time.perf_counter()
pred = m.predict(image)
dt = time.perf_counter() - t0
peak = status("VmHWM:") - rss0
np.save(spec["labels"], pred.cpu().numpy().astype(np.int32))
st = m.stats()
print(json.dumps({"predict_s": dt, "model_s": model_s[0], "peak_mb": peak / 2**20,
                  "decoded": st.get("prompts_decoded"), "previewed": st.get("prompts_previewed", 0),
                  "source": robustbench_ovss.__file__}))
'''


def export(rev: str, scratch: Path) -> Path:
    """The package tree of ``rev`` under ``scratch`` (``git archive``), importable with PYTHONPATH."""
    sha = subprocess.run(["git", "rev-parse", "--short=7", rev], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()
    dest = scratch / f"ovss-{sha}"
    if not (dest / "robustbench_ovss").is_dir():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", sha], cwd=ROOT, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    for sub in ("methods", "corruptions", "configs"):  # pyproject's package-dir mapping, as links
        link = dest / "robustbench_ovss" / sub
        if not link.exists():
            link.symlink_to(dest / sub, target_is_directory=True)
    return dest


def run(case: str, source: Path, labels: Path, params: dict) -> dict:
    from robustbench_ovss.bench import MID_CONFIG, MID_IMAGE_SIZE, MID_VIT_WIDTH

    method, vocab, hw = CASES[case]
    spec = {"method": method, "vocab": vocab, "hw": hw, "params": params, "labels": str(labels), "mid": MID_CONFIG,
            "vit_width": MID_VIT_WIDTH, "image_size": MID_IMAGE_SIZE}
    env = {**os.environ, "PYTHONPATH": str(source), "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    # cwd = the tree itself: ``python -c`` puts the working directory first on sys.path
    out = subprocess.run([sys.executable, "-c", WORKER, json.dumps(spec)], env=env, capture_output=True, text=True,
                         cwd=source)
    if out.returncode:
        raise SystemExit(f"{case} from {source} failed:\n{out.stderr[-3000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    if not res["source"].startswith(str(source)):
        raise SystemExit(f"{case}: imported {res['source']}, not the tree under {source}")
    return res


def main(argv: list[str] | None = None) -> int:
    import numpy as np

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--old", nargs="*", default=DEFAULT_OLD, help="git revisions to compare with this tree")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--variant", action="append", default=[], metavar="KEY=VALUE",
                    help="also run this tree with a changed method param, e.g. bucket_size=32 (repeatable)")
    ap.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    versions = {rev: (export(rev, args.scratch), {}) for rev in args.old}
    for text in args.variant:
        key, _, value = text.partition("=")
        versions[f"new {key}={value}"] = (ROOT, {key: json.loads(value) if value[:1].isdigit() else value})
    versions["new"] = (ROOT, {})
    order = list(versions)
    results: dict[str, dict[str, list[dict]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases:
            results[case] = {v: [] for v in order}
            for r in range(args.rounds):
                for v in order[::-1] if r % 2 else order:  # old.., new, new, ..old
                    lab = Path(tmp) / f"{case}-{v}-{r}.npy"
                    res = run(case, versions[v][0], lab, versions[v][1])
                    res["labels"] = np.load(lab)
                    results[case][v].append(res)
                    print(f"{case} {v} round {r}: predict {res['predict_s']:.2f} s, model {res['model_s']:.2f} s, "
                          f"peak {res['peak_mb']:.0f} MB", flush=True)
    rows = []
    for case, per in results.items():
        ref = per["new"][0]["labels"]
        first = per[order[0]][0]["labels"]  # the first version run (the first --old), for old-vs-old agreement
        for v in order:
            runs = per[v]
            pred = statistics.median(x["predict_s"] for x in runs)
            model = statistics.median(x["model_s"] for x in runs)
            rows.append({"case": case, "version": v, "predict_s": pred, "model_s": model,
                         "outside_share": statistics.median((x["predict_s"] - x["model_s"]) / x["predict_s"] for x in runs),
                         "peak_mb": statistics.median(x["peak_mb"] for x in runs), "decoded": runs[0]["decoded"],
                         "differing_pixels": max(int((x["labels"] != ref).sum()) for x in runs),
                         "differing_from_first": max(int((x["labels"] != first).sum()) for x in runs),
                         "pixels": int(ref.size)})
    print(f"\n| case | version | predict s | model s | outside the model | peak MB | decoded | speed-up of new | "
          f"pixels differing from new | from {order[0]} |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        new = next(x for x in rows if x["case"] == row["case"] and x["version"] == "new")
        print(f"| {row['case']} | {row['version']} | {row['predict_s']:.2f} | {row['model_s']:.2f} | {row['outside_share']:.0%} | "
              f"{row['peak_mb']:.0f} | {row['decoded']} | {row['predict_s'] / new['predict_s']:.2f}x | {row['differing_pixels']} | "
              f"{row['differing_from_first']} |")
    seg = {r["case"]: r for r in rows if r["version"] == "new" and r["case"] in ("segearth-ov3-21", "segearth-ov3-150")}
    if len(seg) == 2:  # SegEarth-OV3 at 847: fixed + per-prompt cost from 21 (21 prompts) and 150 (150 prompts)
        from robustbench_ovss.datasets.vocabulary import packaged_vocabulary

        n21, n150 = (sum(len(a) for a in packaged_vocabulary(v)) for v in ("voc21", "ade20k"))
        t21, t150 = seg["segearth-ov3-21"]["predict_s"], seg["segearth-ov3-150"]["predict_s"]
        per_prompt = (t150 - t21) / (n150 - n21)
        print(f"\nsegearth-ov3 at 847 prompts (new, estimated): {t21 + (847 - n21) * per_prompt:.0f} s "
              f"= {t21 - n21 * per_prompt:.1f} s + 847 x {per_prompt:.3f} s per prompt")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
