"""Full-resolution fusion without the dense map (issue #14): reused buffers, running labels, skip proofs.

Each piece is checked against an independent computation: the fused maps against
:func:`fusion.fuse_prompts` (the dense path, kept as the oracle), the running labels against the dense
rules on a [C, H, W] map, the skip bounds against the bilinear resize itself, and the streaming labels
against the dense rules on tensors built to make many prompts skippable and many pixels tie.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from robustbench_ovss.backends.base import Decoded
from robustbench_ovss.methods.activesam import margin_calibration
from robustbench_ovss.methods.bounds import GridGeometry, sigmoid_upper, window_max
from robustbench_ovss.methods.fusion import PromptFuser, alias_max, fuse_prompts, tail_free, threshold_background
from robustbench_ovss.methods.running import RunningLabels
from robustbench_ovss.methods.streaming import StreamingLabels

BF16 = torch.bfloat16


@pytest.fixture(params=[1, 2], ids=["1-thread", "2-threads"])
def threads(request):
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


def _outputs(g: torch.Generator, n: int, q: int, grid: tuple[int, int], sem_grid=None):
    h, w = grid
    masks = torch.randn(n, q, h, w, generator=g) * 6
    logits = torch.randn(n, q, generator=g) * 2
    presence_logits = torch.randn(n, generator=g) * 2
    sem = torch.randn(n, *(sem_grid or grid), generator=g) * 3
    presence = presence_logits.sigmoid()
    return Decoded(masks, logits.sigmoid() * presence[:, None], sem, presence, logits, presence_logits)


# -- PromptFuser: bit for bit the dense path's rows -----------------------------------------------------
@pytest.mark.parametrize("out_hw", [(48, 64), (37, 53), (130, 200), (64, 48), (24, 24)])
@pytest.mark.parametrize("dtype", [torch.float32, BF16], ids=["fp32", "bf16"])
def test_prompt_fuser_equals_fuse_prompts_bit_for_bit(threads, out_hw, dtype) -> None:
    from robustbench_ovss.methods.fusion import instance_scores

    g = torch.Generator().manual_seed(out_hw[0])
    dec = _outputs(g, 4, 20, (24, 24))
    scores, presence = instance_scores(dec, dtype)
    fuser = PromptFuser(out_hw, "cpu", chunk=3)  # chunks of 3 where tail-free: several pieces per prompt
    for semantic in (dec.semantic_logits, None):
        want = fuse_prompts(dec.mask_logits, scores, semantic, presence, 0.3, out_hw)
        for i in range(4):
            got = fuser.fuse(dec.mask_logits[i], scores[i], None if semantic is None else semantic[i], presence[i], 0.3)
            if got is None:  # nothing kept and no semantic map: the dense row is zeros
                assert semantic is None and not want[i].any()
            else:
                assert torch.equal(got, want[i])
    # the subset rule: honoured only where the stack and its pieces are tail-free, else all kept are fused
    kept = int((scores[0] > 0.3).sum())
    fuser.fuse(dec.mask_logits[0], scores[0], None, presence[0], 0.3, subset=torch.zeros(20, dtype=torch.bool))
    assert fuser.fused_instances == (0 if fuser.exact_subsets(kept) else kept)


def test_tail_free_follows_atens_thread_split(threads) -> None:
    hw = 1024 * 2048
    assert tail_free(hw, "cpu")  # 2**21 splits evenly over 1 or 2 threads
    assert not tail_free(37 * 53, "cpu")  # not a whole number of vector chunks
    assert tail_free(64 * 100, "cpu")  # under ATen's grain size: one range whatever the threads
    torch.set_num_threads(3)
    assert not tail_free(hw, "cpu")  # divup(2**21, 3) = 699051 elements per thread: a scalar tail


# -- RunningLabels: the dense rules' labels -------------------------------------------------------------
def _dense_labels(dense: torch.Tensor, thd: float, bg_idx, mabc: bool) -> torch.Tensor:
    return margin_calibration(dense, thd, bg_idx) if mabc else threshold_background(dense, thd, bg_idx)


@pytest.mark.parametrize("seed", range(8))
def test_running_labels_equal_the_dense_rules(seed: int) -> None:
    """Prompts on a quarter grid (many ties and zeros), with aliases and all-zero prompts, folded one by one."""
    g = torch.Generator().manual_seed(seed)
    c = [7, 2, 12, 40][seed % 4]
    prompt_class = sorted(torch.randint(0, c, (int(torch.randint(1, 2 * c, (1,), generator=g)),), generator=g).tolist())
    maps = (torch.rand(len(prompt_class), 9, 11, generator=g) * 4).floor() / 4
    maps[:, :2] = 0.0  # pixels where every class scores 0
    zero = torch.rand(len(prompt_class), generator=g) < 0.2  # prompts whose map is None (0 everywhere)
    maps[zero] = 0.0
    dense = alias_max(maps, prompt_class, c)
    for bg_idx, thd in ((0, 0.4), (None, 0.0), (3, 0.6), (1, 0.0)):
        for mabc in (True, False):
            second = mabc and bg_idx is not None and thd > 0 and c >= 2
            state = RunningLabels((9, 11), "cpu", c, second=second)
            for i, label in enumerate(prompt_class):
                state.add(None if zero[i] else maps[i].clone(), label)
            got = state.labels(thd, bg_idx if (not mabc or second) else None, mabc=second)
            assert torch.equal(got, _dense_labels(dense, thd, bg_idx, mabc)), (bg_idx, thd, mabc)


def test_running_second_best_counts_classes_not_aliases() -> None:
    # one class with two aliases scoring .9 and .8: its score is .9; the second best is the other class's .1
    state = RunningLabels((1, 1), "cpu", 3, second=True)
    for scores, label in ((0.9, 1), (0.8, 1), (0.1, 2)):
        state.add(torch.tensor([[scores]]), label)
    state.labels(0.4, 0, mabc=True)
    assert state.best.item() == pytest.approx(0.9) and state.second.item() == pytest.approx(0.1)
    assert state.arg.item() == 1


# -- bounds: never below what the resize computes ---------------------------------------------------------
def test_window_max_by_brute_force() -> None:
    x = torch.randn(2, 7, 9, generator=torch.Generator().manual_seed(0))
    got = window_max(x)
    for i in range(7):
        for j in range(9):
            want = x[:, max(0, i - 1):i + 3, max(0, j - 1):j + 3].amax((1, 2))
            assert torch.equal(got[:, i, j], want)


@pytest.mark.parametrize("grid,out_hw", [((24, 24), (37, 53)), ((24, 24), (130, 200)), ((24, 24), (11, 17)),
                                         ((24, 24), (24, 24)), ((144, 144), (1024, 2048)), ((20, 30), (512, 683))])
def test_block_bounds_hold_every_resized_pixel(grid, out_hw) -> None:
    """sigmoid(resize(x)) at each output pixel <= the bound of its block, and block_min is the block's min."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, *grid, generator=g) * torch.tensor([1.0, 30.0, 300.0])[:, None, None]
    x[0, 0, 0] = -200.0  # sigmoid underflows to subnormals and 0 here
    probs = F.interpolate(x[:, None], size=out_hw, mode="bilinear", align_corners=False)[:, 0].sigmoid()
    geom = GridGeometry(grid, out_hw, "cpu")
    upper = sigmoid_upper(x)  # [3, h, w], per block
    per_pixel = upper[:, geom.rows][:, :, geom.cols]  # each pixel's block bound
    assert (probs.double() <= per_pixel).all()
    floor = torch.rand(out_hw, generator=g)
    blocks = geom.block_min(floor)
    # brute force: each block is a rectangle of output pixels (rows, columns with that source index)
    row_of = [(geom.rows == i).nonzero().flatten() for i in range(grid[0])]
    col_of = [(geom.cols == j).nonzero().flatten() for j in range(grid[1])]
    want = torch.full(grid, float("inf"), dtype=torch.float64)
    for i, ys in enumerate(row_of):
        for j, xs in enumerate(col_of):
            if ys.numel() and xs.numel():
                assert ys.numel() == int(ys[-1] - ys[0]) + 1 and xs.numel() == int(xs[-1] - xs[0]) + 1
                want[i, j] = float(floor[ys[0]:ys[-1] + 1, xs[0]:xs[-1] + 1].min())
    assert torch.equal(blocks, want)


@pytest.mark.parametrize("seed", range(4))
def test_a_part_proven_irrelevant_never_exceeds_the_floor(seed: int) -> None:
    """_needed is False only where every resized pixel x factor is at or below its block's floor."""
    from robustbench_ovss.methods.bounds import _needed

    g = torch.Generator().manual_seed(seed)
    grid, out_hw = (12, 16), (45, 70)
    logits = torch.randn(40, *grid, generator=g) * torch.linspace(0.5, 60, 40)[:, None, None] - 8
    factor = torch.rand(40, generator=g)
    geom = GridGeometry(grid, out_hw, "cpu")
    floor_px = (torch.rand(out_hw, generator=g) * 0.5 + 0.3).float()
    floor = geom.block_min(floor_px)
    need = _needed(logits, factor, floor)
    values = F.interpolate(logits[:, None], size=out_hw, mode="bilinear", align_corners=False)[:, 0].sigmoid() * factor[:, None, None]
    exceeds = (values > floor_px).flatten(1).any(1)
    assert not (exceeds & ~need).any()  # never a false proof
    assert (~need).any() and need.any()  # and the proofs do fire here
    assert _needed(logits[:1], torch.tensor([float("nan")]), floor).all()  # NaN: no proof


# -- StreamingLabels: skipping keeps the dense rules' labels ------------------------------------------------
def _skippable_bucket(g: torch.Generator, n: int, q: int, grid: tuple[int, int]) -> Decoded:
    """Prompts whose maps are low almost everywhere (absent classes) beside a few strong ones, on quarter
    logits so that distinct prompts often tie exactly."""
    dec = _outputs(g, n, q, grid)
    strong = torch.rand(n, generator=g) < 0.3
    dec.semantic_logits = torch.where(strong[:, None, None], dec.semantic_logits.abs() + 2, -dec.semantic_logits.abs() - 6)
    dec.semantic_logits = (dec.semantic_logits * 4).round() / 4
    dec.mask_logits = (dec.mask_logits * 4).round() / 4
    dec.presence = torch.where(strong, 0.9, 0.02)
    dec.scores = torch.where(strong[:, None], dec.scores, dec.scores * 0.02)
    return dec


@pytest.mark.parametrize("method", ["segearth", "sam3", "mabc", "threshold"])
@pytest.mark.parametrize("out_hw", [(64, 96), (45, 70)])
def test_streaming_labels_with_skipping_equal_the_dense_oracle(threads, method, out_hw) -> None:
    g = torch.Generator().manual_seed(["segearth", "sam3", "mabc", "threshold"].index(method) * 100 + out_hw[0])
    n, c = 30, 22
    prompt_class = sorted(torch.randint(0, c, (n,), generator=g).tolist())
    dec = _skippable_bucket(g, n, 10, (16, 16))
    semantic = method != "sam3"
    dense = alias_max(fuse_prompts(dec.mask_logits, dec.scores, dec.semantic_logits if semantic else None,
                                   dec.presence, 0.3, out_hw), prompt_class, c)
    mabc = method == "mabc"
    want = _dense_labels(dense, 0.4, 0, mabc)
    counts = {}
    for skip in (True, False):
        StreamingLabels.skip_bounded = skip
        try:
            stream = StreamingLabels(out_hw, "cpu", c, second=mabc, conf=0.3)
            for start in range(0, n, 7):  # buckets of 7
                part = Decoded(*(getattr(dec, f)[start:start + 7] for f in ("mask_logits", "scores", "semantic_logits", "presence")))
                stream.add_bucket(part, prompt_class[start:start + 7], semantic=semantic)
            assert torch.equal(stream.labels(0.4, 0, mabc=mabc), want)
            counts[skip] = stream.counts
        finally:
            StreamingLabels.skip_bounded = True
    assert counts[False]["prompts_skipped"] == 0
    if method != "sam3":
        assert counts[True]["prompts_skipped"] > 0  # the proofs did fire


def test_streaming_labels_on_the_trained_demo_model_skip_absent_classes() -> None:
    """A trained model (the demo checkpoint) on one of its scenes: SegEarth-OV3 proves most of the 121
    prompts irrelevant and still gives the dense path's labels; so does ActiveSAM (second best)."""
    from robustbench_ovss.method import MethodContext
    from robustbench_ovss.registry import BACKENDS, DATASETS, METHODS

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        backend = BACKENDS.get("sam3")(checkpoint="builtin:demo", device="cpu", dtype="fp32")
        ds = DATASETS.get("synthetic")()
        image = ds[3][1]
        for name in ("segearth-ov3", "activesam"):
            m = METHODS.get(name)(**({"hypernym_source": "table"} if name == "activesam" else {}))
            m.setup(MethodContext(vocabulary=ds.classes, bg_idx=ds.bg_idx, prob_thd=ds.prob_thd, dataset="synthetic",
                                  backend=backend))
            pred = m.predict(image)
            counts = m.fusion_counts
            assert torch.equal(pred, m.labels(m.class_scores(image)))
            if name == "segearth-ov3":
                assert counts["prompts_skipped"] > counts["prompts"] // 2
    finally:
        torch.set_num_threads(before)
