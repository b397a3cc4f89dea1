"""A tiny random SAM 3 checkpoint and the word-level tokenizer the project builds itself.

``build_tiny_checkpoint(out_dir)`` writes a real Hugging Face checkpoint directory (``config.json``,
``model.safetensors``, tokenizer files) for a small :class:`transformers.Sam3Config`, so tests and the
demo load it through exactly the same code path as the real ``facebook/sam3`` checkpoint. Nothing is
downloaded: the tokenizer is a ``tokenizers`` word-level model over a word list shipped with the
package (``assets/tiny_words.txt``) plus the words of the packaged vocabularies, wrapped in
``PreTrainedTokenizerFast``.

Design facts (DESIGN §12): width-64-class models want ``initializer_range`` ~0.06 (0.02 is too small),
dropout 0, and the text config's pad/bos/eos ids set to the tokenizer's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

PAD, UNK, BOS, EOS = "[PAD]", "[UNK]", "[BOS]", "[EOS]"
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS)  # ids 0, 1, 2, 3
MAX_TEXT_LENGTH = 32  # SAM 3 pads/truncates prompts to 32 tokens
# punctuation that appears in class names ("wall-brick", "television monitor, tv monitor", "t-shirt")
PUNCTUATION = tuple("-,.'/()&:+_")
_WORD_RE = re.compile(r"[a-z0-9]+")


def _asset_text(name: str) -> str:
    return resources.files("robustbench_ovss").joinpath("assets", name).read_text(encoding="utf-8")


def package_vocabulary_words() -> list[str]:
    """Lower-cased words of every packaged vocabulary (``configs/vocab/*.txt``), sorted; [] if none."""
    words: set[str] = set()
    try:
        vocab_dir = resources.files("robustbench_ovss.configs").joinpath("vocab")
        entries = list(vocab_dir.iterdir()) if vocab_dir.is_dir() else []
    except (ModuleNotFoundError, FileNotFoundError):
        entries = []
    for entry in entries:
        if entry.name.endswith(".txt"):
            text = entry.read_text(encoding="utf-8").lower()
            words.update(_WORD_RE.findall(text))
    return sorted(words)


def tiny_word_list(extra_words: Iterable[str] = ()) -> list[str]:
    """The tokenizer's word list: shipped common words + packaged vocabularies + ``extra_words``.

    Returns unique lower-cased words in a deterministic order (shipped list order, then sorted additions).
    """
    base = [w.strip() for w in _asset_text("tiny_words.txt").splitlines() if w.strip() and not w.startswith("#")]
    seen = set(base)
    added = sorted({w for src in (package_vocabulary_words(), extra_words) for text in src
                    for w in _WORD_RE.findall(str(text).lower())} - seen)
    return base + added


def build_tokenizer(words: Sequence[str], max_length: int = MAX_TEXT_LENGTH) -> Any:
    """A word-level ``PreTrainedTokenizerFast``: lower-casing, word/punctuation split, [BOS] x [EOS].

    Ids: [PAD]=0, [UNK]=1, [BOS]=2, [EOS]=3, then punctuation, then ``words`` in order.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {}
    for tok in (*SPECIAL_TOKENS, *PUNCTUATION, *words):
        vocab.setdefault(tok, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()  # \w+ | [^\w\s]+
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", pair=f"{BOS} $A {EOS} $B {EOS}",
        special_tokens=[(BOS, vocab[BOS]), (EOS, vocab[EOS])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token=UNK, pad_token=PAD, bos_token=BOS, eos_token=EOS,
        model_max_length=max_length, padding_side="right", truncation_side="right",
    )


def tiny_config(
    *,
    image_size: int = 336,
    vocab_size: int,
    hidden_size: int = 32,
    text_hidden_size: int = 32,
    vit_hidden_size: int | None = None,
    vit_layers: int = 2,
    text_layers: int = 2,
    detr_encoder_layers: int = 1,
    detr_decoder_layers: int = 2,
    num_queries: int = 8,
    num_heads: int = 2,
    text_heads: int | None = None,
    mlp_ratio: int = 2,
    window_size: int = 8,
    global_attn_indexes: Sequence[int] | None = None,
    fpn_scale_factors: Sequence[float] = (4.0, 2.0, 1.0, 0.5),
    backbone_feature_sizes: Sequence[Sequence[int]] | None = None,
    mask_upsampling_stages: int = 3,
    text_hidden_act: str = "gelu",
    pretrain_image_size: int = 112,
    patch_size: int = 14,
    initializer_range: float = 0.06,
    pad_token_id: int = 0,
    bos_token_id: int = 2,
    eos_token_id: int = 3,
) -> Any:
    """A small ``Sam3Config`` with the real architecture's structure.

    By default the last ViT layer uses global attention (the RoPE buffers that must follow the
    resolution), the others windowed attention. ``image_size`` should be a multiple of
    ``patch_size * window_size`` (336 = 14 * 8 * 3) so that the 2/3 preview (224) also needs no window
    padding. Text heads follow the CLIP convention of 64-wide heads (at least one), so a converted Meta
    checkpoint infers the same. Dropout is 0 everywhere.

    Args (beyond the widths, depths and token ids):
        vit_hidden_size: ViT width (None = ``hidden_size``, the FPN / DETR / mask-decoder width).
        text_heads: text-encoder heads (None = ``text_hidden_size // 64``, at least 1).
        mlp_ratio: MLP width / model width of the ViT, text encoder and DETR layers (the geometry
            encoder's is 2x).
        global_attn_indexes: ViT layers with global attention (None = the last; () = all windowed).
        fpn_scale_factors: FPN levels relative to the patch grid; the model drops the last level, so
            (4, 2, 1, 0.5), the real layout, gives masks at 4x the grid and (2, 1, 0.5) at 2x.
        backbone_feature_sizes: recorded in the config (None = the kept levels' sizes, as the real
            checkpoint records them); ``Sam3Model`` does not read it, the SAM 3 tracker does.
        mask_upsampling_stages: upsampling stages of the mask decoder (3 real).
        text_hidden_act: the CLIP text MLP's activation (CLIP's own default is "quick_gelu").
    """
    from transformers import CLIPTextConfig, Sam3Config
    from transformers.models.sam3.configuration_sam3 import Sam3VisionConfig, Sam3ViTConfig

    if image_size % patch_size:
        raise ValueError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
    grid = image_size // patch_size
    init = initializer_range
    vit_hidden = hidden_size if vit_hidden_size is None else vit_hidden_size
    vit = Sam3ViTConfig(
        hidden_size=vit_hidden, intermediate_size=mlp_ratio * vit_hidden, num_hidden_layers=vit_layers,
        num_attention_heads=num_heads, image_size=image_size, patch_size=patch_size, window_size=window_size,
        global_attn_indexes=[vit_layers - 1] if global_attn_indexes is None else list(global_attn_indexes),
        pretrain_image_size=pretrain_image_size, attention_dropout=0.0, hidden_dropout=0.0, initializer_range=init,
    )
    vision = Sam3VisionConfig(
        backbone_config=vit, fpn_hidden_size=hidden_size,
        backbone_feature_sizes=([[int(grid * f)] * 2 for f in fpn_scale_factors[:-1]] if backbone_feature_sizes is None
                                else [list(hw) for hw in backbone_feature_sizes]),
        scale_factors=[float(f) for f in fpn_scale_factors], initializer_range=init,
    )
    text = CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=text_hidden_size, intermediate_size=mlp_ratio * text_hidden_size,
        projection_dim=text_hidden_size, num_hidden_layers=text_layers,
        num_attention_heads=max(1, text_hidden_size // 64) if text_heads is None else text_heads,
        max_position_embeddings=MAX_TEXT_LENGTH, hidden_act=text_hidden_act, attention_dropout=0.0, dropout=0.0,
        initializer_range=init, pad_token_id=pad_token_id, bos_token_id=bos_token_id, eos_token_id=eos_token_id,
    )
    common = dict(hidden_size=hidden_size, num_attention_heads=num_heads, initializer_range=init)
    mlp = mlp_ratio * hidden_size
    return Sam3Config(
        vision_config=vision,
        text_config=text,
        geometry_encoder_config=dict(num_layers=1, intermediate_size=2 * hidden_size, dropout=0.0, **common),
        detr_encoder_config=dict(num_layers=detr_encoder_layers, intermediate_size=mlp, dropout=0.0, **common),
        detr_decoder_config=dict(num_layers=detr_decoder_layers, num_queries=num_queries,
                                 intermediate_size=mlp, dropout=0.0, **common),
        mask_decoder_config=dict(dropout=0.0, num_upsampling_stages=mask_upsampling_stages, **common),
        initializer_range=init,
    )


def build_tiny_checkpoint(
    out_dir: str | Path,
    *,
    image_size: int = 336,
    seed: int = 0,
    extra_words: Iterable[str] = (),
    dtype: str = "float32",
    numerics: str | None = None,
    **config_overrides: Any,
) -> Path:
    """Write a tiny random SAM 3 checkpoint directory loadable like ``facebook/sam3``.

    Args:
        out_dir: directory to create (existing files of the same names are overwritten).
        image_size: native input resolution of the model (square, pixels).
        seed: torch seed of the random weights (same seed + same word list = identical files).
        extra_words: more words for the tokenizer vocabulary.
        dtype: storage dtype of the weights ("float32" or "float16"; loading always computes in float32).
        numerics: written to config.json as ``ovss_numerics`` ("meta" | "transformers"); None = not
            written, i.e. Meta's numerics as for a checkpoint from the hub (:mod:`.numerics`).
        **config_overrides: keyword arguments of :func:`tiny_config` (hidden_size, vit_layers, ...).
    Returns:
        The directory path, holding config.json, model.safetensors and the tokenizer files.
    """
    import torch
    from transformers import Sam3Model

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(tiny_word_list(extra_words))
    config = tiny_config(
        image_size=image_size, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, **config_overrides,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Sam3Model(config).eval()
    if dtype not in ("float32", "float16"):
        raise ValueError(f"dtype must be float32 or float16, got {dtype!r}")
    if dtype == "float16":
        model = model.to(torch.float16)
    if numerics is not None:
        if numerics not in ("meta", "transformers"):
            raise ValueError(f"numerics must be 'meta' or 'transformers', got {numerics!r}")
        config.ovss_numerics = numerics
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    _write_provenance(out, seed=seed, image_size=image_size, overrides=config_overrides, n_words=len(tokenizer))
    return out


def _write_provenance(out: Path, **info: Any) -> None:
    meta = {"what": "tiny random SAM 3 (robustbench_ovss.backends.tiny.build_tiny_checkpoint)", **info}
    (out / "ovss_bench_tiny.json").write_text(json.dumps(meta, indent=1, sort_keys=True, default=str) + "\n")
