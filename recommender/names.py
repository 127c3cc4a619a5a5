"""Diagnosis names: the normalised key and near-duplicate matching (pure Python, no Django).

``normalise("Glioblastoma,  Multiforme (WHO IV)")`` -> ``"glioblastoma multiforme who iv"``.

Two names are near-duplicates when, after normalisation and dropping filler words, their tokens pair
up one to one (in any order) such that
- tokens that carry a number or a grade (``2``, ``ii``, ``who4``) are identical, because
  "grade II glioma" and "grade III glioma" are different diagnoses one letter apart;
- other tokens are within a small edit distance: 0 for up to 3 letters, 1 for 4-7, 2 for 8 or more;
or when the names are equal once spaces are removed ("non small cell" / "nonsmall cell").
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

_STOPWORDS = frozenset({"of", "the", "a", "an", "and", "with", "de", "du", "la", "le", "des"})
_ROMAN = re.compile(r"^(?=[ivx]+$)x{0,3}(ix|iv|v?i{0,3})$")


def normalise(name: str) -> str:
    """Lower case, accents and punctuation removed, whitespace collapsed."""
    text = unicodedata.normalize("NFKD", name)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = text.casefold()
    text = "".join(ch if ch.isalnum() else " " for ch in text)
    return " ".join(text.split())


def tokens(key: str) -> list[str]:
    return [t for t in key.split() if t not in _STOPWORDS]


def edit_distance(a: str, b: str, limit: int | None = None) -> int:
    """Levenshtein distance; stops early and returns limit + 1 once it is exceeded."""
    if a == b:
        return 0
    if len(a) < len(b):
        a, b = b, a
    if limit is not None and len(a) - len(b) > limit:
        return limit + 1
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        if limit is not None and min(current) > limit:
            return limit + 1
        previous = current
    return previous[-1]


def _is_exact_token(token: str) -> bool:
    return any(ch.isdigit() for ch in token) or bool(_ROMAN.match(token))


def _allowed_typos(token: str) -> int:
    if len(token) >= 8:
        return 2
    if len(token) >= 4:
        return 1
    return 0


def _tokens_match(a: str, b: str) -> bool:
    if a == b:
        return True
    if _is_exact_token(a) or _is_exact_token(b):
        return False
    allowed = min(_allowed_typos(a), _allowed_typos(b))
    return allowed > 0 and edit_distance(a, b, allowed) <= allowed


def is_near_duplicate(key_a: str, key_b: str) -> bool:
    """Whether two normalised keys name the same diagnosis (see the module docstring)."""
    if key_a == key_b:
        return True
    if key_a.replace(" ", "") == key_b.replace(" ", "") and key_a.replace(" ", ""):
        return True
    ta, tb = tokens(key_a), tokens(key_b)
    if not ta or len(ta) != len(tb):
        return False
    remaining = list(tb)
    # Exact matches first so that a fuzzy pairing cannot steal a token that has an exact partner.
    unmatched = []
    for t in ta:
        if t in remaining:
            remaining.remove(t)
        else:
            unmatched.append(t)
    for t in unmatched:
        partner = next((r for r in remaining if _tokens_match(t, r)), None)
        if partner is None:
            return False
        remaining.remove(partner)
    return True


def find_near_duplicate(key: str, candidates: Iterable[tuple[str, object]]) -> object | None:
    """The first candidate ``(key, value)`` whose key is a near-duplicate of ``key``; closest first."""
    matches = [
        (edit_distance(key, other), other, value)
        for other, value in candidates
        if is_near_duplicate(key, other)
    ]
    if not matches:
        return None
    matches.sort(key=lambda m: (m[0], m[1]))
    return matches[0][2]
