"""WordNet noun hypernyms for ActiveSAM's hypernym tokens, without ever calling ``nltk.download``.

Three sources. ``"auto"`` (the default) answers from the shipped table (3.) every name it covers - it
equals a fresh WordNet lookup entry for entry (``tests/test_vocab_wordnet.py``) and loads in well under
a second, where nltk's WordNet takes 10-20 s per process - and asks WordNet, loaded on first need in
this order, only for names the table lacks:

1. ``"nltk"`` - nltk's own WordNet corpus when it is already installed somewhere on ``nltk.data.path``;
2. ``"debian"`` - the WordNet 3.0 database files of the Debian packages ``wordnet-base`` and
   ``wordnet-sense-index`` (``/usr/share/wordnet``, or ``$OVSS_WORDNET_DIR``). nltk refuses symlinks
   that leave its data root, so the files are *copied* into ``<cache>/corpora/wordnet`` together with
   a generated ``lexnames`` file (the 45 lexicographer files, which Debian does not ship), and
   ``<cache>`` is appended to ``nltk.data.path``. ``<cache>`` is ``$OVSS_CACHE/nltk_data`` or
   ``$XDG_CACHE_HOME/ovss-bench/nltk_data`` (default ``~/.cache/ovss-bench/nltk_data``);
3. ``"table"`` - the precomputed table shipped as package data (``hypernyms.json``, built by
   ``scripts/build_hypernyms.py`` from WordNet 3.0) covering the eight benchmark vocabularies and the
   synthetic concept names. A name the table does not know gets no hypernym (its tokens are masked)
   and a warning.

``$OVSS_WORDNET`` (auto | nltk | debian | table | none) overrides the choice.

The lookup follows the ActiveSAM release (``activesam/prompt_expansion/hypernym_tokens.py``): the name
is stripped, lower-cased, spaces and hyphens become underscores; its first noun synset's first
``max_count`` hypernyms contribute their first lemma name with underscores turned back into spaces,
duplicates dropped. Hypernyms are taken in synset-name order (see :func:`first_sense_hypernym_lemmas`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

__all__ = [
    "LEXNAMES",
    "HypernymSource",
    "get_hypernym_source",
    "wordnet_hypernyms",
    "build_nltk_wordnet_dir",
    "load_wordnet_from_debian",
    "load_nltk_wordnet",
    "load_shipped_table",
    "lookup_key",
    "first_sense_hypernym_lemmas",
    "hypernyms_for",
]

SOURCES = ("auto", "nltk", "debian", "table", "none")
WORDNET_VERSION = "3.0"  # what nltk's "wordnet" package, Debian's wordnet-base and the release use
DEBIAN_WORDNET_DIR = "/usr/share/wordnet"
TABLE_RESOURCE = "hypernyms.json"

#: The 45 WordNet 3.0 lexicographer files (lexnames(5WN)): number, name, syntactic category
#: (1 noun, 2 verb, 3 adjective, 4 adverb). nltk's reader needs this file; Debian omits it.
LEXNAMES: tuple[tuple[str, int], ...] = (
    ("adj.all", 3), ("adj.pert", 3), ("adv.all", 4), ("noun.Tops", 1), ("noun.act", 1),
    ("noun.animal", 1), ("noun.artifact", 1), ("noun.attribute", 1), ("noun.body", 1),
    ("noun.cognition", 1), ("noun.communication", 1), ("noun.event", 1), ("noun.feeling", 1),
    ("noun.food", 1), ("noun.group", 1), ("noun.location", 1), ("noun.motive", 1), ("noun.object", 1),
    ("noun.person", 1), ("noun.phenomenon", 1), ("noun.plant", 1), ("noun.possession", 1),
    ("noun.process", 1), ("noun.quantity", 1), ("noun.relation", 1), ("noun.shape", 1),
    ("noun.state", 1), ("noun.substance", 1), ("noun.time", 1), ("verb.body", 2), ("verb.change", 2),
    ("verb.cognition", 2), ("verb.communication", 2), ("verb.competition", 2),
    ("verb.consumption", 2), ("verb.contact", 2), ("verb.creation", 2), ("verb.emotion", 2),
    ("verb.motion", 2), ("verb.perception", 2), ("verb.possession", 2), ("verb.social", 2),
    ("verb.stative", 2), ("verb.weather", 2), ("adj.ppl", 3),
)  # fmt: skip

# Files of the WordNet database that nltk's WordNetCorpusReader reads (index.sense is optional).
_WORDNET_FILES = tuple(
    f"{kind}.{pos}" for kind in ("index", "data") for pos in ("noun", "verb", "adj", "adv")
) + tuple(f"{pos}.exc" for pos in ("noun", "verb", "adj", "adv")) + ("index.sense", "cntlist.rev")
_REQUIRED = tuple(f for f in _WORDNET_FILES if f not in ("index.sense", "cntlist.rev"))


def lookup_key(name: str) -> str:
    """The WordNet query string of a name, as the reference builds it (``"potted plant" -> "potted_plant"``)."""
    return name.strip().lower().replace(" ", "_").replace("-", "_")


def wordnet_hypernyms(wn: Any, name: str, max_count: int = 2) -> list[str]:
    """Up to ``max_count`` hypernym phrases of ``name`` from an nltk WordNet reader ``wn``.

    Returns ``[]`` when WordNet has no noun sense of the name or the sense has no hypernym.
    """
    return _first_unique(first_sense_hypernym_lemmas(wn, name), max_count)


def first_sense_hypernym_lemmas(wn: Any, name: str) -> list[str]:
    """First lemma (underscores as spaces) of every hypernym of the first noun sense of ``name``.

    Hypernyms are ordered by synset name. nltk >= 3.9 (the release pins 3.9.4) returns them in the
    iteration order of a set of ``(pos, offset)`` tuples, which changes from process to process with
    Python's string-hash seed, so the release picks a random two of three hypernyms for e.g.
    "piano"; sorting by name (what nltk <= 3.8 did) makes every run choose the same ones.
    """
    synsets = wn.synsets(lookup_key(name), pos="n")
    if not synsets:
        return []
    hypers = sorted(synsets[0].hypernyms(), key=lambda s: s.name())
    return [h.lemmas()[0].name().replace("_", " ") for h in hypers]


def _first_unique(lemmas: Sequence[str], max_count: int) -> list[str]:
    # the reference truncates to max_count first, then drops empty names and duplicates
    out: list[str] = []
    for lemma in lemmas[:max_count]:
        if lemma and lemma not in out:
            out.append(lemma)
    return out


# -- sources -------------------------------------------------------------------------------------
@dataclass
class HypernymSource:
    """Where hypernyms come from.

    Attributes:
        kind: "nltk", "debian", "table" or "none".
        detail: human-readable origin (a path or the resource name).
        wordnet: the nltk WordNet reader (nltk and debian kinds).
        table: lookup key of a canonical name -> first lemma of each hypernym of its first noun
            sense, in WordNet order (table kind).
    """

    kind: str
    detail: str = ""
    wordnet: Any = None
    table: dict[str, list[str]] = field(default_factory=dict)
    fallback: Any = None  # () -> HypernymSource with a WordNet reader, asked for names the table lacks

    @property
    def available(self) -> bool:
        return self.kind != "none"

    def lookup(self, name: str, max_count: int = 2) -> list[str] | None:
        """Hypernyms of ``name``; ``None`` when this source cannot answer (unknown to the table, or none)."""
        if self.wordnet is not None:
            return wordnet_hypernyms(self.wordnet, name, max_count)
        if self.kind == "table":
            hit = self.table.get(lookup_key(name))
            if hit is not None:
                return _first_unique(hit, max_count)
            if self.fallback is not None:
                return self.fallback().lookup(name, max_count)
        return None

    def lookup_many(self, names: Iterable[str], max_count: int = 2, *, context: str = "") -> list[list[str]]:
        """Hypernyms per name; names this source cannot answer get ``[]`` and one warning for all of them."""
        out, unknown = [], []
        for name in names:
            hyps = self.lookup(name, max_count)
            if hyps is None:
                unknown.append(name)
                hyps = []
            out.append(hyps)
        if unknown:
            where = f" ({context})" if context else ""
            if self.kind == "none":
                reason = "WordNet is not available (install nltk's wordnet data or the Debian packages " \
                         "wordnet-base and wordnet-sense-index)"
            else:
                reason = f"the shipped hypernym table ({self.detail}) does not know them and WordNet is not available"
            shown = ", ".join(repr(n) for n in unknown[:8]) + (" ..." if len(unknown) > 8 else "")
            warnings.warn(
                f"hypernym tokens masked for {len(unknown)} name(s){where}: {shown}; {reason}",
                RuntimeWarning,
                stacklevel=2,
            )
        return out


def cache_dir() -> Path:
    """Directory for the generated nltk data root."""
    if os.environ.get("OVSS_CACHE"):
        return Path(os.environ["OVSS_CACHE"]) / "nltk_data"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ovss-bench" / "nltk_data"


def _quiet_reader(root: Path | str) -> Any:
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "multilingual functions are not available": not needed here
        return WordNetCorpusReader(str(root), None)


def load_nltk_wordnet() -> Any | None:
    """nltk's installed WordNet corpus reader, or None when nltk has no WordNet data (never downloads)."""
    try:
        import nltk
    except ImportError:
        return None
    for resource in ("corpora/wordnet", "corpora/wordnet.zip/wordnet/"):
        try:
            root = nltk.data.find(resource)
        except LookupError:
            continue
        try:
            reader = _quiet_reader(root)
        except Exception as exc:  # a broken install: try the next source
            log.warning("nltk WordNet at %s is unusable: %s", root, exc)
            continue
        version = str(reader.get_version())
        if version != WORDNET_VERSION:  # another release would give other hypernyms than the reference's
            log.warning("nltk WordNet at %s is version %s, not %s; not used", root, version, WORDNET_VERSION)
            continue
        return reader
    return None


def build_nltk_wordnet_dir(src: Path | str = DEBIAN_WORDNET_DIR, dest_root: Path | str | None = None) -> Path:
    """Copy the Debian WordNet files into ``<dest_root>/corpora/wordnet`` with a generated ``lexnames``.

    Idempotent; the copy is made in a temporary directory and renamed into place, so concurrent
    processes never see a half-written corpus. Returns ``dest_root``.
    """
    src = Path(src)
    dest_root = Path(dest_root) if dest_root is not None else cache_dir()
    target = dest_root / "corpora" / "wordnet"
    if (target / "lexnames").is_file() and all((target / f).is_file() for f in _REQUIRED):
        return dest_root
    missing = [f for f in _REQUIRED if not (src / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{src} lacks WordNet file(s) {', '.join(missing)}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".wordnet-", dir=target.parent))
    try:
        for name in _WORDNET_FILES:
            if (src / name).is_file():
                shutil.copyfile(src / name, tmp / name)  # a copy, never a symlink: nltk checks the root
        with open(tmp / "lexnames", "w", encoding="utf-8") as fh:
            for i, (lexname, category) in enumerate(LEXNAMES):
                fh.write(f"{i:02d}\t{lexname}\t{category}\n")
        try:
            os.replace(tmp, target)
        except OSError:  # another process won the race
            if not (target / "lexnames").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest_root


def load_wordnet_from_debian(src: Path | str | None = None, dest_root: Path | str | None = None) -> Any | None:
    """An nltk WordNet reader over the Debian files, or None when they are absent."""
    src = Path(src or os.environ.get("OVSS_WORDNET_DIR") or DEBIAN_WORDNET_DIR)
    if not all((src / f).is_file() for f in _REQUIRED):
        return None
    try:
        import nltk
    except ImportError:
        return None
    try:
        root = build_nltk_wordnet_dir(src, dest_root)
    except OSError as exc:
        log.warning("cannot build an nltk WordNet from %s: %s", src, exc)
        return None
    if str(root) not in nltk.data.path:
        nltk.data.path.append(str(root))
    return _quiet_reader(root / "corpora" / "wordnet")


@functools.lru_cache(maxsize=1)
def load_shipped_table() -> dict[str, Any]:
    """The packaged ``hypernyms.json``: ``{"meta": {...}, "hypernyms": {lookup_key: [lemmas]}}``."""
    ref = resources.files("robustbench_ovss.vocab").joinpath(TABLE_RESOURCE)
    return json.loads(ref.read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=None)
def _cached_source(kind: str) -> HypernymSource:
    if kind == "auto":
        table = _cached_source("table")
        if table.kind == "table":
            return dataclasses.replace(table, detail=table.detail + " (WordNet for names it lacks)",
                                       fallback=functools.partial(_cached_source, "wordnet"))
        return _cached_source("wordnet")
    if kind == "wordnet":  # nltk's corpus, else the Debian files
        source = _cached_source("nltk")
        return source if source.kind != "none" else _cached_source("debian")
    if kind == "nltk":
        wn = load_nltk_wordnet()
        if wn is not None:
            return HypernymSource("nltk", detail=str(getattr(wn, "root", "")), wordnet=wn)
        if kind == "nltk":
            return HypernymSource("none", detail="nltk has no WordNet data")
    if kind == "debian":
        wn = load_wordnet_from_debian()
        if wn is not None:
            return HypernymSource("debian", detail=str(getattr(wn, "root", "")), wordnet=wn)
        if kind == "debian":
            return HypernymSource("none", detail="no Debian WordNet files")
    if kind == "table":
        try:
            data = load_shipped_table()
        except (FileNotFoundError, json.JSONDecodeError, ModuleNotFoundError) as exc:
            log.warning("shipped hypernym table unreadable: %s", exc)
        else:
            table = {str(k): list(v) for k, v in data["hypernyms"].items()}
            return HypernymSource("table", detail=f"robustbench_ovss.vocab/{TABLE_RESOURCE}", table=table)
    return HypernymSource("none")


def get_hypernym_source(kind: str | None = None) -> HypernymSource:
    """The hypernym source to use (cached per kind); ``kind`` None reads ``$OVSS_WORDNET`` (default auto)."""
    kind = (kind or os.environ.get("OVSS_WORDNET") or "auto").lower()
    if kind not in SOURCES:
        from ..errors import ConfigError

        raise ConfigError(f"hypernym source {kind!r} unknown; use one of {', '.join(SOURCES)}")
    return _cached_source(kind)


def hypernyms_for(names: Sequence[str], max_count: int = 2, kind: str | None = None) -> list[list[str]]:
    """Convenience: hypernyms of each name from the chosen source (masked names warn)."""
    return get_hypernym_source(kind).lookup_many(names, max_count)
