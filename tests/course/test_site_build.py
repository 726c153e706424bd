"""The static site builder, on a small executed notebook (no kernel, no browser)."""

from __future__ import annotations

import base64
from pathlib import Path

import nbformat
import site_build

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()


def _notebook() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    zh = nbformat.v4.new_markdown_cell("# 实验\n\n第一行\n第二行", metadata={"tags": ["zh"]})
    en = nbformat.v4.new_markdown_cell("# Lab\n\nfirst line", metadata={"tags": ["en"]})
    ex_zh = nbformat.v4.new_markdown_cell("### 练习 9.1", metadata={"tags": ["zh", "ex:9.1"]})
    ex_en = nbformat.v4.new_markdown_cell("### Exercise 9.1", metadata={"tags": ["en", "ex:9.1"]})
    code = nbformat.v4.new_code_cell("answer = 42", metadata={"tags": ["exercise", "ex:9.1"],
                                                              "learner_source": "answer = None  # your code"})
    plot = nbformat.v4.new_code_cell("plt.show()")
    plot.outputs = [nbformat.v4.new_output("display_data", data={"image/png": PNG, "text/plain": "<Figure>"})]
    nb.cells = [zh, en, ex_zh, ex_en, code, plot]
    return nb


def test_one_page_per_language(tmp_path: Path) -> None:
    lab = Path("99_demo.py")
    for lang in ("zh", "en"):
        site_build.build([(lab, _notebook())], tmp_path / lang, lang)
    zh = (tmp_path / "zh" / "99_demo.html").read_text(encoding="utf-8")
    en = (tmp_path / "en" / "99_demo.html").read_text(encoding="utf-8")
    assert "第一行第二行" in zh  # no space between Chinese lines
    assert "first line" not in zh and "第一行" not in en
    assert 'data-exercise="9.1"' in zh and 'data-exercise="9.1"' in en
    assert "your code" in en and "answer = 42" not in en  # the learner's cell, not the solution
    assert 'class="plot"' in zh and "data:image/png;base64," in zh
    assert "http://" not in zh + en and "https://" not in zh + en
    assert 'href="../en/99_demo.html"' in zh
    assert "99_demo.html" in (tmp_path / "en" / "index.html").read_text(encoding="utf-8")
