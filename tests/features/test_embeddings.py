"""Calibration words: a fixed, seeded sample of dictionary words in each encoder's query language."""

from __future__ import annotations

import pytest

from soutui.features.embeddings import calibration_words
from soutui.features.text import has_cjk


def test_use_gets_chinese_words_and_minilm_english_ones() -> None:
    zh, en = calibration_words("use", 200), calibration_words("minilm", 200)
    assert len(set(zh)) == 200 and all(has_cjk(w) and len(w) >= 2 for w in zh)
    assert len(set(en)) == 200 and all(w.isascii() and w.isalpha() and len(w) >= 4 for w in en)


def test_sample_is_fixed_by_its_seed() -> None:
    assert calibration_words("use", 50) == calibration_words("use", 50)
    assert calibration_words("use", 50, seed=1) != calibration_words("use", 50)
    with pytest.raises(ValueError, match="unknown text encoder"):
        calibration_words("bert")
