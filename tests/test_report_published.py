"""The shipped published numbers (ActiveSAM paper, Tables 1-3) and the protocol matching."""

from __future__ import annotations

import pandas as pd
import pytest

from robustbench_ovss.report import published as P

EIGHT = {"voc21", "context60", "coco_object", "voc20", "context59", "coco_stuff", "cityscapes", "ade20k"}
SIX = {"voc20", "voc21", "cityscapes", "ade20k", "context60", "coco_stuff"}
FOUR = {"gaussian_noise", "motion_blur", "jpeg_compression", "fog"}


@pytest.fixture(scope="module")
def pub():
    return P.load_published()


def value(pub, **kw):
    e = pub.entries
    for k, v in kw.items():
        e = e[e[k] == v]
    assert len(e) == 1, kw
    return float(e["value"].iloc[0])


def test_source_is_recorded(pub):
    assert pub.source["arxiv"] == "2606.16996"
    assert "VILA-Lab/ActiveSAM" in pub.source["transcribed_from"]
    assert "RTX 5090" in pub.source["hardware"]
    assert set(pub.tables) == {"table1", "table2", "table3"}
    assert "our definition" in pub.methods["sam3"] or "project's definition" in pub.methods["sam3"]


def test_design_section6_numbers(pub):
    means = pub.means.set_index(["table", "method", "corruption"])
    assert means.loc[("table1", "activesam", "none"), "value"] == pytest.approx(0.653)
    assert means.loc[("table1", "segearth-ov3", "none"), "value"] == pytest.approx(0.639)
    assert value(pub, table="table1", method="activesam", dataset="ade20k") == pytest.approx(0.400)
    assert value(pub, table="table1", method="segearth-ov3", dataset="ade20k") == pytest.approx(0.376)
    assert value(pub, table="table3", method="activesam", dataset="ade20k", metric="fps") == pytest.approx(1.92)
    assert value(pub, table="table3", method="segearth-ov3", dataset="ade20k", metric="fps") == pytest.approx(0.35)


def test_entries_cover_the_protocols_and_nothing_else(pub):
    e = pub.entries
    assert set(e["method"]) <= {"activesam", "segearth-ov3", "sam3"}
    t1 = e[e["table"] == "table1"]
    assert set(t1["dataset"]) == EIGHT and len(t1) == 24 and set(t1["corruption"]) == {"none"}
    t2 = e[(e["table"] == "table2") & (e["corruption"] != "none")]
    assert set(t2["corruption"]) == FOUR and set(t2["dataset"]) == SIX and set(t2["severity"]) == {5}
    assert "sam3" not in set(t2["method"])
    assert e[["table", "method", "dataset", "corruption", "severity", "metric"]].duplicated().sum() == 0
    assert ((e.loc[e["metric"] == "miou", "value"] > 0) & (e.loc[e["metric"] == "miou", "value"] < 1)).all()


def test_printed_means_agree_with_entries(pub):
    """The printed averages are consistent with the per-dataset numbers (a transcription check)."""
    for t in pub.means.itertuples(index=False):
        e = pub.entries[(pub.entries["table"] == t.table) & (pub.entries["method"] == t.method)
                        & (pub.entries["corruption"] == t.corruption) & (pub.entries["metric"] == t.metric)
                        & pub.entries["dataset"].isin(t.datasets)]
        assert len(e) == len(t.datasets)
        tol = 0.0006 if t.metric == "miou" else 0.006  # printed rounding
        assert e["value"].mean() == pytest.approx(t.value, abs=tol), (t.table, t.method, t.corruption)


def results_frame(rows):
    base = dict(status="ok", limit=0, seed=0, severity=0, corruption="none", unit_key="k")
    return pd.DataFrame([{**base, **r} for r in rows])


def test_only_matching_units_are_compared(pub):
    res = results_frame([
        dict(method="activesam", label="activesam", dataset="voc21", miou=0.80),
        dict(method="activesam", label="activesam", dataset="voc21", corruption="fog", severity=5, miou=0.70),
        dict(method="activesam", label="activesam", dataset="voc21", corruption="fog", severity=3, miou=0.75),
        dict(method="activesam", label="activesam", dataset="synthetic", miou=0.9),
        dict(method="segearth-ov3", label="segearth-ov3", dataset="voc21", miou=0.7, limit=10),
        dict(method="segearth-ov3", label="segearth-ov3", dataset="ade20k", miou=0.3, status="failed"),
    ])
    acc = P.accuracy_comparison(res, pub)
    got = set(acc[["table", "label", "dataset", "corruption", "severity"]].itertuples(index=False, name=None))
    assert got == {("table1", "activesam", "voc21", "none", 0), ("table2", "activesam", "voc21", "fog", 5)}
    row = acc[acc["table"] == "table1"].iloc[0]
    assert row["published"] == pytest.approx(0.838) and row["delta"] == pytest.approx(0.80 - 0.838)


def test_ablation_labels_are_not_matched(pub):
    res = results_frame([
        dict(method="activesam", label="activesam", dataset="voc21", miou=0.80),
        dict(method="activesam", label="activesam-nopreview", dataset="voc21", miou=0.79),
        dict(method="segearth-ov3", label="SegEarth", dataset="voc21", miou=0.78),
    ])
    assert P.published_labels(res, pub) == {"activesam": "activesam", "SegEarth": "segearth-ov3"}
    assert set(P.accuracy_comparison(res, pub)["label"]) == {"activesam", "SegEarth"}


def test_mean_needs_every_dataset(pub):
    rows = [dict(method="activesam", label="activesam", dataset=d, miou=0.5) for d in sorted(EIGHT)]
    m = P.mean_comparison(results_frame(rows), pub)
    assert len(m) == 1 and m.iloc[0]["published"] == pytest.approx(0.653) and m.iloc[0]["measured"] == pytest.approx(0.5)
    assert P.mean_comparison(results_frame(rows[:-1]), pub).empty
