"""Does robustness to synthetic corruption predict robustness to real shift? (the ACDC section)

A real-condition dataset is paired with the clean dataset of the same kind of scenes and with the
synthetic corruptions meant to imitate the condition (:data:`REAL_SHIFTS`: ACDC fog -> Cityscapes fog,
snow -> snow and frost, rain -> the ``rain`` extra, night -> the ``low_light`` extra; Dark Zurich's
night likewise). Per method and
condition:

- real drop = clean mIoU of the counterpart - mIoU on the real-condition set;
- synthetic drop = clean mIoU of the counterpart - mean mIoU under the imitating corruptions (mean over
  their severities and seeds; with two corruptions, the mean of the two).

The Spearman rank correlation of synthetic vs real drops is taken over the pooled (method, condition)
pairs; below :data:`MIN_PAIRS` pairs no number is given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from . import tables

__all__ = ["REAL_SHIFTS", "MIN_PAIRS", "RealShift", "shift_pairs", "shift_correlation"]

MIN_PAIRS = 5


@dataclass(frozen=True)
class RealShift:
    """A real-condition dataset, its clean counterpart and the synthetic corruptions that imitate it."""

    dataset: str
    condition: str
    clean_dataset: str
    corruptions: tuple[str, ...]


REAL_SHIFTS = (
    RealShift("acdc-fog", "fog", "cityscapes", ("fog",)),
    RealShift("acdc-night", "night", "cityscapes", ("low_light",)),
    RealShift("acdc-rain", "rain", "cityscapes", ("rain",)),
    RealShift("acdc-snow", "snow", "cityscapes", ("snow", "frost")),
    RealShift("dark-zurich", "night (Dark Zurich)", "cityscapes", ("low_light",)),
)

PAIR_COLUMNS = ["label", "dataset", "condition", "clean_dataset", "corruptions", "clean_miou", "real_miou",
                "real_drop", "synthetic_miou", "synthetic_drop"]


def shift_pairs(results: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, real condition) with both drops (fractions); columns :data:`PAIR_COLUMNS`.

    A pair needs the real set's clean unit, the counterpart's clean unit and at least one finished unit
    of each imitating corruption on the counterpart; otherwise it is left out.
    """
    r = tables.ok_rows(results)
    clean = r[r["corruption"] == tables.CLEAN].groupby(["label", "dataset"])["miou"].mean()
    corr = r[r["corruption"] != tables.CLEAN].groupby(["label", "dataset", "corruption"])["miou"].mean()
    rows = []
    for shift in REAL_SHIFTS:
        for label in sorted(set(r["label"])):
            if (label, shift.dataset) not in clean.index or (label, shift.clean_dataset) not in clean.index:
                continue
            synth = [corr.get((label, shift.clean_dataset, c)) for c in shift.corruptions]
            if any(v is None or math.isnan(v) for v in synth):
                continue
            base = float(clean[(label, shift.clean_dataset)])
            real = float(clean[(label, shift.dataset)])
            syn = float(sum(synth) / len(synth))
            rows.append((label, shift.dataset, shift.condition, shift.clean_dataset, "+".join(shift.corruptions),
                         base, real, base - real, syn, base - syn))
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)


def shift_correlation(pairs: pd.DataFrame) -> tuple[float, int]:
    """(Spearman's rho of synthetic vs real drop over the pooled pairs, number of pairs); rho is NaN
    below :data:`MIN_PAIRS` pairs or when either series is constant."""
    n = len(pairs)
    if n < MIN_PAIRS:
        return math.nan, n
    if pairs["synthetic_drop"].nunique() < 2 or pairs["real_drop"].nunique() < 2:
        return math.nan, n  # a constant series has no ranks to correlate
    from scipy.stats import spearmanr

    rho = spearmanr(pairs["synthetic_drop"], pairs["real_drop"]).statistic
    return float(rho), n
