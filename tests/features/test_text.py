"""Tokenisation: English stemming, Chinese segmentation, mixed text, normalisation, edit distance."""

from soutui.features.text import analyze, edit_distance, has_cjk, normalize, words


def test_english_is_stemmed_and_stopwords_dropped() -> None:
    assert analyze("Cordless Drills for the Garden") == ["cordless", "drill", "garden"]
    assert analyze("drilling") == analyze("drill")


def test_only_stopwords_query_keeps_them() -> None:
    assert analyze("the") == ["the"]


def test_chinese_is_segmented_for_search() -> None:
    toks = analyze("小米空气净化器")
    assert "小米" in toks and "净化器" in toks and "空气" in toks


def test_mixed_text_keeps_both_scripts() -> None:
    toks = analyze("华为 Mate 60 Pro 手机 12GB+512GB")
    assert {"华为", "mate", "60", "pro", "手机", "12gb", "512gb"} <= set(toks)
    assert has_cjk("iPhone 手机") and not has_cjk("iphone")


def test_normalize_full_width_and_case() -> None:
    assert normalize("ＡＢＣ  Drill\t１２") == "abc drill 12"
    assert normalize(None) == ""
    assert words("1/2 in. o'neil 2.5") == ["1", "2", "in", "o'neil", "2.5"]


def test_edit_distance_with_transposition_and_cutoff() -> None:
    assert edit_distance("toliet", "toilet") == 1
    assert edit_distance("drill", "dril") == 1
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("a", "abcdefgh", limit=2) == 3
