"""Lexical canonicalisation of class names before SAM 3's text encoder (ActiveSAM, DESIGN §6.1).

A raw name is reduced to a *key* (lower-cased, every non-alphanumeric character removed); a key found
in one of three tables is replaced by the table's phrase, any other name passes through unchanged
(case and spacing kept). The tables are the ActiveSAM release's (``activesam/prompt_expansion/
lexical.py``, applied in its "universal" mode, which the released model installs):

- :data:`COMPOUND_SPLITS` - squashed compounds split into words, plus three spelling fixes
  (aeroplane, diningtable, motorbike);
- :data:`WORD_ORDER` - ADE20K/COCO-Stuff "head-modifier" names put in English order;
- :data:`AMBIGUOUS` - homonyms and archaic words replaced by a specific noun phrase.

Other squashed names (ADE20K's ``pooltable``, ``bulletinboard``...) stay as they are, as in the
reference.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["COMPOUND_SPLITS", "WORD_ORDER", "AMBIGUOUS", "TABLES", "canonical_key", "canonicalize"]

COMPOUND_SPLITS: Mapping[str, str] = MappingProxyType(
    {
        "trafficlight": "traffic light",
        "trafficsign": "traffic sign",
        "pottedplant": "potted plant",
        "tvmonitor": "tv monitor",
        "windowpane": "window pane",
        "coffeetable": "coffee table",
        "streetlight": "street light",
        "signboard": "sign board",
        "arcademachine": "arcade machine",
        "kitchenisland": "kitchen island",
        "dirttrack": "dirt track",
        "chestofdrawers": "chest of drawers",
        "televisionreceiver": "television receiver",
        "conveyerbelt": "conveyor belt",
        "bedclothes": "bed clothes",
        "sportsball": "sports ball",
        "baseballbat": "baseball bat",
        "baseballglove": "baseball glove",
        "tennisracket": "tennis racket",
        "wineglass": "wine glass",
        "cellphone": "cell phone",
        "hairdrier": "hair drier",
        "firehydrant": "fire hydrant",
        "stopsign": "stop sign",
        "parkingmeter": "parking meter",
        "aeroplane": "airplane",
        "diningtable": "dining table",
        "motorbike": "motorcycle",
    }
)

WORD_ORDER: Mapping[str, str] = MappingProxyType(
    {
        "wallbrick": "brick wall",
        "wallconcrete": "concrete wall",
        "wallstone": "stone wall",
        "walltile": "tile wall",
        "wallwood": "wooden wall",
        "wallpanel": "wall panel",
        "floormarble": "marble floor",
        "floorstone": "stone floor",
        "floortile": "tile floor",
        "floorwood": "wooden floor",
        "ceilingtile": "tile ceiling",
        "windowblind": "window blind",
    }
)

AMBIGUOUS: Mapping[str, str] = MappingProxyType(
    {
        "tie": "necktie",
        "remote": "remote control",
        "mouse": "computer mouse",
        "monitor": "computer monitor",
        "ashcan": "trash can",
        "plaything": "toy",
        "buffet": "sideboard",
    }
)

#: The tables in lookup order (the keys are disjoint, so the order only documents the reference).
TABLES: tuple[Mapping[str, str], ...] = (COMPOUND_SPLITS, WORD_ORDER, AMBIGUOUS)

_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def canonical_key(raw_name: str) -> str:
    """Lookup key of a name: lower-cased with every character outside ``[a-z0-9]`` removed.

    >>> canonical_key("Traffic-Light")
    'trafficlight'
    """
    return _NON_ALNUM.sub("", raw_name.lower())


def canonicalize(raw_name: str) -> str:
    """The phrase SAM 3 is prompted with for ``raw_name``.

    >>> canonicalize("wall-brick"), canonicalize("aeroplane"), canonicalize("Pool Table")
    ('brick wall', 'airplane', 'Pool Table')
    """
    key = canonical_key(raw_name)
    for table in TABLES:
        phrase = table.get(key)
        if phrase is not None:
            return phrase
    return raw_name
