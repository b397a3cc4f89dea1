"""Vocabulary tools: canonicalisation of class names, WordNet hypernyms, ActiveSAM prompt expansion.

``canonicalize`` is importable from here without torch; :mod:`.wordnet` and :mod:`.expansion` are
imported on demand.
"""

from .canonical import AMBIGUOUS, COMPOUND_SPLITS, WORD_ORDER, canonical_key, canonicalize

__all__ = ["canonicalize", "canonical_key", "COMPOUND_SPLITS", "WORD_ORDER", "AMBIGUOUS"]
