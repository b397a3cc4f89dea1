"""Render a gallery of synthetic scenes (image above, label overlay below) to check them by eye.

    python scripts/synthetic_gallery.py -o gallery.png [--n 8] [--size 256] [--seed 0] [--vocab-size 120]
"""

from __future__ import annotations

import argparse

import numpy as np
from PIL import Image

from robustbench_ovss.datasets.synthetic import (
    concept_names,
    concept_style,
    render_scene,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--out", default="synthetic_gallery.png")
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split", default="val")
    ap.add_argument("--vocab-size", type=int, default=120)
    args = ap.parse_args()
    import imgviz

    cols = []
    for k in range(args.n):
        s = render_scene(k, seed=args.seed, split=args.split, size=args.size, vocab_size=args.vocab_size)
        overlay = imgviz.label2rgb(s.label, image=s.image, alpha=0.5)
        cols.append(np.concatenate([s.image, overlay], axis=0))
        names = ", ".join(f"{concept_names()[c]} ({concept_style(c).description})" for c in s.concepts)
        print(f"scene {k}: {len(s.instance_labels)} objects: {names}")
    Image.fromarray(np.concatenate(cols, axis=1)).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
