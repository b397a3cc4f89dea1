"""The typed run state: one serialiser per record, merging chunks, reading a status from a file's head."""

from __future__ import annotations

import json

import numpy as np
import pytest

from robustbench_ovss.plan import Unit
from robustbench_ovss.state import ChunkState, Status, UnitMeta, UnitRecord, peek_status
from robustbench_ovss.store import RunDir

UNIT = Unit(label="m", method="m", method_version="1", params_hash="p", dataset="d", vocab_hash="v", fingerprint="f",
            options_hash="o", limit=0, n_images=5, corruption="none", severity=0, seed=0, backend="none",
            checkpoint="none", dtype="fp32")  # fmt: skip


def chunk(start, stop, rng, status=Status.COMPLETE):
    st = ChunkState.new(UNIT.unit_key, start, stop, num_classes=3)
    st.meta = UnitMeta(device="cpu", threads=1, params={"a": 1}, class_names=["x", "y", "z"])
    for i in range(start, stop):
        conf = rng.integers(0, 9, size=(3, 3))
        st.add_image(conf, {"image_id": f"i{i}", "index": i}, i, predict_s=0.5, data_s=0.1, metric_s=0.01)
    st.status = status
    return st


def test_chunk_state_round_trips_and_rejects_unknown_fields():
    st = chunk(0, 3, np.random.default_rng(0))
    again = ChunkState.from_json(json.loads(json.dumps(st.to_json())))
    assert json.dumps(again.to_json()) == json.dumps(st.to_json()) and (again.conf == st.conf).all()
    assert again.next == 3 and again.done_evaluating and again.timed_images == 3
    with pytest.raises(TypeError):
        ChunkState(unit_key="k", start=0, stop=1, conf=np.zeros((1, 1)), nxt=0)  # a typo is an error


def test_unit_record_merges_chunks_by_addition():
    rng = np.random.default_rng(1)
    parts = [chunk(0, 3, rng), chunk(3, 5, rng)]
    rec = UnitRecord.from_chunks(UNIT, parts)
    assert rec is not None and rec.status is Status.COMPLETE and rec.n_images == 5
    assert (rec.conf == parts[0].conf + parts[1].conf).all()
    assert rec.timed_images == 5 and rec.model_seconds == pytest.approx(2.5) and rec.fps == pytest.approx(2.0)
    assert rec.pipeline_seconds == pytest.approx(5 * 0.61)
    assert [r["index"] for r in rec.rows] == [0, 1, 2, 3, 4]
    assert json.dumps(UnitRecord.from_json(json.loads(json.dumps(rec.to_json()))).to_json()) == json.dumps(rec.to_json())
    assert UnitRecord.from_chunks(UNIT, [parts[0], None]) is None  # a chunk not done yet
    open_ = chunk(3, 5, rng, status=Status.PARTIAL)
    assert UnitRecord.from_chunks(UNIT, [parts[0], open_]) is None
    failed = chunk(3, 5, rng, status=Status.PARTIAL)
    failed.fail("i4", "RuntimeError: boom")
    bad = UnitRecord.from_chunks(UNIT, [parts[0], failed])
    assert bad.status is Status.FAILED and bad.failed_image == "i4" and np.isnan(bad.result_row()["miou"])


def test_status_read_from_the_head_of_a_unit_file(tmp_path):
    rd = RunDir(tmp_path)
    rec = UnitRecord.from_chunks(UNIT, [chunk(0, 5, np.random.default_rng(2))])
    rd.write_unit(rec)
    assert rd.unit_status(UNIT.unit_key) is Status.COMPLETE
    # a file of another form (e.g. pretty-printed by hand) is parsed in full
    rd.unit_path(UNIT.unit_key).write_text(json.dumps(rec.to_json(), indent=2))
    assert peek_status(rd.unit_path(UNIT.unit_key)) is Status.COMPLETE
    assert rd.unit_status("nothing") is None
