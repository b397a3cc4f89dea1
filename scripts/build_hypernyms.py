#!/usr/bin/env python
"""Build the shipped WordNet hypernym table ``robustbench_ovss/vocab/hypernyms.json``.

The table lets ActiveSAM's hypernym tokens work where WordNet is not installed. It covers every alias
of the eight benchmark vocabularies, ade847 (every synonym) and pc459, and the synthetic concept names (``configs/vocab/*.txt``), keyed
by the WordNet query string of the alias's *canonicalised* form (what ActiveSAM looks up), and holds
the first lemma of every hypernym of the first noun sense, in WordNet order; lookups apply the
reference's "first M, then drop duplicates" rule, so any number of hypernym tokens is answered exactly.

Usage (needs nltk's WordNet or the Debian packages wordnet-base + wordnet-sense-index)::

    python scripts/build_hypernyms.py [--source auto|nltk|debian] [--vocab-dir configs/vocab] [--check]

``--check`` exits 1 when the committed table differs from a fresh build (for CI).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from robustbench_ovss.vocab import canonicalize
from robustbench_ovss.vocab.wordnet import first_sense_hypernym_lemmas, get_hypernym_source, lookup_key

REPO = Path(__file__).resolve().parent.parent
VOCABS = ("voc21", "voc20", "context60", "context59", "coco_object", "coco_stuff", "cityscapes", "ade20k", "synthetic",
          "ade847", "pc459")
OUT = REPO / "robustbench_ovss" / "vocab" / "hypernyms.json"


def vocabulary_names(vocab_dir: Path) -> list[str]:
    """Every alias of the covered vocabularies, in file order, duplicates removed."""
    names: list[str] = []
    for vocab in VOCABS:
        path = vocab_dir / f"{vocab}.txt"
        for line in path.read_text(encoding="utf-8").splitlines():
            for alias in line.split(","):
                alias = alias.strip()
                if alias and alias not in names:
                    names.append(alias)
    return names


def build(vocab_dir: Path, source: str) -> dict:
    src = get_hypernym_source(source)
    if src.wordnet is None:
        raise SystemExit(f"WordNet is needed to build the table (source {source!r} gave {src.kind!r}: {src.detail})")
    table: dict[str, list[str]] = {}
    for alias in vocabulary_names(vocab_dir):
        key = lookup_key(canonicalize(alias))
        if key not in table:
            table[key] = first_sense_hypernym_lemmas(src.wordnet, canonicalize(alias))
    return {
        "meta": {
            "wordnet_version": str(src.wordnet.get_version()),
            "built_by": "scripts/build_hypernyms.py",
            "vocabularies": list(VOCABS),
            "key": "lookup_key(canonicalize(alias)): stripped, lower-case, spaces and hyphens as underscores",
            "value": "first lemma of each hypernym of the first noun synset, WordNet order",
        },
        "hypernyms": dict(sorted(table.items())),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", default="auto", choices=("auto", "nltk", "debian"))
    ap.add_argument("--vocab-dir", type=Path, default=REPO / "configs" / "vocab")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--check", action="store_true", help="compare with the committed table instead of writing")
    args = ap.parse_args(argv)
    data = build(args.vocab_dir, args.source)
    text = json.dumps(data, indent=1, ensure_ascii=False) + "\n"
    if args.check:
        same = args.out.is_file() and json.loads(args.out.read_text(encoding="utf-8")) == data
        print(f"{args.out}: {'up to date' if same else 'OUT OF DATE - rerun scripts/build_hypernyms.py'}")
        return 0 if same else 1
    args.out.write_text(text, encoding="utf-8")
    n_empty = sum(1 for v in data["hypernyms"].values() if not v)
    print(f"wrote {args.out}: {len(data['hypernyms'])} names ({n_empty} without a noun hypernym)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
