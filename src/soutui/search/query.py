"""Query understanding: normalisation, spelling correction, tokens, and their display words."""

from __future__ import annotations

from dataclasses import dataclass, field

from soutui.features.text import STOPWORDS, analyze, has_cjk, normalize, stem, words
from soutui.search.spelling import SpellCorrector


@dataclass
class ParsedQuery:
    raw: str
    text: str  # normalised, spelling-corrected
    tokens: list[str]  # index tokens (stemmed English, jieba Chinese), unique, in order
    display: dict[str, str]  # token -> word the user typed/meant, for reasons
    fixes: dict[str, str] = field(default_factory=dict)  # typo -> correction
    cjk: bool = False


def parse_query(query: str, speller: SpellCorrector | None) -> ParsedQuery:
    if not isinstance(query, str):
        raise ValueError(f"query must be a string, got {type(query).__name__}")
    text = normalize(query)
    fixes: dict[str, str] = {}
    if speller is not None and text:
        text, fixes = speller.correct(text)
    tokens = list(dict.fromkeys(analyze(text)))
    display: dict[str, str] = {}
    for w in words(text):
        if has_cjk(w):
            for t in analyze(w):
                display.setdefault(t, t)
        elif w not in STOPWORDS:
            display.setdefault(stem(w), w)
    return ParsedQuery(query, text, tokens, display, fixes, has_cjk(text))
