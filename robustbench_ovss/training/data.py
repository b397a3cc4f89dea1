"""Adapter from the synthetic benchmark (``robustbench_ovss.datasets.synthetic``) to training scenes."""

from __future__ import annotations

from collections.abc import Sequence

from .batching import Scene


def class_names(vocab_size: int, background: bool = True) -> list[str]:
    """The prompt (first alias) of every label id of ``synthetic`` at ``vocab_size``."""
    from ..datasets.synthetic import SyntheticDataset

    ds = SyntheticDataset(vocab_size=vocab_size, background=background, n_images=1)
    return [aliases[0] for aliases in ds.classes]


def to_training_scene(s) -> Scene:
    masks = s.instance_masks()
    inst = [(int(c), masks[i]) for i, c in enumerate(s.instance_labels) if masks[i].any()]
    return Scene(image=s.image, label=s.label, instances=inst)


def render(indices: Sequence[int], split: str, size: int, vocab_size: int, seed: int, **kw) -> list[Scene]:
    from ..datasets.synthetic import render_scene

    return [
        to_training_scene(render_scene(int(i), seed=seed, split=split, size=size, vocab_size=vocab_size, **kw))
        for i in indices
    ]


def synthetic_scenes(split: str, n: int, size: int, vocab_size: int, seed: int) -> tuple[list[str], list[Scene]]:
    """(class names, the first ``n`` scenes of the ``(seed, split)`` stream)."""
    return class_names(vocab_size), render(range(n), split, size, vocab_size, seed)


def confusable_labels(vocab_size: int, background: bool = True) -> list[list[int]]:
    """Per label id, the label ids of concepts that share a colour with it (hard negatives).

    Uses the generator's public concept styles (``synthetic.concept_style``): two concepts are
    confusable when one's primary or secondary colour is the other's primary or secondary colour.
    """
    from ..datasets.synthetic import concept_style

    off = 1 if background else 0
    cols = [{tuple(concept_style(c).primary), tuple(concept_style(c).secondary)} for c in range(vocab_size)]
    out: list[list[int]] = [[] for _ in range(vocab_size + off)]
    for a in range(vocab_size):
        out[a + off] = [b + off for b in range(vocab_size) if b != a and cols[a] & cols[b]]
    return out


def hard_negative_pool(scenes, confusable: list[list[int]]) -> list[list[int]]:
    """Per scene, the confusable labels of its present labels (present ones removed later)."""
    pools = []
    for s in scenes:
        pool: set[int] = set()
        for c in s.present():
            if c < len(confusable):
                pool.update(confusable[c])
        pools.append(sorted(pool))
    return pools
