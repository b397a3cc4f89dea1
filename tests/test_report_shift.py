"""The report's "Synthetic vs real shift" section on a hand-made results table (issue #15)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from robustbench_ovss.report import sections
from robustbench_ovss.report.shift import MIN_PAIRS, shift_correlation, shift_pairs

METHODS = ("activesam", "segearth-ov3", "sam3")


def _results(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []

    def add(label, dataset, corruption, severity, miou, seed_=0):
        rows.append(dict(label=label, method=label, dataset=dataset, corruption=corruption, severity=severity,
                         seed=seed_, status="ok", miou=miou))

    for m in METHODS:
        add(m, "cityscapes", "none", 0, 0.6 + rng.uniform(0, 0.1))
        for c in ("fog", "snow", "frost", "rain", "low_light"):
            for s in (1, 3, 5):
                add(m, "cityscapes", c, s, 0.55 - 0.05 * s + rng.uniform(0, 0.05))
        for d in ("acdc-fog", "acdc-night", "acdc-rain", "acdc-snow"):
            add(m, d, "none", 0, rng.uniform(0.2, 0.5))
    add("activesam", "cityscapes", "fog", 1, 0.9, seed_=1)  # a second seed is averaged in
    return pd.DataFrame(rows)


def test_pairs_and_correlation_equal_a_direct_computation() -> None:
    res = _results()
    pairs = shift_pairs(res)
    assert len(pairs) == 12  # 3 methods x 4 conditions
    clean = res[res.corruption == "none"].set_index(["label", "dataset"])["miou"]
    for r in pairs.itertuples(index=False):
        imitating = {"acdc-fog": ["fog"], "acdc-night": ["low_light"], "acdc-rain": ["rain"],
                     "acdc-snow": ["snow", "frost"]}[r.dataset]
        syn = np.mean([res[(res.label == r.label) & (res.dataset == "cityscapes") & (res.corruption == c)]["miou"].mean()
                       for c in imitating])
        assert r.real_drop == pytest.approx(clean[(r.label, "cityscapes")] - clean[(r.label, r.dataset)])
        assert r.synthetic_drop == pytest.approx(clean[(r.label, "cityscapes")] - syn)
    rho, n = shift_correlation(pairs)
    assert n == 12 and rho == pytest.approx(spearmanr(pairs.synthetic_drop, pairs.real_drop).statistic)
    md = sections.shift(pairs, rho, n, MIN_PAIRS)
    assert f"**{rho:.3f}**" in md and "| activesam | snow |" in md


def test_too_few_pairs_give_no_number_and_no_pairs_no_section() -> None:
    res = _results()
    few = res[(res.label == "activesam") & ~res.dataset.isin(["acdc-rain"])]
    pairs = shift_pairs(few)
    rho, n = shift_correlation(pairs)
    assert n == 3 and np.isnan(rho)
    assert "not computed, 3 (method, condition) pair(s)" in sections.shift(pairs, rho, n, MIN_PAIRS)
    assert sections.shift(shift_pairs(res[res.dataset == "cityscapes"]), np.nan, 0, MIN_PAIRS) == ""


def test_constant_drops_have_no_correlation() -> None:
    pairs = shift_pairs(_results())
    flat = pairs.assign(real_drop=0.1)
    rho, n = shift_correlation(flat)
    assert n == 12 and np.isnan(rho)
    assert "not defined" in sections.shift(flat, rho, n, MIN_PAIRS)
