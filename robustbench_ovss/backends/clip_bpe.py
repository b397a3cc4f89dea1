"""Build SAM 3's (CLIP's) Hugging Face tokenizer from Meta's ``bpe_simple_vocab_16e6.txt.gz``.

Users of the reference repos hold the Meta ``sam3`` package, which ships the CLIP BPE merges file but no
Hugging Face tokenizer. The CLIP vocabulary is fully determined by that file (facts of OpenAI CLIP's
``SimpleTokenizer``): the 256 byte symbols, the same with the end-of-word marker ``</w>``, one token per
merge for the first 49152 - 256 - 2 merges (the file's first line is a header), then
``<|startoftext|>`` and ``<|endoftext|>`` — 49408 tokens in all.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

BPE_FILENAME = "bpe_simple_vocab_16e6.txt.gz"
NUM_MERGES = 49152 - 256 - 2


def bytes_to_unicode() -> dict[int, str]:
    """The reversible byte -> printable character table of GPT-2/CLIP BPE (256 entries)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars)))


def clip_vocab_and_merges(bpe_gz: str | Path) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP's token -> id table and merge list from the gzipped merges file."""
    lines = gzip.open(bpe_gz, "rt", encoding="utf-8").read().split("\n")[1:NUM_MERGES + 1]
    merges = [tuple(line.split()) for line in lines]
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}, [(a, b) for a, b in merges]


def clip_tokenizer_from_bpe(bpe_gz: str | Path, max_length: int = 32) -> Any:
    """A ``CLIPTokenizer`` (tokenizers backend) equivalent to SAM 3's, padded/truncated to ``max_length``."""
    from transformers import CLIPTokenizer

    vocab, merges = clip_vocab_and_merges(bpe_gz)
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_length)
