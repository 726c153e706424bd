"""Typo tolerance: correct query words against the catalogue vocabulary (SymSpell-style).

A query word the catalogue has never seen is replaced by the most frequent catalogue
word within a small edit distance (1 for words of 4-6 letters, 2 for longer ones).
Candidates are found through a precomputed map of single/double deletions, so a
lookup costs a few dict probes instead of a scan over the vocabulary.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from soutui.features.text import edit_distance, has_cjk, stem, words

MIN_LEN = 4


def max_distance(word: str) -> int:
    return 0 if len(word) < MIN_LEN else 1 if len(word) <= 6 else 2


def _deletes(word: str, depth: int) -> set[str]:
    out = {word}
    frontier = {word}
    for _ in range(depth):
        frontier = {w[:i] + w[i + 1 :] for w in frontier for i in range(len(w))}
        out |= frontier
    return out


class SpellCorrector:
    def __init__(self, texts: Iterable[str], min_count: int = 2) -> None:
        counts: Counter[str] = Counter()
        for t in texts:
            counts.update(w for w in words(t) if not has_cjk(w))
        self.freq: dict[str, int] = dict(counts)
        self.stems: set[str] = {stem(w) for w in counts}
        self._index: dict[str, list[str]] = {}
        for w, c in counts.items():
            # rare words are usually typos themselves; never correct *towards* them
            if c < min_count or len(w) < MIN_LEN - 1 or not w.isalpha():
                continue
            for d in _deletes(w, 2 if len(w) >= 6 else 1):
                self._index.setdefault(d, []).append(w)

    def known(self, word: str) -> bool:
        return word in self.freq or stem(word) in self.stems

    def correct_word(self, word: str) -> str:
        """The best correction of one word, or the word itself when known/uncorrectable."""
        dist = max_distance(word)
        if dist == 0 or not word.isalpha() or self.known(word):
            return word
        split = self._split(word)
        if split:
            return split
        best: tuple[int, int, str] | None = None
        seen: set[str] = set()
        for d in _deletes(word, dist):
            for cand in self._index.get(d, ()):
                if cand in seen:
                    continue
                seen.add(cand)
                ed = edit_distance(word, cand, dist)
                if ed <= dist:
                    key = (ed, -self.freq[cand], cand)
                    if best is None or key < best:
                        best = key
        return best[2] if best else word

    def _split(self, word: str) -> str | None:
        """'wiremesh' -> 'wire mesh' when both halves are common catalogue words."""
        best: tuple[int, str] | None = None
        for i in range(2, len(word) - 1):
            a, b = word[:i], word[i:]
            fa, fb = self.freq.get(a, 0), self.freq.get(b, 0)
            if fa >= 5 and fb >= 5 and (best is None or min(fa, fb) > best[0]):
                best = (min(fa, fb), f"{a} {b}")
        return best[1] if best else None

    def correct(self, query: str) -> tuple[str, dict[str, str]]:
        """(corrected query text, {typo: correction}) — the query is normalised to its words."""
        ws = words(query)
        fixes = {w: c for w in ws if (c := self.correct_word(w)) != w}
        return " ".join(fixes.get(w, w) for w in ws), fixes
