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
# a run of CJK characters, or a run of latin letters/digits (inner . and ' kept for "2.5", "o'neil",
# and / between digits for fractions: "1/2")
_TOKEN_RE = re.compile(rf"[{_CJK}]+|[a-z0-9]+(?:(?:[.']|(?<=[0-9])/(?=[0-9]))[a-z0-9]+)*")

# Sizes are written many ways in titles and queries ('1/2 in.', '1/2"', '1/2-inch', '2x4', '12v',
# '5 gal.'). After a number each unit gets one spelling, a number glued to its unit or to the "x" of
# a dimension is split off, so "2x4 8 ft" and "2 in. x 4 in. x 8 ft." share their tokens. Only after a
# number, so "foot stool" and "3 in 1" keep their words.
_UNITS: tuple[tuple[str, str], ...] = (
    ("sqft", r"sq\.?\s*ft\.?|sq\.?\s*feet|square\s+f(?:ee|oo)t"),
    ("cuft", r"cu\.?\s*ft\.?|cu\.?\s*feet|cubic\s+f(?:ee|oo)t"),
    ("inch", r"in\.|in(?![a-z0-9.])(?!\s*[0-9])|inch(?:es)?|\"|''"),
    ("ft", r"ft\.?|feet|foot|'(?![a-z0-9])"),
    ("gal", r"gal\.?|gallons?"),
    ("lb", r"lbs?\.?|pounds?"),
    ("oz", r"oz\.?|ounces?"),
    ("volt", r"v|volts?"),
    ("watt", r"w|watts?"),
    ("amp", r"amps?|amperes?"),
    ("gauge", r"ga\.?|gauge"),
    ("mm", r"mm|millimet(?:er|re)s?"),
    ("cm", r"cm|centimet(?:er|re)s?"),
)
_NUMBER = r"[0-9]+(?:[.,/][0-9]+)?"
_UNIT_RE = [
    (re.compile(rf"({_NUMBER})(?:\s*-\s*|\s*)(?:{pattern})(?![a-z0-9])"), rf"\1 {unit} ")
    for unit, pattern in _UNITS
]
# the "x" of a dimension, also after a unit glued to its number: "2x4", "2ftx3ft", '20"x50"'
_DIMENSION_X = re.compile(r"(?<=[0-9])(\s*(?:in\.?|ft\.?|\"|'|mm|cm)?)\s*x\s*(?=[0-9])")
_NUMBER_TOKEN = re.compile(_NUMBER)
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


def measures(text: str) -> str:
    """Sizes and units in one spelling each (`_UNITS`), in normalised text."""
    if not any(ch.isdigit() for ch in text):
        return text
    text = _DIMENSION_X.sub(r"\1 x ", text)
    for pattern, repl in _UNIT_RE:
        text = pattern.sub(repl, text)
    return text


@lru_cache(maxsize=1)
def _unit_tokens() -> frozenset[str]:
    return frozenset(stem(unit) for unit, _ in _UNITS)


def sizes(tokens: list[str]) -> frozenset[tuple[str, ...]]:
    """The sizes in a token list (`analyze` output): each dimension written with "x" (its numbers,
    units dropped: "2 in. x 4 in. x 8 ft." -> ("2", "4", "8") and its runs of two or more: ("2", "4"),
    ("4", "8")), and each number with its unit ("8", "ft")."""
    units, out = _unit_tokens(), set[tuple[str, ...]]()
    run: list[str] = []
    for n, t in enumerate(tokens):
        if _NUMBER_TOKEN.fullmatch(t):
            after = tokens[n + 1] if n + 1 < len(tokens) else ""
            if after in units:
                out.add((t, after))
            run = [*run, t] if run and tokens[n - 1] == "x" else [t]  # a run is open only after a number
            for start in range(len(run) - 1):
                out.add(tuple(run[start:]))
        elif t != "x" and t not in units:
            run = []
    return frozenset(out)


def words(text: object) -> list[str]:
    """Normalised surface words (unstemmed, CJK runs unsegmented, sizes in one spelling) — for
    spelling and matching."""
    return _TOKEN_RE.findall(measures(normalize(text)))


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
