"""``ovss-bench flops``: counting on a small config (fast) and one smoke run on the real architecture."""

from __future__ import annotations

import pytest
import torch

from robustbench_ovss.cli import main as cli_main
from robustbench_ovss.flops import FlopModel, dataset_prompt_count, method_flops, preview_resolution


@pytest.fixture(scope="module")
def small() -> FlopModel:
    from robustbench_ovss.backends.tiny import tiny_config

    return FlopModel(tiny_config(image_size=336, vocab_size=64))


def test_component_counts_scale_as_expected(small: FlopModel) -> None:
    assert small.native_size == 336
    full, preview = small.image(336), small.image(224)
    assert full > preview > 0
    assert small.image(224, presence_only=True) < preview  # only the 1x FPN level
    d, p = small.decode(336), small.presence(224)
    assert d > small.presence(336) > p > 0  # presence skips the mask decoder
    assert small.decode(336, 36) > d  # appended tokens cost a little
    assert small.text() > 0
    assert small.decode(336) == d  # cached, deterministic


def test_image_only_work_moves_from_every_prompt_to_the_image(small: FlopModel) -> None:
    """Counted once per image with once_per_image, and no longer in every prompt's decode and presence pass:

    - the first DETR-encoder layer's self-attention over the T image tokens of width D: 4 projections
      (2 T D^2 each) + scores and weighted sum (2 T^2 D each);
    - the DETR decoder's first layer up to its text cross-attention, on learned inputs: the query
      positions (an MLP 2D -> D -> D on Q boxes), the box bias (MLPs 2 -> D -> heads on Q x G columns and
      Q x G rows) and the self-attention over the Q + 1 tokens.

    The prompt passes also drop outputs the backend discards: the last decoder layer's box refinement and
    the presence heads of the other layers; the decode, the model's box head and the scoring of all
    decoder layers but the last."""
    cfg = small.config
    per_prompt = FlopModel(cfg, once_per_image=False)
    d, q, layers = cfg.detr_encoder_config.hidden_size, cfg.detr_decoder_config.num_queries, cfg.detr_decoder_config.num_layers
    heads = cfg.detr_decoder_config.num_attention_heads
    box_mlp = 2 * q * (d * d + d * d + d * 4)  # box head: D -> D -> D -> 4 on Q queries
    presence_mlp = 2 * (d * d + d * d + d)  # presence head: D -> D -> D -> 1 on one token
    for size in (336, 224):
        g = size // 14
        t = g * g
        attention = 4 * 2 * t * d * d + 2 * 2 * t * t * d
        decoder_start = (2 * q * (2 * d * d + d * d)  # query positions
                         + 2 * (2 * q * g * (2 * d + d * heads))  # box bias over columns and rows
                         + 4 * 2 * (q + 1) * d * d + 2 * 2 * (q + 1) ** 2 * d)  # self-attention
        assert small.prefix(size) == attention + decoder_start
        assert small.image(size) - per_prompt.image(size) == attention + decoder_start
        assert small.image(size, True) - per_prompt.image(size, True) == attention + decoder_start
        dropped = box_mlp + (layers - 1) * presence_mlp
        assert per_prompt.presence(size) - small.presence(size) == attention + decoder_start + dropped
        model_box_head = box_mlp * layers
        other_scores = (2 * q * d * d + 2 * q * d) * (layers - 1)
        assert per_prompt.decode(size) - small.decode(size) == attention + decoder_start + dropped + model_box_head + other_scores


def test_split_pixel_decoder_counts_16_instead_of_36_taps_per_coarse_pixel(small: FlopModel) -> None:
    """Each pixel-decoder stage from an h x w map to 2h x 2w: the reference 3x3 conv costs 2 * 9 D^2 * 4hw
    per prompt; split, that conv of the image-only level moves to the image, and the prompt's half is four
    2x2 convs (one per output parity) on h x w windows of the padded map: 4 * 2 * 4 D^2 * hw."""
    split = FlopModel(small.config, pixel_decoder="split")
    d = small.config.mask_decoder_config.hidden_size
    g = 336 // 14
    stages = [(g, g), (2 * g, 2 * g)]  # 1x -> 2x -> 4x: the mask decoder reads three FPN levels
    reference_convs = sum(2 * 9 * d * d * 4 * h * w for h, w in stages)
    split_convs = sum(4 * 2 * 4 * d * d * h * w for h, w in stages)
    assert small.decode(336) - split.decode(336) == reference_convs - split_convs > 0
    assert split.image(336) - small.image(336) == reference_convs
    assert split.presence(224) == small.presence(224) and split.image(224, True) == small.image(224, True)
    assert FlopModel(small.config, once_per_image=False, pixel_decoder="split").decode(336) == \
        FlopModel(small.config, once_per_image=False).decode(336)  # the full forward has no split
    with pytest.raises(ValueError, match="pixel_decoder"):
        FlopModel(small.config, pixel_decoder="fast")


def test_method_totals_follow_the_formulas(small: FlopModel) -> None:
    rows = method_flops(small, 150)
    vit, vit_p = small.image(336), small.image(224, presence_only=True)
    assert rows["segearth-ov3"]["flops"] == vit + 150 * small.decode(336)
    assert rows["sam3"]["flops"] == rows["segearth-ov3"]["flops"]
    # every prompt carries 32 text tokens + the geometry CLS token; ActiveSAM's full pass 4 more
    # K: scores >= the 0.8-quantile of 150 distinct values sit at sorted positions >= 0.8 * 149 = 119.2,
    # i.e. 120..149: 30 prompts (the rule's cap of 40 is not reached)
    assert rows["activesam"]["flops"] == vit_p + 150 * small.presence(224) + vit + 30 * small.decode(336, 37)
    assert rows["activesam"]["prompts_decoded"] == 30 and rows["activesam"]["prompts_previewed"] == 150
    assert method_flops(small, 60)["activesam"]["prompts_decoded"] == 12  # positions >= 47.2: 48..59
    assert method_flops(small, 847)["activesam"]["prompts_decoded"] == 40  # 170 pass the quantile; capped
    few = method_flops(small, 21)  # <= 40 prompts: no preview, every prompt decoded
    assert few["activesam"]["prompts_previewed"] == 0 and few["activesam"]["prompts_decoded"] == 21
    assert method_flops(small, 150, active=10)["activesam"]["prompts_decoded"] == 10


def test_preview_resolution_and_dataset_prompts() -> None:
    assert preview_resolution(1008) == 672 and preview_resolution(336) == 224
    assert dataset_prompt_count("ade20k") == 150
    assert dataset_prompt_count("voc20") > 20  # aliases count as prompts


def test_flops_cli_on_the_real_architecture(capsys: pytest.CaptureFixture[str]) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert cli_main(["flops", "--vocab-size", "150"]) == 0
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "| activesam | 30 | 150 |" in out and "| segearth-ov3 | 150 | 0 |" in out
    assert "K = 30 of 150 prompts: the 0.8-quantile rule" in out
    assert "image encoder @1008 5.6" in out  # DESIGN §5: ViT ~5.6 TFLOP at 1008
    assert "runs once per image (in the image encoder above): 30.6 GFLOPs @1008, 7.0 @672" in out
