"""Losses, matcher and batching of the demo-model training (robustbench_ovss.training), on hand-made tensors."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from robustbench_ovss.training.batching import Scene, coverage, make_targets, sample_prompts
from robustbench_ovss.training.losses import (
    dice_loss,
    instance_loss,
    presence_loss,
    semantic_loss,
    sigmoid_focal_loss,
)
from robustbench_ovss.training.matcher import hungarian_match, pairwise_mask_cost

BIG = 20.0


def test_dice_perfect_and_disjoint():
    t = torch.zeros(1, 4, 4)
    t[0, :2] = 1
    perfect = torch.where(t > 0, BIG, -BIG)
    assert dice_loss(perfect, t).item() == pytest.approx(0.0, abs=1e-3)
    disjoint = torch.where(t > 0, -BIG, BIG)
    # 1 - (0 + 1) / (8 + 8 + 1)
    assert dice_loss(disjoint, t).item() == pytest.approx(1 - 1 / 17, abs=1e-3)
    assert dice_loss(torch.zeros(0, 4, 4), torch.zeros(0, 4, 4)).item() == 0.0


def test_focal_matches_formula():
    x = torch.tensor([0.3, -1.2])
    t = torch.tensor([1.0, 0.0])
    p = torch.sigmoid(x)
    want = torch.stack([
        -0.25 * (1 - p[0]) ** 2 * torch.log(p[0]),
        -0.75 * p[1] ** 2 * torch.log(1 - p[1]),
    ]).mean()
    assert sigmoid_focal_loss(x, t).item() == pytest.approx(want.item(), rel=1e-5)


def test_presence_loss_is_bce_and_handles_layers():
    logits = torch.tensor([[0.0], [0.0]])
    assert presence_loss(logits, torch.tensor([True, False])).item() == pytest.approx(math.log(2), rel=1e-6)
    layered = torch.zeros(3, 2, 1)  # [layers, N, 1] as the decoder hook returns
    assert presence_loss(layered, torch.tensor([True, False])).item() == pytest.approx(math.log(2), rel=1e-6)
    good = torch.tensor([[BIG], [-BIG]])
    assert presence_loss(good, torch.tensor([True, False])).item() < 1e-6


def test_semantic_loss_dice_only_on_present():
    t = torch.zeros(2, 4, 4)
    t[0, 1:3, 1:3] = 1
    logits = torch.where(t > 0, BIG, -BIG)
    assert semantic_loss(logits, t, torch.tensor([True, False])).item() < 1e-3
    # an absent prompt that fires everywhere is penalised by the BCE term
    bad = logits.clone()
    bad[1] = BIG
    assert semantic_loss(bad, t, torch.tensor([True, False])).item() > 5
    # ignored pixels do not count
    valid = torch.ones(2, 4, 4)
    valid[1] = 0
    assert semantic_loss(bad, t, torch.tensor([True, False]), valid=valid).item() < 1e-3


def test_pairwise_cost_matches_direct():
    torch.manual_seed(0)
    q = torch.randn(3, 5, 5)
    g = (torch.rand(2, 5, 5) > 0.5).float()
    bce, dice = pairwise_mask_cost(q, g)
    for i, j in itertools.product(range(3), range(2)):
        want = torch.nn.functional.binary_cross_entropy_with_logits(q[i], g[j])
        assert bce[i, j].item() == pytest.approx(want.item(), rel=1e-5)
        assert dice[i, j].item() == pytest.approx(dice_loss(q[i : i + 1], g[j : j + 1]).item(), rel=1e-5)


def test_matcher_recovers_permutation():
    g = torch.zeros(3, 8, 8)
    g[0, :4, :4] = 1
    g[1, 4:, 4:] = 1
    g[2, :4, 4:] = 1
    q = torch.full((6, 8, 8), -BIG)
    perm = [4, 1, 5]  # query perm[k] predicts target k
    for k, qi in enumerate(perm):
        q[qi] = torch.where(g[k] > 0, BIG, -BIG)
    qi, ki = hungarian_match(q, torch.zeros(6), g)
    assert ki.tolist() == [0, 1, 2]
    assert qi.tolist() == perm


def test_matcher_is_optimal_against_brute_force():
    torch.manual_seed(1)
    q = torch.randn(4, 6, 6) * 3
    s = torch.randn(4)
    g = (torch.rand(3, 6, 6) > 0.6).float()
    bce, dice = pairwise_mask_cost(q, g)
    cost = bce + dice - s.sigmoid()[:, None]
    best = min(sum(cost[p[k], k].item() for k in range(3)) for p in itertools.permutations(range(4), 3))
    qi, ki = hungarian_match(q, s, g)
    assert sum(cost[a, b].item() for a, b in zip(qi.tolist(), ki.tolist())) == pytest.approx(best, rel=1e-6)
    empty = hungarian_match(q, s, torch.zeros(0, 6, 6))
    assert empty[0].numel() == 0 and empty[1].numel() == 0


def test_instance_loss_scores_and_masks():
    g = torch.zeros(2, 8, 8)
    g[0, :4] = 1
    g[1, 4:] = 1
    q = torch.full((1, 4, 8, 8), -BIG)
    q[0, 2] = torch.where(g[0] > 0, BIG, -BIG)
    q[0, 0] = torch.where(g[1] > 0, BIG, -BIG)
    good_scores = torch.tensor([[BIG, -BIG, BIG, -BIG]])
    loss, st = instance_loss(q, good_scores, [g])
    assert st["matched"] == 2
    assert loss.item() < 1e-2
    bad_scores = torch.tensor([[-BIG, BIG, -BIG, BIG]])
    assert instance_loss(q, bad_scores, [g])[0].item() > 1.0
    # an absent concept: every score must go to 0, no mask term
    loss_abs, st_abs = instance_loss(q, torch.full((1, 4), -BIG), [torch.zeros(0, 8, 8)])
    assert st_abs["matched"] == 0 and loss_abs.item() < 1e-3


def _scene(labels: list[int]) -> Scene:
    lab = np.zeros((8, 8), np.uint8)
    inst = []
    for k, c in enumerate(labels):
        m = np.zeros((8, 8), bool)
        m[k, :] = True
        lab[m] = c
        inst.append((c, m))
    lab[7, 7] = 255
    return Scene(np.zeros((8, 8, 3), np.uint8), lab, inst)


def test_sample_prompts_positives_then_negatives():
    rng = np.random.default_rng(0)
    scenes = [_scene([3, 5]), _scene([7])]
    pb = sample_prompts(scenes, num_classes=10, prompts_per_image=4, rng=rng)
    assert pb.class_id.numel() == 8
    for b, s in enumerate(scenes):
        rows = pb.image_index == b
        cls = pb.class_id[rows].tolist()
        assert len(set(cls)) == 4
        present = set(s.present())
        assert present <= set(cls)  # every present concept is prompted (0 = background included)
        assert pb.present[rows].tolist() == [c in present for c in cls]
        assert 255 not in cls


def test_targets_coverage_and_instances():
    s = _scene([3, 3])
    rng = np.random.default_rng(0)
    pb = sample_prompts([s], num_classes=5, prompts_per_image=3, rng=rng)
    sem, valid, inst = make_targets([s], pb, (4, 4))
    for row, c in enumerate(pb.class_id.tolist()):
        assert torch.allclose(sem[row], coverage(s.label == c, (4, 4)))
        if c == 3:
            assert inst[row].shape == (2, 4, 4)
        else:
            assert inst[row].shape[0] == 0  # background and absent concepts have no instances
    assert valid.min() < 1  # the ignored pixel lowers one cell's weight


def test_hard_negatives_come_from_the_pool():
    rng = np.random.default_rng(0)
    s = _scene([3])
    pb = sample_prompts([s], num_classes=50, prompts_per_image=6, rng=rng, negative_pool=[[7, 8, 3]])
    cls = pb.class_id.tolist()
    negatives = [c for c in cls if c not in s.present()]
    assert len(negatives) == 4
    assert {7, 8} <= set(negatives)  # up to half the negatives (2 of 4) from the pool, present 3 excluded


def test_confusable_labels_share_a_colour():
    from robustbench_ovss.datasets.synthetic import concept_style
    from robustbench_ovss.training.data import confusable_labels

    conf = confusable_labels(40)
    assert conf[0] == [] and len(conf) == 41
    for b in conf[1]:
        a_cols = {concept_style(0).primary, concept_style(0).secondary}
        assert a_cols & {concept_style(b - 1).primary, concept_style(b - 1).secondary}


def test_prompt_softmax_loss_prefers_the_right_prompt() -> None:
    import torch

    from robustbench_ovss.training.losses import prompt_softmax_loss

    # two images, two prompts each; image 0: prompt 0 covers the left half, prompt 1 the right half
    t = torch.zeros(4, 2, 2)
    t[0, :, 0] = 1.0
    t[1, :, 1] = 1.0
    t[2] = 0.3  # image 1: nothing covers a cell by >= 0.5 -> skipped
    idx = torch.tensor([0, 0, 1, 1])
    pres = torch.zeros(4)
    good = torch.full((4, 2, 2), -4.0)
    good[0, :, 0] = good[1, :, 1] = 4.0
    bad = -good
    lg = prompt_softmax_loss(good, pres, t, idx)
    lb = prompt_softmax_loss(bad, pres, t, idx)
    assert lg < 0.05 < 2.0 < lb
    # equal semantic maps: the presence logit decides
    flat = torch.zeros(4, 2, 2)
    assert prompt_softmax_loss(flat, torch.tensor([5.0, -5.0, 0, 0]), t, idx) > prompt_softmax_loss(
        flat, torch.tensor([0.0, 0.0, 0, 0]), t, idx
    )
    # gradients flow to both the maps and the presence
    s = good.clone().requires_grad_(True)
    p = pres.clone().requires_grad_(True)
    prompt_softmax_loss(s, p, t, idx).backward()
    assert s.grad.abs().sum() > 0 and p.grad.abs().sum() > 0
    assert s.grad[2:].abs().sum() == 0  # skipped image gets nothing
    # nothing covered anywhere -> 0, not NaN
    assert prompt_softmax_loss(flat, pres, torch.zeros(4, 2, 2), idx).item() == 0.0
