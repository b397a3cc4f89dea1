"""Vocabularies: packaged prompt lists (DESIGN §7), the parser and user overrides."""

from __future__ import annotations

import re

import pytest

from robustbench_ovss.datasets.vocabulary import (
    load_vocabulary,
    packaged_vocabulary,
    parse_vocabulary,
    resolve_vocabulary,
)
from robustbench_ovss.errors import DataError

SIZES = {
    "voc21": 21, "voc20": 20, "context60": 60, "context59": 59, "coco_object": 81,
    "coco_stuff": 171, "cityscapes": 19, "ade20k": 150,
}  # fmt: skip


@pytest.mark.parametrize("name,size", sorted(SIZES.items()))
def test_packaged_vocabulary_sizes(name: str, size: int) -> None:
    vocab = packaged_vocabulary(name)
    assert len(vocab) == size
    assert all(aliases and all(a == a.strip() and a for a in aliases) for aliases in vocab)


def test_voc21_deviations_from_mmseg_names() -> None:
    v = packaged_vocabulary("voc21")
    assert v[0] == ["background"]
    assert v[4] == ["ship"]  # boat
    assert v[11] == ["table"]  # diningtable
    assert v[20] == ["tvmonitor"]
    assert v[15] == ["person"] and v[16] == ["pottedplant"]


def test_voc20_alias_lines() -> None:
    v = packaged_vocabulary("voc20")
    assert v[3] == ["boat", "ship"]
    assert v[10] == ["table", "diningtable"]
    assert v[19] == ["television monitor", "tv monitor", "monitor", "television", "screen"]
    assert v[0] == ["aeroplane"]


def test_cityscapes_alias_lines() -> None:
    v = packaged_vocabulary("cityscapes")
    assert v[6] == ["trafficlight"] and v[7] == ["trafficsign"]
    assert v[8] == ["tree", "hedge"]
    assert v[9] == ["grass", "horizontal vegetation", "soil", "sand"]
    assert [a[0] for a in v[:3]] == ["road", "sidewalk", "building"] and v[-1] == ["bicycle"]


def test_context_lists_share_the_59_classes() -> None:
    c60, c59 = packaged_vocabulary("context60"), packaged_vocabulary("context59")
    assert c60[0] == ["background"] and c60[1:] == c59
    assert c59[-1] == ["wood"] and ["pottedplant"] in c59 and ["tvmonitor"] in c59


def test_squashed_names_in_ade20k_and_coco_stuff_but_spaces_in_coco_object() -> None:
    ade = [a[0] for a in packaged_vocabulary("ade20k")]
    stuff = [a[0] for a in packaged_vocabulary("coco_stuff")]
    obj = [a[0] for a in packaged_vocabulary("coco_object")]
    assert "chestofdrawers" in ade and "trafficlight" in ade and ade[0] == "wall" and ade[-1] == "flag"
    assert "wall-brick" in stuff and "trafficlight" in stuff and "playingfield" in stuff
    assert stuff[:2] == ["person", "bicycle"] and stuff[-1] == "wood"
    assert not any(" " in n for n in ade + stuff)
    assert obj[0] == "background" and "traffic light" in obj and "teddy bear" in obj and obj[-1] == "toothbrush"


def test_synthetic_concepts_are_unique_lowercase_nouns() -> None:
    v = packaged_vocabulary("synthetic")
    assert v[0] == ["background"]
    names = [a[0] for a in v[1:]]
    assert len(names) == 300 and len(set(names)) == 300
    assert all(len(a) == 1 and re.fullmatch(r"[a-z]+", a[0]) for a in v[1:])
    # names that ActiveSAM's canonicalisation would rewrite are avoided
    assert not {"tie", "remote", "mouse", "monitor", "ashcan", "plaything", "buffet"} & set(names)


def test_parser_aliases_and_trailing_newline(tmp_path) -> None:
    p = tmp_path / "v.txt"
    p.write_text("background\ncat, kitty ,  feline\ndog\n")
    assert load_vocabulary(p) == [["background"], ["cat", "kitty", "feline"], ["dog"]]


@pytest.mark.parametrize(
    "text,needle",
    [("", "empty"), ("cat\n\ndog\n", ":2: empty line"), ("cat\n  \n", ":2: empty line"), ("cat, , dog\n", "empty alias")],
)
def test_parser_errors_name_the_file_and_line(text: str, needle: str) -> None:
    with pytest.raises(DataError, match=re.escape(needle)):
        parse_vocabulary(text, "my_vocab.txt")
    with pytest.raises(DataError, match="my_vocab.txt"):
        parse_vocabulary(text, "my_vocab.txt")


def test_missing_vocabulary_file(tmp_path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_vocabulary(tmp_path / "nope.txt")


def test_override_must_match_label_count(tmp_path) -> None:
    default = packaged_vocabulary("voc21")
    good = tmp_path / "good.txt"
    good.write_text("\n".join(f"thing {i}, alias {i}" for i in range(21)) + "\n")
    assert resolve_vocabulary("voc21", default, good)[3] == ["thing 3", "alias 3"]
    bad = tmp_path / "bad.txt"
    bad.write_text("\n".join(f"c{i}" for i in range(20)) + "\n")
    with pytest.raises(DataError, match=r"bad.txt: vocabulary has 20 lines but dataset 'voc21' has 21 label ids"):
        resolve_vocabulary("voc21", default, bad)
    assert resolve_vocabulary("voc21", default, None) == default
