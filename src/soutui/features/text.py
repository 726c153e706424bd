"""Text normalisation and tokenisation for search: English stemming, Chinese jieba, mixed text.

Both the catalogue and queries go through `analyze`, so the keyword index only ever
sees whitespace-separated, lower-cased tokens (one tokenizer for index and
queries). English words are stemmed with PyStemmer (Snowball English);
runs of CJK characters are segmented with jieba `cut_for_search`, which also emits
the shorter words inside long ones so "空气净化器" matches a query for "净化器".
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import Stemmer

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
# a run of CJK characters, or a run of latin letters/digits (with inner . , ' - kept for "2.5", "o'neil")
_TOKEN_RE = re.compile(rf"[{_CJK}]+|[a-z0-9]+(?:[.'][a-z0-9]+)*")
_HAS_CJK = re.compile(rf"[{_CJK}]")

# Small English stopword list: high-frequency function words that never identify a product.
STOPWORDS: frozenset[str] = frozenset(
    "a an and are as at be by for from in into is it of on or the to with without".split()
)

_stemmer = Stemmer.Stemmer("english")


def normalize(text: object) -> str:
    """NFKC (full-width -> ASCII, compatibility forms), lower-case, collapse whitespace."""
    if not isinstance(text, str):
        return ""
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def has_cjk(text: str) -> bool:
    return bool(_HAS_CJK.search(text))


@lru_cache(maxsize=1)
def _jieba() -> object:
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return jieba


@lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    return str(_stemmer.stemWord(word))


def words(text: object) -> list[str]:
    """Normalised surface words (unstemmed, CJK runs unsegmented) — for spelling and matching."""
    return _TOKEN_RE.findall(normalize(text))


def analyze(text: object, stopwords: bool = True) -> list[str]:
    """Index/query tokens: stemmed English words + jieba-segmented Chinese, in order.

    Stopwords are dropped for English only; a query made only of stopwords keeps them
    so it still matches something.
    """
    out: list[str] = []
    raw = words(text)
    for w in raw:
        if has_cjk(w):
            out.extend(t for t in _jieba().cut_for_search(w) if t.strip())  # type: ignore[attr-defined]
        elif not (stopwords and w in STOPWORDS):
            out.append(stem(w))
    if not out and raw and stopwords:
        return analyze(text, stopwords=False)
    return out


def edit_distance(a: str, b: str, limit: int = 3) -> int:
    """Damerau-Levenshtein (optimal string alignment) distance, cut off above `limit`."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cost = 0 if ca == cb else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if min(cur) > limit:
            return limit + 1
        prev2, prev = prev, cur
    return prev[-1]
