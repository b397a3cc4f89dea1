"""WordNet hypernyms without nltk.download: Debian files, shipped table, none (DESIGN §10, §6.1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from robustbench_ovss.vocab import canonicalize
from robustbench_ovss.vocab.wordnet import (
    LEXNAMES,
    DEBIAN_WORDNET_DIR,
    HypernymSource,
    build_nltk_wordnet_dir,
    get_hypernym_source,
    load_shipped_table,
    load_wordnet_from_debian,
    lookup_key,
    wordnet_hypernyms,
)

HAVE_DEBIAN = Path(DEBIAN_WORDNET_DIR, "data.noun").is_file() and Path(DEBIAN_WORDNET_DIR, "index.noun").is_file()
needs_debian = pytest.mark.skipif(
    not HAVE_DEBIAN,
    reason=f"{DEBIAN_WORDNET_DIR} is absent: install the Debian packages wordnet-base and wordnet-sense-index "
    "(apt-get install -y wordnet-base wordnet-sense-index) to run this test",
)

# Hand-checked against WordNet 3.0 (first noun sense, first two hypernyms, first lemma of each).
KNOWN = {
    "cat": ["feline"],
    "person": ["causal agent", "organism"],  # synset-name order, whatever the hash seed
    "piano": ["keyboard instrument", "percussion instrument"],  # first two of three
    "airplane": ["heavier-than-air craft"],
    "chest of drawers": ["furniture"],
    "shelves": ["support"],  # nltk's morphy: shelves -> shelf
    "computer mouse": ["electronic device"],
    "potted plant": [],  # no WordNet entry
}


@pytest.fixture(scope="module")
def debian_wordnet(tmp_path_factory):
    if not HAVE_DEBIAN:
        pytest.skip(needs_debian.kwargs["reason"])
    root = tmp_path_factory.mktemp("nltk_data")
    return load_wordnet_from_debian(DEBIAN_WORDNET_DIR, root), root


def test_lexnames_are_the_45_wordnet_lexicographer_files() -> None:
    assert len(LEXNAMES) == 45
    assert LEXNAMES[0] == ("adj.all", 3) and LEXNAMES[3] == ("noun.Tops", 1) and LEXNAMES[44] == ("adj.ppl", 3)
    assert sum(1 for n, c in LEXNAMES if c == 1) == 26 and sum(1 for n, c in LEXNAMES if c == 2) == 15


def test_lookup_key_matches_reference() -> None:
    assert lookup_key(" Potted Plant ") == "potted_plant"
    assert lookup_key("t-shirt") == "t_shirt"


@needs_debian
def test_debian_files_are_copied_not_linked(debian_wordnet) -> None:
    wn, root = debian_wordnet
    corpus = root / "corpora" / "wordnet"
    assert (corpus / "lexnames").read_text().splitlines()[5] == "05\tnoun.animal\t1"
    for f in ("data.noun", "index.noun", "noun.exc"):
        assert (corpus / f).is_file() and not (corpus / f).is_symlink()
    import nltk

    assert str(root) in nltk.data.path
    # idempotent: a second build keeps the corpus
    assert build_nltk_wordnet_dir(DEBIAN_WORDNET_DIR, root) == root
    assert wn.get_version() == "3.0"


@needs_debian
def test_hypernyms_from_debian_files(debian_wordnet) -> None:
    wn, _ = debian_wordnet
    for name, hyps in KNOWN.items():
        assert wordnet_hypernyms(wn, name, 2) == hyps, name
    source = HypernymSource("debian", wordnet=wn)
    assert source.lookup("person", 1) == ["causal agent"]


@needs_debian
def test_shipped_table_is_up_to_date_with_wordnet(debian_wordnet) -> None:
    """Every entry of hypernyms.json equals a fresh WordNet lookup (the table is what the script builds)."""
    from robustbench_ovss.vocab.wordnet import first_sense_hypernym_lemmas

    wn, _ = debian_wordnet
    table = load_shipped_table()["hypernyms"]
    for key, lemmas in table.items():
        assert first_sense_hypernym_lemmas(wn, key.replace("_", " ")) == lemmas, key


def test_shipped_table_covers_every_vocabulary_name(repo_root: Path) -> None:
    table = load_shipped_table()
    assert table["meta"]["wordnet_version"] == "3.0"
    keys = set(table["hypernyms"])
    vocab_dir = repo_root / "configs" / "vocab"
    for vocab in table["meta"]["vocabularies"]:
        for line in (vocab_dir / f"{vocab}.txt").read_text(encoding="utf-8").splitlines():
            for alias in (a.strip() for a in line.split(",")):
                if alias:
                    assert lookup_key(canonicalize(alias)) in keys, (vocab, alias)


def test_hypernyms_from_shipped_table() -> None:
    source = get_hypernym_source("table")
    assert source.kind == "table"
    for name, hyps in KNOWN.items():
        assert source.lookup(name, 2) == hyps, name
    assert source.lookup("person", 1) == ["causal agent"]
    assert source.lookup("brick wall", 2) == []  # known, no hypernym
    assert source.lookup("flux capacitor", 2) is None  # unknown to the table


def test_custom_vocabulary_without_wordnet_warns_and_masks() -> None:
    table = get_hypernym_source("table")
    with pytest.warns(RuntimeWarning, match=r"hypernym tokens masked for 1 name.*flux capacitor"):
        got = table.lookup_many(["cat", "flux capacitor"], 2, context="custom vocabulary")
    assert got == [["feline"], []]
    with pytest.warns(RuntimeWarning, match="WordNet is not available"):
        assert HypernymSource("none").lookup_many(["cat"], 2) == [[]]


def test_env_override_and_unknown_source(monkeypatch) -> None:
    from robustbench_ovss.errors import ConfigError

    monkeypatch.setenv("OVSS_WORDNET", "table")
    assert get_hypernym_source().kind == "table"
    with pytest.raises(ConfigError, match="unknown"):
        get_hypernym_source("wordnet-online")


def test_auto_source_never_downloads(monkeypatch) -> None:
    import nltk

    def boom(*a, **k):  # pragma: no cover - only runs on a regression
        raise AssertionError("nltk.download must never be called")

    monkeypatch.setattr(nltk, "download", boom)
    assert get_hypernym_source("auto").kind in ("nltk", "debian", "table")


@needs_debian
def test_nltk_source_reads_an_installed_corpus(debian_wordnet, monkeypatch) -> None:
    """The built directory is an ordinary nltk data root: nltk's own lookup now finds WordNet there."""
    import nltk

    from robustbench_ovss.vocab.wordnet import load_nltk_wordnet

    monkeypatch.setattr(nltk, "download", lambda *a, **k: pytest.fail("nltk.download called"))

    wn = load_nltk_wordnet()
    assert wn is not None and wn.get_version() == "3.0"
    assert wordnet_hypernyms(wn, "cat", 2) == ["feline"]


def test_auto_answers_covered_names_from_the_table_without_loading_wordnet(monkeypatch) -> None:
    """Issue #14: the table is proven equal to WordNet (test above); auto must not pay nltk's load for it."""
    import robustbench_ovss.vocab.wordnet as wnmod

    def no_wordnet():  # pragma: no cover - only runs on a regression
        raise AssertionError("WordNet was loaded for names the table covers")

    monkeypatch.setattr(wnmod, "load_nltk_wordnet", no_wordnet)
    monkeypatch.setattr(wnmod, "load_wordnet_from_debian", no_wordnet)
    wnmod._cached_source.cache_clear()
    try:
        source = get_hypernym_source("auto")
        table = get_hypernym_source("table")
        names = ["cat", "dining table", "traffic light", "building", "sofa"]
        assert source.kind == "table" and source.lookup_many(names, 2) == table.lookup_many(names, 2)
    finally:
        wnmod._cached_source.cache_clear()


@needs_debian
def test_auto_asks_wordnet_for_names_the_table_lacks(debian_wordnet) -> None:
    import robustbench_ovss.vocab.wordnet as wnmod

    wn, _ = debian_wordnet
    wnmod._cached_source.cache_clear()
    try:
        source = get_hypernym_source("auto")
        name = "armadillo"
        assert lookup_key(name) not in load_shipped_table()["hypernyms"]
        assert source.lookup(name, 2) == wordnet_hypernyms(wn, name, 2) and source.lookup(name, 2)
    finally:
        wnmod._cached_source.cache_clear()
