#!/usr/bin/env python
"""Build the shipped tiny random SAM 3 checkpoint (``builtin:tiny-random``).

    python scripts/make_tiny_checkpoint.py                 # -> robustbench_ovss/assets/tiny-sam3-random/
    python scripts/make_tiny_checkpoint.py --refresh-words  # first regenerate assets/tiny_words.txt

``--refresh-words`` rebuilds the tokenizer's common-word list from the WordNet 3.0 files of the Debian
``wordnet-base`` package (/usr/share/wordnet): the most frequent noun and adjective lemmas by sense-tagged
count (``cntlist.rev``), a few function words, and the first two hypernyms of each word's most frequent
noun sense (so ActiveSAM's hypernym prompts are mostly in-vocabulary). Words of the packaged
vocabularies (configs/vocab/*.txt) are always added when the checkpoint is built.
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ASSETS = REPO / "robustbench_ovss" / "assets"
FUNCTION_WORDS = "a an the of and or in on with for to at by from up down off out over under top side".split()
# class-name words of the standard benchmarks (VOC, COCO, Cityscapes and common ADE20K / COCO-Stuff
# names), so the tokenizer covers them even before configs/vocab/*.txt exist
BENCHMARK_WORDS = """background aeroplane airplane bicycle bird boat ship bottle bus car cat chair cow table diningtable
dog horse motorbike motorcycle person potted pottedplant plant sheep sofa train tv tvmonitor monitor television screen
truck traffic light fire hydrant stop sign parking meter bench elephant bear zebra giraffe backpack umbrella handbag tie
necktie suitcase frisbee skis snowboard sports ball kite baseball bat glove skateboard surfboard tennis racket wine glass
cup fork knife spoon bowl banana apple sandwich orange broccoli carrot hot pizza donut cake couch bed toilet laptop
mouse remote keyboard cell phone microwave oven toaster sink refrigerator book clock vase scissors teddy hair drier
toothbrush road sidewalk building wall fence pole vegetation terrain sky rider tree hedge grass soil sand floor ceiling
window windowpane door cabinet curtain painting picture shelf mirror rug carpet lamp pillow cushion stairs staircase
railing column pillar counter countertop chest drawers wardrobe closet stove fireplace radiator blind shade sconce
chandelier plate tray towel box basket bag flower tile brick stone wood concrete marble panel mountain hill hills rock
water sea river lake waterfall snow field path dirt track gravel platform bridge tower skyscraper house hut tent awning
signboard billboard streetlight street lamp crosswalk escalator stool armchair swivel ottoman desk bookcase kitchen
island bathtub shower screen crt computer arcade machine conveyer conveyor belt pool ball poolball food fruit vegetable
leaves branch bush flowerpot fountain sculpture statue banner flag canopy cloth clothes bedclothes blanket napkin
paper cardboard plastic metal net mat""".split()
COLOURS_SHAPES = ("red orange yellow green blue purple pink brown black white grey gray cyan magenta "
                  "circle square triangle star stripe striped dotted checkered ring disc cross diamond").split()


def _read_index(wordnet: Path) -> dict[str, list[int]]:
    """index.noun: lemma -> synset offsets, most frequent sense first."""
    out = {}
    for line in (wordnet / "index.noun").read_text(encoding="latin-1").splitlines():
        if line.startswith(" "):
            continue
        parts = line.split()
        lemma, n_synsets, n_ptr = parts[0], int(parts[2]), int(parts[3])
        offsets = parts[4 + n_ptr + 2:]
        out[lemma] = [int(o) for o in offsets[:n_synsets]]
    return out


def _read_data(wordnet: Path) -> dict[int, tuple[list[str], list[int]]]:
    """data.noun: offset -> (lemmas, hypernym offsets)."""
    out = {}
    for line in (wordnet / "data.noun").read_text(encoding="latin-1").splitlines():
        if line.startswith(" "):
            continue
        fields = line.split("|")[0].split()
        offset, w_cnt = int(fields[0]), int(fields[3], 16)
        lemmas = [fields[4 + 2 * i] for i in range(w_cnt)]
        k = 4 + 2 * w_cnt
        n_ptr = int(fields[k])
        hyper = [int(fields[k + 1 + 4 * j + 1]) for j in range(n_ptr) if fields[k + 1 + 4 * j] in ("@", "@i")]
        out[offset] = (lemmas, hyper)
    return out


def refresh_words(wordnet: Path, top: int = 2000) -> list[str]:
    counts: collections.Counter[str] = collections.Counter()
    for line in (wordnet / "cntlist.rev").read_text(encoding="latin-1").splitlines():
        key, _, cnt = line.split()
        lemma, rest = key.split("%")
        if rest.split(":")[0] in ("1", "3", "5"):  # noun, adjective, adjective satellite
            for w in lemma.split("_"):
                if re.fullmatch(r"[a-z]+", w):
                    counts[w] += int(cnt)
    words = [w for w, _ in counts.most_common(top)]
    index, data = _read_index(wordnet), _read_data(wordnet)
    extra = []
    for w in words + COLOURS_SHAPES:
        offsets = index.get(w)
        if not offsets or offsets[0] not in data:
            continue
        for h in data[offsets[0]][1][:2]:
            for lemma in data.get(h, ([], []))[0][:1]:
                extra.extend(x for x in re.findall(r"[a-z]+", lemma.lower()))
    out, seen = [], set()
    for w in FUNCTION_WORDS + COLOURS_SHAPES + BENCHMARK_WORDS + words + sorted(set(extra)):
        if w not in seen:
            seen.add(w)
            out.append(w)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--out", type=Path, default=ASSETS / "tiny-sam3-random")
    ap.add_argument("--refresh-words", action="store_true", help="regenerate assets/tiny_words.txt from WordNet")
    ap.add_argument("--wordnet", type=Path, default=Path("/usr/share/wordnet"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--image-size", type=int, default=336)
    ap.add_argument("--init-range", type=float, default=0.2,
                    help="initializer_range of the random weights (0.2: prompts give distinguishable outputs; "
                         "training starts from 0.06, DESIGN §12)")
    args = ap.parse_args(argv)
    if args.refresh_words:
        words = refresh_words(args.wordnet)
        header = "# tokenizer word list of the tiny SAM 3 models; generated by scripts/make_tiny_checkpoint.py --refresh-words\n"
        (ASSETS / "tiny_words.txt").write_text(header + "\n".join(words) + "\n", encoding="utf-8")
        print(f"wrote {len(words)} words to {ASSETS / 'tiny_words.txt'}")
    from robustbench_ovss.backends.tiny import build_tiny_checkpoint

    out = build_tiny_checkpoint(args.out, image_size=args.image_size, seed=args.seed, initializer_range=args.init_range,
                                numerics="transformers")  # as shipped: the builtin keeps transformers' numerics
    size = sum(p.stat().st_size for p in out.iterdir())
    print(f"wrote {out} ({size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
