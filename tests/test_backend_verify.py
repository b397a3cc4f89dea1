"""``ovss-bench verify-checkpoint``: the comparison machinery, without Meta's package (issue #13).

Against itself the backend passes; against its stock-transformers-numerics variant, on a checkpoint
whose presence logits go past 10, it exceeds the tolerance and exits non-zero.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import torch

from robustbench_ovss.backends.meta_reference import meta_available
from robustbench_ovss.backends.verify import compare
from robustbench_ovss.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def pushed_checkpoint(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny checkpoint with a presence-head bias of -40: presence logits far below -10."""
    from transformers import Sam3Model

    out = Path(shutil.copytree(tiny_checkpoint, tmp_path_factory.mktemp("pushed") / "ckpt"))
    model = Sam3Model.from_pretrained(str(out))
    with torch.no_grad():
        model.detr_decoder.presence_head.layer3.bias.fill_(-40.0)
    model.save_pretrained(str(out))
    return out


def _table(out: str) -> dict[str, list[str]]:
    rows = [line.strip("|").split("|") for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    return {r[0].strip(): [c.strip() for c in r[1:]] for r in rows[1:]}


def test_against_itself_every_output_is_equal(pushed_checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify-checkpoint", str(pushed_checkpoint), "--reference", "backend-meta", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    rows = _table(out)
    assert set(rows) == {"pixel_values", "text_features", "presence_logits", "pred_logits", "pred_masks", "semantic_seg"}
    assert all(r[1] == "0" and r[3] == "yes" for r in rows.values())
    assert "meta numerics" in out and "every output within the tolerance" in out


def test_against_transformers_numerics_it_fails_naming_the_outputs(pushed_checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify-checkpoint", str(pushed_checkpoint), "--reference", "backend-transformers", "--device", "cpu",
                 "--prompts", "dog", "cat"]) == 1
    out = capsys.readouterr().out
    rows = _table(out)
    assert rows["presence_logits"][3] == "NO" and float(rows["presence_logits"][1]) > 20  # -40-ish vs the -10 clamp
    assert rows["pixel_values"][1] == "0" and rows["text_features"][1] == "0"  # same preprocessing and text path
    assert "presence_logits" in out.splitlines()[-1]


def test_compare_masks_padding_tokens_and_flags_shape_changes() -> None:
    valid = torch.tensor([[True, True, False]])
    a = {"text_features": torch.tensor([[[1.0], [2.0], [9.0]]]), "text_valid": valid, "pred_logits": torch.zeros(1, 4)}
    b = {"text_features": torch.tensor([[[1.0], [2.00005], [-9.0]]]), "text_valid": valid, "pred_logits": torch.zeros(1, 5)}
    rows = {r.output: r for r in compare(a, b, atol=1e-4, rtol=0.0)}
    assert rows["text_features"].ok and rows["text_features"].max_abs == pytest.approx(5e-5, rel=1e-2)  # padding ignored
    assert not rows["pred_logits"].ok and math.isnan(rows["pred_logits"].max_abs)
    c = dict(b, text_features=torch.tensor([[[1.0], [2.001], [0.0]]]))
    bad = {r.output: r for r in compare(a, c, atol=1e-4, rtol=0.0)}["text_features"]
    assert not bad.ok and bad.worst == pytest.approx(10.0, rel=1e-2)


@pytest.mark.skipif(meta_available(), reason="Meta's sam3 package is installed here")
def test_meta_reference_without_the_package_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pt = tmp_path / "sam3.pt"
    pt.write_bytes(b"not used")
    assert main(["verify-checkpoint", "builtin:tiny-random", "--meta-checkpoint", str(pt), "--device", "cpu"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sam3 package is not installed" in err[0]
    assert main(["verify-checkpoint", "builtin:tiny-random", "--device", "cpu"]) != 0
    assert "--meta-checkpoint" in capsys.readouterr().err
