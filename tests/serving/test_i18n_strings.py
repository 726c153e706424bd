"""Every string the pages ask for exists in English and Chinese (no browser needed)."""

from __future__ import annotations

import re
from pathlib import Path

STATIC = Path(__file__).resolve().parents[2] / "src" / "soutui" / "web" / "static"


def _tables() -> dict[str, set[str]]:
    js = (STATIC / "i18n.js").read_text(encoding="utf-8")
    out = {}
    for lang in ("en", "zh"):
        body = re.search(rf"\n  {lang}: \{{\n(.*?)\n  \}},", js, re.S)
        assert body, lang
        out[lang] = set(re.findall(r'"([\w.]+)":', body.group(1)))
    return out


def _used_keys() -> set[str]:
    keys: set[str] = set()
    for html in ("index.html", "admin.html"):
        keys |= set(re.findall(r'data-i18n(?:-placeholder|-aria)?="([\w.]+)"', (STATIC / html).read_text()))
    for js in ("app.js", "admin.js"):
        keys |= set(re.findall(r'\bt(?:Html)?\("([\w.]+)"', (STATIC / js).read_text()))
    return keys


def test_both_languages_have_the_same_keys() -> None:
    tables = _tables()
    assert len(tables["en"]) > 50
    assert tables["en"] == tables["zh"], tables["en"] ^ tables["zh"]


def test_every_key_the_pages_use_is_translated() -> None:
    used, tables = _used_keys(), _tables()
    assert len(used) > 40
    assert used <= tables["en"], used - tables["en"]


def test_chinese_strings_are_chinese() -> None:
    js = (STATIC / "i18n.js").read_text(encoding="utf-8")
    zh = re.search(r"\n  zh: \{\n(.*?)\n  \},", js, re.S)
    assert zh
    values = re.findall(r'"[\w.]+": "([^"]*)"', zh.group(1))
    latin_only = [v for v in values if not re.search(r"[\u4e00-\u9fff]", v)]
    assert set(latin_only) <= {"ONNX"}, latin_only  # a runtime's name stays as it is
