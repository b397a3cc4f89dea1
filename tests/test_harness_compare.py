"""compare: mIoU gate in points, speed-ratio gate against a reference method, missing rows."""

from __future__ import annotations

import pandas as pd
import pytest

from robustbench_ovss.cli import main


def table(rows):
    base = {"dataset": "voc21", "severity": 0, "seed": 0, "corruption": "none", "status": "complete", "timed_images": 50}
    return pd.DataFrame([{**base, **r} for r in rows])


BASE = [
    {"method": "activesam", "label": "activesam", "miou": 0.600, "fps": 2.0},
    {"method": "segearth-ov3", "label": "segearth-ov3", "miou": 0.580, "fps": 0.5},
    {"method": "activesam", "label": "activesam", "corruption": "fog", "severity": 5, "miou": 0.40, "fps": 1.8},
    {"method": "segearth-ov3", "label": "segearth-ov3", "corruption": "fog", "severity": 5, "miou": 0.38, "fps": 0.45},
]


def write(tmp_path, name, rows):
    p = tmp_path / name
    table(rows).to_csv(p, index=False)
    return str(p)


def changed(**by_label_corr):
    rows = [dict(r) for r in BASE]
    for r in rows:
        r.update(by_label_corr.get(f"{r['label']}/{r.get('corruption', 'none')}", {}))
    return rows


def test_identical_passes(tmp_path, capsys):
    assert main(["compare", write(tmp_path, "a.csv", BASE), write(tmp_path, "b.csv", BASE)]) == 0
    assert "pass" in capsys.readouterr().out


@pytest.mark.parametrize(("new_miou", "threshold", "rc"), [(0.58, 1.0, 1), (0.58, 2.5, 0), (0.595, 1.0, 0), (0.70, 0.0, 0)])
def test_miou_gate_in_points(tmp_path, capsys, new_miou, threshold, rc):
    new = changed(**{"activesam/fog": {"miou": new_miou - 0.2}})
    argv = ["compare", write(tmp_path, "a.csv", BASE), write(tmp_path, "b.csv", new), "--max-miou-drop", str(threshold)]
    assert main(argv) == rc
    out = capsys.readouterr().out
    if rc:
        assert "MIOU DROP" in out and "activesam" in out and "fog" in out


def test_missing_or_failed_row_fails(tmp_path, capsys):
    assert main(["compare", write(tmp_path, "a.csv", BASE), write(tmp_path, "b.csv", BASE[:3])]) == 1
    assert "missing in NEW" in capsys.readouterr().out
    failed = changed(**{"segearth-ov3/none": {"status": "failed", "miou": float("nan")}})
    assert main(["compare", write(tmp_path, "a.csv", BASE), write(tmp_path, "c.csv", failed)]) == 1
    # rows only in NEW are shown, not gated
    assert main(["compare", write(tmp_path, "a.csv", BASE[:3]), write(tmp_path, "b.csv", BASE)]) == 0


def test_speed_ratio_gate(tmp_path, capsys):
    a = write(tmp_path, "a.csv", BASE)
    # a slower machine: every method at half speed, ratios unchanged -> pass (no gate on absolute time)
    slow = [dict(r, fps=r["fps"] / 2) for r in BASE]
    assert main(["compare", a, write(tmp_path, "b.csv", slow), "--max-speed-ratio-drop", "5", "--reference", "segearth-ov3"]) == 0
    # activesam/clean ratio 4.0 -> 3.0 (-25%)
    slower = changed(**{"activesam/none": {"fps": 1.5}})
    b = write(tmp_path, "c.csv", slower)
    assert main(["compare", a, b, "--max-speed-ratio-drop", "20", "--reference", "segearth-ov3"]) == 1
    assert "SLOWER" in capsys.readouterr().out
    assert main(["compare", a, b, "--max-speed-ratio-drop", "30", "--reference", "segearth-ov3"]) == 0
    assert main(["compare", a, b]) == 0  # speed is not gated unless asked
    capsys.readouterr()
    assert main(["compare", a, b, "--max-speed-ratio-drop", "20", "--reference", "nope"]) == 2
    err = capsys.readouterr().err
    assert "reference method 'nope'" in err and "\n" not in err.strip()


def test_run_directory_and_bad_files(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    table(BASE).to_csv(run / "results.csv", index=False)
    assert main(["compare", str(run), str(run)]) == 0
    assert main(["compare", str(tmp_path / "none.csv"), str(run)]) == 2
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    assert main(["compare", str(tmp_path / "x.csv"), str(run)]) == 2
    assert "missing column" in capsys.readouterr().err


def test_speed_is_gated_only_with_enough_timed_images(tmp_path, capsys):
    few = [dict(r, timed_images=2) for r in BASE]
    a = write(tmp_path, "a.csv", few)
    slower = [dict(r) for r in changed(**{"activesam/none": {"fps": 0.5}})]  # ratio 4.0 -> 1.0 (-75%)
    b = write(tmp_path, "b.csv", [dict(r, timed_images=2) for r in slower])
    assert main(["compare", a, b, "--max-speed-ratio-drop", "20"]) == 0
    out = capsys.readouterr().out
    assert "speed not gated on 2 row(s): fewer than 20 timed images" in out
    assert main(["compare", a, b, "--max-speed-ratio-drop", "20", "--min-timed-images", "2"]) == 1
    assert "SLOWER" in capsys.readouterr().out


def test_moved_needs_a_real_change_and_prompt_counts_are_gated(tmp_path, capsys):
    a = write(tmp_path, "a.csv", [dict(r, prompts_decoded=21.0) for r in BASE])
    tiny = [dict(r, miou=r["miou"] + 5e-7, prompts_decoded=21.0) for r in BASE]
    assert main(["compare", a, write(tmp_path, "b.csv", tiny)]) == 0
    assert "nothing moved (4 row(s) compared)" in capsys.readouterr().out
    fewer = [dict(r, prompts_decoded=21.0 if r["label"] != "activesam" else 12.5) for r in BASE]
    assert main(["compare", a, write(tmp_path, "c.csv", fewer)]) == 1
    out = capsys.readouterr().out
    assert "PROMPTS" in out and "prompts decoded per image 21.000 -> 12.500" in out
