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
    assert words("1/2 in. o'neil 2.5") == ["1/2", "inch", "o'neil", "2.5"]


def test_sizes_get_one_spelling_after_a_number() -> None:
    # the ways one size is written in titles and queries meet on the same tokens
    lumber = analyze("2 in. x 4 in. x 8 ft. Lumber")
    assert set(analyze("2x4x8 ft lumber")) <= set(lumber) and set(analyze("2\" x 4\" 8' lumber")) <= set(lumber)
    assert words("1/2-inch PVC") == words('1/2" pvc') == words("1/2 in pvc") == ["1/2", "inch", "pvc"]
    assert words("12V drill") == ["12", "volt", "drill"] and words("5 gal. bucket") == ["5", "gal", "bucket"]
    assert words("14-Gauge wire") == words("14 ga. wire") == ["14", "gauge", "wire"]
    assert words("6 sq. ft.") == ["6", "sqft"] and words("100 Lbs") == ["100", "lb"]
    # a unit word without a number keeps its meaning; "3 in 1" is not a size
    assert words("foot stool") == ["foot", "stool"] and words("3 in 1 tool") == ["3", "in", "1", "tool"]
    assert "in" not in analyze("3 in 1 tool") and "inch" not in analyze("3 in 1 tool")
    # fractions stay one token, so 1/2 and 2 differ
    assert "1/2" in words("1/2 in.") and "2" not in words("1/2 in.")


def test_edit_distance_with_transposition_and_cutoff() -> None:
    assert edit_distance("toliet", "toilet") == 1
    assert edit_distance("drill", "dril") == 1
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("a", "abcdefgh", limit=2) == 3
