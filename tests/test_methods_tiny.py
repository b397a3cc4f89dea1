"""The three built-in methods on the tiny random SAM 3 (real backend code path, CPU, small images)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from robustbench_ovss.errors import ConfigError
from robustbench_ovss.method import MethodContext, check_prediction
from robustbench_ovss.registry import METHODS

# a vocabulary over the 40-prompt preview limit (46 prompts, 44 classes), with aliases and names
# the canonicaliser changes
BIG_VOCAB = [["background"], ["aeroplane"], ["tvmonitor", "monitor"], ["dog", "puppy"]] + [
    [w] for w in (
        "cat bird boat bottle bus car chair cow table horse person sheep sofa train tree grass sky road "
        "building wall floor ceiling window door bed lamp book cup plate apple banana orange pizza cake "
        "clock vase laptop keyboard mouse remote"
    ).split()
]
SMALL_VOCAB = [["background"], ["aeroplane"], ["tvmonitor", "monitor"], ["dog", "puppy"], ["cat"], ["tie"]]
OFF = {"preview": False, "expansion": False, "canonicalize": False, "mabc": False}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny model's ops are too small to gain from threads; on a busy 2-core machine two OpenMP
    threads can run tens of times slower than one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    """A tiny random SAM 3 through the real backend, built small for speed.

    Native 168 px (grid 12, windows of 4) so that the 2/3 preview (112 px) needs no window padding;
    the packaged builtin:tiny-random (336 px) follows the same code path, only slower.
    """
    from robustbench_ovss.backends.sam3 import Sam3Backend
    from robustbench_ovss.backends.tiny import build_tiny_checkpoint

    ckpt = build_tiny_checkpoint(tmp_path_factory.mktemp("tiny"), image_size=168, window_size=4,
                                 pretrain_image_size=56, seed=0)
    return Sam3Backend(str(ckpt), device="cpu", dtype="fp32")


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    b = np.zeros((40, 56, 3), np.uint8)
    b[:, :28] = (200, 30, 30)
    b[10:30, 30:50] = (20, 180, 60)
    return [a, b]


def ctx_for(backend, vocab, dataset="voc21", bg_idx=0, prob_thd=0.4) -> MethodContext:
    return MethodContext(vocabulary=vocab, bg_idx=bg_idx, prob_thd=prob_thd, dataset=dataset, backend=backend,
                         class_names=[a[0] for a in vocab])


def make(name, backend, vocab, ctx_kw=None, **params):
    m = METHODS.get(name)(**params)
    m.setup(ctx_for(backend, vocab, **(ctx_kw or {})))
    return m


def run(m, image) -> torch.Tensor:
    pred = m.predict(image)
    return check_prediction(pred, image.shape[:2], len(m.ctx.vocabulary), m.name)


def test_methods_are_registered_with_contract_attributes() -> None:
    for name in ("activesam", "segearth-ov3", "sam3"):
        cls = METHODS.get(name)
        assert cls.name == name and cls.version and cls.needs_backend is True
        m = cls()
        assert m.params == cls.defaults and len(m.params_hash) == 12


@pytest.mark.parametrize(
    "vocab,conf,n_images",
    [(SMALL_VOCAB, 0.3, 2), (SMALL_VOCAB, 0.05, 2), (BIG_VOCAB, 0.05, 1)],
    ids=["6-classes-conf.3", "6-classes-conf.05", "44-classes-conf.05"],
)
def test_activesam_with_all_switches_off_equals_segearth(backend, images, vocab, conf, n_images) -> None:
    act = make("activesam", backend, vocab, confidence_threshold=conf, **OFF)
    seg = make("segearth-ov3", backend, vocab, confidence_threshold=conf)
    for image in images[:n_images]:
        sa, ss = act.class_scores(image), seg.class_scores(image)
        # buckets of 32 vs one prompt per decoder call: the same maths, batched matmuls differ in the last bit
        torch.testing.assert_close(sa, ss, rtol=0, atol=1e-5)
        assert torch.equal(act.labels(sa), seg.labels(ss))  # pixel for pixel
        assert torch.equal(act.predict(image), seg.predict(image))
    assert act.stats()["prompts_decoded"] == seg.stats()["prompts_decoded"] == sum(len(v) for v in vocab)
    assert act.stats()["active"] == list(range(len(vocab)))
    if conf < 0.3:  # the instance path was exercised: some instance passed the threshold
        feats = backend.encode_image(images[0])
        assert (backend.decode(feats, seg.text, range(len(seg.prompts)), 8).scores > conf).any()


def expected_labels(scores: np.ndarray, prob_thd: float, bg_idx: int | None, margin_exponent: float | None) -> np.ndarray:
    """The documented decision rule, written in numpy from class scores [C, H, W]: the first class with the
    best score; background where the best score (or, with MABC, s1 * sqrt(s1 - s2)) is below the threshold."""
    order = np.sort(scores, axis=0)
    s1, s2 = order[-1], order[-2] if scores.shape[0] > 1 else np.zeros_like(order[-1])
    labels = scores.argmax(axis=0)
    if bg_idx is None or prob_thd <= 0:
        return labels
    if margin_exponent is None:
        return np.where(s1 < prob_thd, bg_idx, labels)
    return np.where(s1 * np.sqrt(np.maximum(s1 - s2, 0)) < prob_thd**margin_exponent, bg_idx, labels)


def test_predict_follows_the_decision_rule_on_its_class_scores(backend, images) -> None:
    """predict's labels are the documented rule applied to the method's dense class scores (the score
    map of the reference order): argmax, then the background rule (MABC for ActiveSAM)."""
    for name in ("activesam", "segearth-ov3", "sam3"):
        kinds = set()
        for thd, image in ((0.0, images[0]), (0.0, images[1]), (0.1, images[1])):
            m = make(name, backend, SMALL_VOCAB, confidence_threshold=0.05, ctx_kw={"prob_thd": thd})
            pred = run(m, image).numpy()
            scores = m.class_scores(image).numpy()
            exponent = m.params["mabc_exponent"] if name == "activesam" else None
            assert (pred == expected_labels(scores, thd, m.ctx.bg_idx, exponent)).all(), (name, thd)
            kinds.add(len(np.unique(pred)) > 1)
        assert True in kinds  # a non-trivial map: the argmax was exercised


def test_bucket_size_does_not_change_activesam(backend, images) -> None:
    outs = []
    for bucket in (32, 3):
        m = make("activesam", backend, BIG_VOCAB, bucket_size=bucket, confidence_threshold=0.05)
        outs.append((run(m, images[0]), m.stats()))
    assert torch.equal(outs[0][0], outs[1][0]) and outs[0][1] == outs[1][1]
    # and for segearth-ov3: its one-prompt-per-pass default equals a batched decode
    seg1 = make("segearth-ov3", backend, SMALL_VOCAB, confidence_threshold=0.05)
    seg8 = make("segearth-ov3", backend, SMALL_VOCAB, confidence_threshold=0.05, bucket_size=8)
    torch.testing.assert_close(seg1.class_scores(images[0]), seg8.class_scores(images[0]), rtol=0, atol=1e-5)
    assert torch.equal(seg1.predict(images[0]), seg8.predict(images[0]))


def test_bucket_size_auto_resolves_per_device_and_stays_auto_in_params_hash(backend, images) -> None:
    from robustbench_ovss.methods.common import AUTO_BUCKET, resolve_bucket_size

    # (preview, decode) prompts per call
    assert resolve_bucket_size("auto", torch.device("cuda", 1)) == AUTO_BUCKET["cuda"] == (32, 32)  # the release's
    assert resolve_bucket_size("auto", torch.device("cpu"), threads=1) == AUTO_BUCKET["cpu"] == (8, 1)  # measured
    assert resolve_bucket_size("auto", "cpu", threads=4) == AUTO_BUCKET["cpu-threads"] == (8, 8)
    assert resolve_bucket_size("auto", "mps", threads=1) == (8, 1) and resolve_bucket_size(5, "cuda") == (5, 5)
    auto = METHODS.get("activesam")()
    assert auto.params["bucket_size"] == "auto"
    before = auto.params_hash
    auto.setup(ctx_for(backend, BIG_VOCAB))
    assert auto.params_hash == before and auto.params["bucket_size"] == "auto"  # configured, as hashed
    # recorded per unit by the runner (this module runs torch on one thread)
    assert (auto.resolved_params()["preview_bucket_size"], auto.resolved_params()["bucket_size"]) == (8, 1)
    calls = dict(backend.counters)
    pred = run(auto, images[0])
    decoded = auto.stats()["prompts_decoded"]
    assert backend.counters["presence_calls"] - calls["presence_calls"] == 6  # 46 prompts in buckets of 8
    assert backend.counters["decoder_calls"] - calls["decoder_calls"] == decoded  # one prompt per call
    fixed = make("activesam", backend, BIG_VOCAB, bucket_size=32)
    assert fixed.params_hash != before  # a configured number is another configuration, same output
    assert torch.equal(pred, run(fixed, images[0])) and fixed.resolved_params()["preview_bucket_size"] == 32
    seg = make("segearth-ov3", backend, SMALL_VOCAB, bucket_size="auto")
    assert seg.resolved_params()["bucket_size"] == 1
    assert make("sam3", backend, SMALL_VOCAB).resolved_params()["bucket_size"] == 1  # the reference default
    for bad in ("fast", 0, True, 2.5):
        with pytest.raises(ConfigError, match="bucket_size"):
            METHODS.get("segearth-ov3")(bucket_size=bad)


def test_activesam_preview_active_set_and_stats(backend, images) -> None:
    from robustbench_ovss.methods.activesam import select_active

    m = make("activesam", backend, BIG_VOCAB, bucket_size=32)  # the release's buckets (CUDA's "auto")
    calls = dict(backend.counters)
    run(m, images[0])
    st = m.stats()
    n = sum(len(v) for v in BIG_VOCAB)
    assert st["preview_skipped"] is False and st["prompts_previewed"] == n
    assert 1 <= st["prompts_decoded"] <= 40 and st["prompts_decoded"] < n
    assert st["active"] == sorted(set(st["active"])) and all(0 <= c < len(BIG_VOCAB) for c in st["active"])
    assert backend.counters["presence_calls"] - calls["presence_calls"] == 2  # 46 prompts in buckets of 32
    assert backend.counters["decoder_calls"] - calls["decoder_calls"] == 1  # <= 32 active prompts: one bucket
    assert backend.counters["image_encoder_calls"] - calls["image_encoder_calls"] == 2  # preview + full
    assert m.resolved_params()["preview_resolution"] == 112  # 2/3 of the test model's 168
    # the active set is what select_active makes of the bare prompts' presence at the preview size
    feats = backend.encode_image(images[0], 112)
    active = select_active(backend.presence(feats, m.bare_text, range(n), 32))
    assert st["prompts_decoded"] == len(active)
    assert st["active"] == sorted({m.prompt_class[i] for i in active.tolist()})
    # max_active caps the set; prompts outside it score 0
    capped = make("activesam", backend, BIG_VOCAB, max_active=3, confidence_threshold=0.05,
                  ctx_kw={"bg_idx": None, "prob_thd": 0.0})
    scores = capped.class_scores(images[0])
    kept = capped.stats()["active"]
    assert capped.stats()["prompts_decoded"] == 3
    outside = [c for c in range(len(BIG_VOCAB)) if c not in kept]
    assert scores[outside].eq(0).all() and scores[kept].gt(0).any()
    # small vocabulary (<= 40 prompts): no preview, every prompt decoded
    small = make("activesam", backend, SMALL_VOCAB)
    run(small, images[1])
    assert small.stats()["preview_skipped"] is True and small.stats()["prompts_decoded"] == 8
    assert small.stats()["prompts_previewed"] == 0


def test_alias_max_picks_best_alias(backend, images) -> None:
    """A class with aliases a, b, c scores the max of what the split vocabulary scores a, b, c."""
    joined = [["cat"], ["dog", "puppy", "tree"]]
    split = [["cat"], ["dog"], ["puppy"], ["tree"]]
    no_bg = {"bg_idx": None, "prob_thd": 0.0}
    for name in ("segearth-ov3", "sam3", "activesam"):
        kw = {"confidence_threshold": 0.05, **({"expansion": False} if name == "activesam" else {})}
        sj = make(name, backend, joined, ctx_kw=no_bg, **kw).class_scores(images[0])
        ss = make(name, backend, split, ctx_kw=no_bg, **kw).class_scores(images[0])
        torch.testing.assert_close(sj[0], ss[0], rtol=0, atol=1e-5)
        torch.testing.assert_close(sj[1], ss[1:].amax(0), rtol=0, atol=1e-5)
        assert not torch.equal(ss[1], ss[2])  # the aliases do differ, so the max matters


def test_background_rules_per_dataset(backend, images) -> None:
    image = images[0]
    # segearth-ov3 and sam3: reference confidence per dataset; activesam 0.3 everywhere
    for dataset, conf in {"voc21": 0.5, "voc20": 0.2, "context60": 0.3, "coco_object": 0.5, "coco_stuff": 0.2,
                          "cityscapes": 0.3, "ade20k": 0.3, "context59": 0.3, "synthetic": 0.5, "voc-sample": 0.5}.items():
        for name in ("segearth-ov3", "sam3"):
            m = make(name, backend, SMALL_VOCAB, ctx_kw={"dataset": dataset})
            assert m.resolved_params()["confidence_threshold"] == conf
            assert m.params["confidence_threshold"] is None  # the configured value stays None (params_hash)
        assert make("activesam", backend, SMALL_VOCAB, expansion=False,
                    ctx_kw={"dataset": dataset}).resolved_params()["confidence_threshold"] == 0.3
    vocab = [["background"], ["cat"], ["dog"]]
    for name in ("segearth-ov3", "sam3", "activesam"):
        m = make(name, backend, vocab, confidence_threshold=0.05, ctx_kw={"bg_idx": 0, "prob_thd": 0.4})
        scores = m.class_scores(image)
        assert m.resolved_params()["prob_thd"] == 0.4
        best = scores.amax(0)
        if name == "activesam":  # MABC: c = s1 * sqrt(s1 - s2) against 0.4 ** 1.25
            top2 = scores.topk(2, dim=0).values
            c = top2[0] * (top2[0] - top2[1]).clamp_min(0).sqrt()
            expected_bg = c < 0.4**1.25
        else:  # plain: best score below prob_thd
            expected_bg = best < 0.4
        pred = m.labels(scores)
        assert torch.equal(pred.eq(0) & expected_bg, expected_bg)  # every expected pixel is background
        assert torch.equal(pred[~expected_bg], scores.argmax(0)[~expected_bg])
        # no background class: no rule at all, whatever prob_thd says
        for ctx_kw in ({"bg_idx": None, "prob_thd": 0.99}, {"bg_idx": 0, "prob_thd": 0.0}):
            m2 = make(name, backend, vocab, confidence_threshold=0.05, ctx_kw=ctx_kw)
            assert torch.equal(m2.labels(scores), scores.argmax(0))
        # bg_idx need not be 0, and the method's prob_thd param overrides the dataset's
        last = make(name, backend, vocab, prob_thd=0.99, ctx_kw={"bg_idx": 2, "prob_thd": 0.0})
        assert last.resolved_params()["prob_thd"] == 0.99
        assert last.labels(scores.clamp_max(0.5)).eq(2).all()
    plain = make("activesam", backend, vocab, mabc=False, ctx_kw={"bg_idx": 0, "prob_thd": 0.4})
    assert torch.equal(plain.labels(scores), make("segearth-ov3", backend, vocab).labels(scores))


def test_activesam_encodes_canonical_texts_and_appends_tokens_in_full_pass_only(backend) -> None:
    m = make("activesam", backend, SMALL_VOCAB, hypernym_source="table")
    assert m.texts == ["background", "airplane", "tv monitor", "computer monitor", "dog", "puppy", "cat", "necktie"]
    assert m.bare_text.features.shape[:2] == (8, 32)
    assert m.full_text.features.shape[:2] == (8, 36)  # 2 neighbour + 2 hypernym tokens appended
    assert m.full_text.texts == m.bare_text.texts
    mask = m.full_text.mask[:, 32:]
    assert mask[:, :2].all()  # neighbour tokens always attended
    # hypernyms (table, WordNet 3.0): airplane -> heavier-than-air craft; tv monitor -> monitor, encoded
    # canonicalised ("computer monitor"), as the release's wrapped text encoder does
    assert m.hypernyms[1] == ["heavier-than-air craft"] and m.hypernyms[2] == ["computer monitor"]
    assert mask[1, 2:].tolist() == [True, False]
    assert m.resolved_params()["hypernym_source"] == "table"
    off = make("activesam", backend, SMALL_VOCAB, canonicalize=False, hypernym_source="table")
    assert off.texts[1] == "aeroplane" and off.hypernyms[2] == ["monitor"]
    assert off.hypernyms[1] == ["heavier-than-air craft"]  # looked up on the canonical name regardless
    assert make("activesam", backend, SMALL_VOCAB, expansion=False).full_text is not None


def test_custom_vocabulary_without_wordnet_warns_and_masks(backend, images) -> None:
    custom = [["blorp"], ["cat"], ["zyzzyx widget"]]
    with pytest.warns(RuntimeWarning, match=r"hypernym tokens masked for 2 name"):
        m = make("activesam", backend, custom, hypernym_source="table", ctx_kw={"dataset": "custom", "bg_idx": None})
    assert m.full_text.mask[:, 34:].tolist() == [[False, False], [True, False], [False, False]]
    run(m, images[0])
    with pytest.warns(RuntimeWarning, match="WordNet is not available"):
        none = make("activesam", backend, custom, hypernym_source="none", ctx_kw={"dataset": "custom", "bg_idx": None})
    assert not none.full_text.mask[:, 34:].any()
    run(none, images[0])


def test_bad_params_fail_at_construction() -> None:
    with pytest.raises(ConfigError, match="unknown param"):
        METHODS.get("segearth-ov3")(bucket=3)
    with pytest.raises(ConfigError, match="bucket_size"):
        METHODS.get("activesam")(bucket_size=0)
    with pytest.raises(ConfigError, match="preview"):
        METHODS.get("activesam")(preview="yes")
    with pytest.raises(ConfigError, match="hypernym_source"):
        METHODS.get("activesam")(hypernym_source="web")
    with pytest.raises(ConfigError, match="confidence_threshold"):
        METHODS.get("sam3")(confidence_threshold=1.5)


def test_sam3_ignores_semantic_head(backend, images) -> None:
    """sam3 = instance outputs only: with no instance above conf, every class scores 0 -> label 0."""
    m = make("sam3", backend, SMALL_VOCAB[1:], confidence_threshold=0.99, ctx_kw={"bg_idx": None, "prob_thd": 0.0})
    assert run(m, images[0]).eq(0).all()
    seg = make("segearth-ov3", backend, SMALL_VOCAB[1:], confidence_threshold=0.99, ctx_kw={"bg_idx": None, "prob_thd": 0.0})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert run(seg, images[0]).unique().numel() >= 1  # the semantic head still scores pixels


def test_segearth_reencode_text_runs_the_text_encoder_per_image_and_changes_no_score(backend, images) -> None:
    cached = make("segearth-ov3", backend, SMALL_VOCAB)
    again = make("segearth-ov3", backend, SMALL_VOCAB, reencode_text=True)
    for image in images:
        before = backend.counters["text_encoder_calls"]
        want = cached.class_scores(image)
        assert backend.counters["text_encoder_calls"] == before  # cached: no text encoder per image
        got = again.class_scores(image)
        assert backend.counters["text_encoder_calls"] == before + 1  # all 8 prompts in one text batch
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    with pytest.raises(ConfigError, match="reencode_text"):
        METHODS.get("segearth-ov3")(reencode_text="yes")


@pytest.mark.parametrize("mabc", [True, False])
@pytest.mark.parametrize("bg", [(0, 0.4), (None, 0.0)])
def test_activesam_running_labels_equal_the_dense_oracle(backend, images, mabc, bg) -> None:
    """predict's running best / second best against the dense [C, H, W] path (the oracle)."""
    bg_idx, thd = bg
    m = make("activesam", backend, BIG_VOCAB, ctx_kw={"bg_idx": bg_idx, "prob_thd": thd}, mabc=mabc,
             confidence_threshold=0.05, hypernym_source="table")
    for image in images:
        pred = run(m, image)
        assert m.stats()["prompts_previewed"] > 0 and m.stats()["prompts_decoded"] < len(m.prompts)
        assert torch.equal(pred, m.labels(m.class_scores(image)))


@pytest.mark.parametrize("name", ["segearth-ov3", "sam3"])
@pytest.mark.parametrize("bg", [(0, 0.4), (None, 0.0)])
def test_full_vocabulary_running_best_equals_the_dense_oracle(backend, images, name, bg) -> None:
    bg_idx, thd = bg
    m = make(name, backend, BIG_VOCAB, ctx_kw={"bg_idx": bg_idx, "prob_thd": thd}, confidence_threshold=0.05)
    for image in images:
        assert torch.equal(run(m, image), m.labels(m.class_scores(image)))
