"""Hand-computed cases for the methods' pure maths: active set, MABC, fusion, expansion tokens."""

from __future__ import annotations

import math

import pytest
import torch

from robustbench_ovss.methods.activesam import margin_calibration, preview_size, select_active
from robustbench_ovss.methods.fusion import (
    alias_max,
    fuse_prompts,
    instance_probability,
    resize_logits,
    threshold_background,
)
from robustbench_ovss.vocab.expansion import ExpansionTokens, hypernym_tokens, neighbour_tokens


def close(actual: torch.Tensor, expected) -> None:
    torch.testing.assert_close(actual.float(), torch.as_tensor(expected, dtype=torch.float32), rtol=1e-5, atol=1e-6)


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# -- active set -----------------------------------------------------------------------------------
def test_select_active_keeps_all_when_vocabulary_fits() -> None:
    assert select_active(torch.rand(40)).tolist() == list(range(40))
    assert select_active(torch.tensor([0.1, 0.9, 0.0]), max_active=3).tolist() == [0, 1, 2]


def test_select_active_quantile_interpolates_like_torch() -> None:
    # 6 scores, quantile 0.5 -> position 2.5 of the sorted list -> (0.3 + 0.4) / 2 = 0.35
    scores = torch.tensor([0.6, 0.1, 0.4, 0.3, 0.2, 0.5])
    assert torch.quantile(scores, 0.5).item() == pytest.approx(0.35)
    assert select_active(scores, quantile=0.5, max_active=5).tolist() == [0, 2, 5]
    # 0.8-quantile of 0..0.9 (10 values): position 7.2 -> 0.7 + 0.2 * 0.1 = 0.72 -> keep 0.8, 0.9
    ten = torch.arange(10, dtype=torch.float32) / 10
    assert select_active(ten.flip(0), max_active=5).tolist() == [0, 1]
    # a value equal to tau is kept (>=): quantile 0.75 of 0..0.4 (5 values) lands exactly on 0.3
    five = torch.tensor([0.0, 0.1, 0.2, 0.3, 0.4])
    assert select_active(five, quantile=0.75, max_active=4).tolist() == [3, 4]


def test_select_active_cap_takes_top_scores() -> None:
    # 100 prompts, 0.8-quantile keeps the top 20; a cap of 5 keeps the 5 best, returned sorted
    scores = torch.linspace(0, 1, 100)[torch.randperm(100, generator=torch.Generator().manual_seed(0))]
    kept = select_active(scores, max_active=5)
    assert kept.tolist() == sorted(torch.topk(scores, 5).indices.tolist())
    assert len(select_active(scores)) == 20  # ceil(100 - 80.2) = 20 above tau, under the cap of 40
    # the default cap: 200 prompts -> 40 above tau, all kept; 300 -> 60 above tau, capped at 40
    assert len(select_active(torch.rand(200, generator=torch.Generator().manual_seed(1)))) == 40
    assert len(select_active(torch.rand(300, generator=torch.Generator().manual_seed(2)))) == 40


def test_select_active_ties_and_minimum() -> None:
    # all equal: everything is >= tau; the cap keeps the lowest indices
    assert select_active(torch.full((50,), 0.5), max_active=3).tolist() == [0, 1, 2]
    # min_active forces the top-k even though the quantile rule keeps one prompt
    scores = torch.tensor([0.1, 0.7, 0.2, 0.9, 0.3])
    assert select_active(scores, quantile=0.9, max_active=4).tolist() == [3]
    assert select_active(scores, quantile=0.9, max_active=4, min_active=2).tolist() == [1, 3]
    out = select_active(scores, quantile=0.9, max_active=4)
    assert out.dtype == torch.int64


# -- margin-aware background calibration ----------------------------------------------------------
def test_margin_calibration_by_hand() -> None:
    # 3 classes, 4 pixels; prob_thd 0.4 -> threshold 0.4 ** 1.25 = 0.31810
    scores = torch.tensor(
        [
            [[0.00, 0.00], [0.00, 0.00]],  # background prompt
            [[0.90, 0.50], [0.60, 0.30]],
            [[0.10, 0.45], [0.20, 0.10]],
        ]
    )
    # c = s1 * sqrt(s1 - s2): 0.9*sqrt(0.8)=0.805 fg; 0.5*sqrt(0.05)=0.112 bg;
    #                          0.6*sqrt(0.4)=0.379 fg; 0.3*sqrt(0.2)=0.134 bg
    assert 0.4**1.25 == pytest.approx(0.31810, abs=1e-5)
    pred = margin_calibration(scores, prob_thd=0.4, bg_idx=0)
    assert pred.tolist() == [[1, 0], [1, 0]]
    assert pred.dtype == torch.int64
    # the plain rule (max < 0.4) would keep pixel (0,1) as class 1: the margin is what removes it
    assert threshold_background(scores, 0.4, 0).tolist() == [[1, 1], [1, 0]]
    # exponent 1: threshold 0.4 -> (1,0) with c=0.379 becomes background too
    assert margin_calibration(scores, 0.4, 0, exponent=1.0).tolist() == [[1, 0], [0, 0]]


def test_margin_calibration_noops() -> None:
    scores = torch.tensor([[[0.01]], [[0.02]]])
    assert margin_calibration(scores, 0.4, None).tolist() == [[1]]  # no background class
    assert margin_calibration(scores, 0.0, 0).tolist() == [[1]]  # prob_thd 0: no rule
    assert margin_calibration(scores[:1], 0.4, 0).tolist() == [[0]]  # one class
    # tie between the two best classes: margin 0 -> c = 0 -> background
    tie = torch.tensor([[[0.0]], [[0.8]], [[0.8]]])
    assert margin_calibration(tie, 0.1, 0).tolist() == [[0]]
    assert margin_calibration(tie, 0.1, 2).tolist() == [[2]]  # bg_idx need not be 0


# -- fusion -----------------------------------------------------------------------------------------
def test_instance_probability_keeps_scores_above_conf_and_takes_max() -> None:
    mask = torch.tensor([[[2.0, -1.0]], [[0.0, 3.0]], [[5.0, 5.0]]])  # [Q=3, 1, 2]
    scores = torch.tensor([0.8, 0.5, 0.3])  # the third is dropped at conf 0.3 (strict >)
    got = instance_probability(mask, scores, conf=0.3, out_hw=(1, 2))
    expected = [[max(sig(2) * 0.8, sig(0) * 0.5), max(sig(-1) * 0.8, sig(3) * 0.5)]]
    close(got, expected)
    assert instance_probability(mask, scores, conf=0.9, out_hw=(1, 2)).tolist() == [[0.0, 0.0]]


def test_fuse_prompts_semantic_max_then_presence() -> None:
    mask = torch.tensor([[[[1.0, -2.0]]]])  # [n=1, Q=1, 1, 2]
    scores = torch.tensor([[0.6]])
    sem = torch.tensor([[[-1.0, 0.5]]])  # [n=1, 1, 2]
    presence = torch.tensor([0.5])
    got = fuse_prompts(mask, scores, sem, presence, conf=0.3, out_hw=(1, 2))
    expected = [[[max(sig(1) * 0.6, sig(-1)) * 0.5, max(sig(-2) * 0.6, sig(0.5)) * 0.5]]]
    close(got, expected)
    inst_only = fuse_prompts(mask, scores, None, presence, conf=0.3, out_hw=(1, 2))
    close(inst_only, [[[sig(1) * 0.6 * 0.5, sig(-2) * 0.6 * 0.5]]])


def test_resize_happens_on_logits_before_sigmoid() -> None:
    # logits -4 and 4 on a 1x2 grid, upsampled to 1x4: bilinear on logits, then sigmoid
    logits = torch.tensor([[[-4.0, 4.0]]])
    up = resize_logits(logits, (1, 4))
    close(up, [[[-4.0, -2.0, 2.0, 4.0]]])  # align_corners=False
    got = fuse_prompts(logits[None], torch.tensor([[1.0]]), None, torch.tensor([1.0]), 0.5, (1, 4))
    close(got[0, 0], [sig(-4), sig(-2), sig(2), sig(4)])
    # resizing probabilities instead would give (3 sig(-4) + sig(4)) / 4 at pixel 1: a different value
    assert got[0, 0, 1].item() != pytest.approx((3 * sig(-4) + sig(4)) / 4, abs=1e-3)


def test_alias_max_picks_best_alias_and_unscored_classes_are_zero() -> None:
    prompt_scores = torch.tensor([[[0.2, 0.9]], [[0.7, 0.1]], [[0.3, 0.3]]])  # 3 prompts, 1x2
    classes = alias_max(prompt_scores, [1, 1, 2], num_classes=3)
    close(classes, [[[0.0, 0.0]], [[0.7, 0.9]], [[0.3, 0.3]]])


def test_threshold_background_rules() -> None:
    scores = torch.tensor([[[0.1, 0.0]], [[0.3, 0.5]]])
    assert threshold_background(scores, 0.4, 0).tolist() == [[0, 1]]
    assert threshold_background(scores, 0.4, None).tolist() == [[1, 1]]  # no background class
    assert threshold_background(scores, 0.0, 0).tolist() == [[1, 1]]
    # argmax ties go to the lower label id
    assert threshold_background(torch.zeros(3, 1, 1), 0.0, None).tolist() == [[0]]


def test_preview_size() -> None:
    assert preview_size(1008) == 672 and preview_size(336) == 224 and preview_size(1008, 504) == 504


# -- expansion tokens -------------------------------------------------------------------------------
def test_neighbour_tokens_softmax_weighted_by_hand() -> None:
    emb = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [-1.0, 0.0]])
    tokens, valid, index = neighbour_tokens(emb, num_tokens=2)
    # prompt 0: cos to 1 = 0.7071, to 2 = 0, to 3 = -1 -> neighbours 1, 2; weights softmax(0.7071, 0)
    w = torch.softmax(torch.tensor([2**-0.5, 0.0]), 0)
    assert index[0].tolist() == [1, 2]
    close(tokens[0], (emb[[1, 2]] * w[:, None]).tolist())
    assert valid.all()
    # prompt 1: cos to 0 and to 2 tie at 0.7071 -> lower index first; equal weights 0.5
    assert index[1].tolist() == [0, 2]
    close(tokens[1], [[0.5, 0.0], [0.0, 0.5]])
    # temperature sharpens the weights
    t2, _, _ = neighbour_tokens(emb, 2, temperature=0.1)
    w2 = torch.softmax(torch.tensor([2**-0.5, 0.0]) / 0.1, 0)
    close(t2[0, 0], (emb[1] * w2[0]).tolist())


def test_neighbour_tokens_tiny_vocabularies_mask_missing_slots() -> None:
    tokens, valid, index = neighbour_tokens(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), 2)
    assert valid.tolist() == [[True, False], [True, False]] and index[:, 1].tolist() == [-1, -1]
    assert tokens[0, 0].tolist() == [0.0, 1.0]  # one neighbour: softmax weight 1
    _, valid1, _ = neighbour_tokens(torch.tensor([[1.0, 0.0]]), 2)
    assert not valid1.any()


def test_hypernym_tokens_are_pooled_unweighted_and_masked() -> None:
    table = {"feline": torch.tensor([1.0, 2.0]), "organism": torch.tensor([3.0, 4.0]), "agent": torch.tensor([5.0, 6.0])}
    calls = []

    def embed(texts):
        calls.append(list(texts))
        return torch.stack([table[t] for t in texts])

    tokens, valid = hypernym_tokens([["feline"], [], ["agent", "organism"], ["feline"]], embed, 2)
    assert calls == [["feline", "agent", "organism"]]  # each unique phrase encoded once
    assert valid.tolist() == [[True, False], [False, False], [True, True], [True, False]]
    assert tokens[2].tolist() == [[5.0, 6.0], [3.0, 4.0]]
    assert tokens[1].abs().sum() == 0


def test_expansion_tokens_project_weighted_vectors_with_bias() -> None:
    proj = torch.nn.Linear(2, 3)
    with torch.no_grad():
        proj.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        proj.bias.copy_(torch.tensor([0.5, -0.5, 1.0]))
    emb = {"a": [1.0, 0.0], "b": [0.0, 1.0], "c": [1.0, 1.0], "animal": [2.0, 2.0]}

    def embed(texts):
        return torch.tensor([emb[t] for t in texts])

    out = ExpansionTokens.build(["a", "b", "c"], [["animal"], [], []], embed, proj, 2, 2)
    assert out.features.shape == (3, 4, 3) and out.mask.shape == (3, 4)
    # prompt "a": neighbours c (cos .707) then b (0): token 0 = proj(w0 * c) = W (w0 c) + bias
    w = torch.softmax(torch.tensor([2**-0.5, 0.0]), 0)
    assert out.neighbours[0].tolist() == [2, 1]
    expected0 = proj(torch.tensor([1.0, 1.0]) * w[0])
    close(out.features[0, 0], expected0.tolist())
    close(out.features[0, 2], proj(torch.tensor([2.0, 2.0])).tolist())
    assert out.mask.tolist() == [[True, True, True, False], [True, True, False, False], [True, True, False, False]]
    assert out.features[1, 2:].abs().sum() == 0  # masked slots hold zeros
