"""A static, offline site from executed labs: one HTML page per lab and language.

No CDN and no JavaScript: markdown is rendered with markdown-it, code with Pygments (inline
styles), plots are embedded PNGs, so the pages open from disk on a machine with no internet.
Exercise cells show the learner's starting code (what the reader types into), not the solution
CI ran; the check cell's output below it shows what the checker says.
"""

from __future__ import annotations

import base64
import html
import re
import shutil
from pathlib import Path

import nbformat
from markdown_it import MarkdownIt
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

import bilingual

# a soft line break between two Chinese characters is no space in Chinese (HTML would render one)
_CJK_BREAK = re.compile(r"(?<=[\u3000-\u9fff\uff00-\uffef])\n(?=[\u3000-\u9fff\uff00-\uffef])")
_MD = MarkdownIt("commonmark", {"html": True}).enable("table")
_FORMAT = HtmlFormatter(noclasses=True, style="friendly", nowrap=False)
TEXT = {
    "zh": {"title": "搜推 soutui 课程", "home": "目录", "other": "English", "lang": "zh-CN",
           "intro": "在真实数据上用 soutui 学习电商搜索与推荐。每个实验都可以在本地运行，CI 会执行全部实验。"},
    "en": {"title": "The soutui course", "home": "Contents", "other": "中文", "lang": "en",
           "intro": "Learn e-commerce search and recommendation with soutui on real data. "
                    "Every lab runs locally, and CI executes all of them."},
}
CSS = """
body{font-family:system-ui,"Noto Sans CJK SC","WenQuanYi Micro Hei",sans-serif;max-width:60rem;margin:auto;
padding:1rem 2rem;line-height:1.6;color:#222}
nav{display:flex;gap:1.5rem;border-bottom:1px solid #ddd;padding-bottom:.5rem}
pre{overflow-x:auto;padding:.6rem;background:#f6f8fa;border-radius:4px;font-size:.85rem}
.cell-code{border-left:3px solid #8ab;margin:1rem 0}
.output pre{background:#fff;border:1px solid #eee}
.output img{max-width:100%}
.exercise{border:2px solid #e0a030;border-radius:6px;padding:.5rem 1rem;margin:1.5rem 0;background:#fffaf0}
.error pre{background:#fee}
table{border-collapse:collapse;font-size:.9rem}td,th{border:1px solid #ccc;padding:.2rem .5rem}
"""


def _output_html(out: nbformat.NotebookNode) -> str:
    kind = out.get("output_type")
    if kind == "stream":
        return f'<pre class="stream">{html.escape(out.get("text", ""))}</pre>'
    if kind == "error":
        tb = "\n".join(out.get("traceback", []))
        return f'<div class="error"><pre>{html.escape(out.get("ename", ""))}: {html.escape(tb)}</pre></div>'
    data = out.get("data", {})
    if "image/png" in data:
        png = data["image/png"]
        png = png if isinstance(png, str) else base64.b64encode(png).decode()
        return f'<img class="plot" alt="plot" src="data:image/png;base64,{png.strip()}">'
    if "text/html" in data:
        return f'<div class="html">{data["text/html"]}</div>'
    if "text/plain" in data:
        return f"<pre>{html.escape(data['text/plain'])}</pre>"
    return ""


def _cell_html(cell: nbformat.NotebookNode, lang: str) -> str:
    if cell.cell_type == "markdown":
        body = _MD.render(_CJK_BREAK.sub("", cell.source))
        ex = bilingual.exercise_id(cell)
        if ex:
            return f'<div class="exercise" data-exercise="{html.escape(ex)}">{body}</div>'
        return body
    source = cell.metadata.get("learner_source", cell.source)
    code = highlight(source, PythonLexer(), _FORMAT)
    outs = "".join(_output_html(o) for o in cell.get("outputs", []))
    return f'<div class="cell-code">{code}<div class="output">{outs}</div></div>'


def _title(nb: nbformat.NotebookNode, fallback: str) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return fallback


def _page(title: str, body: str, lang: str, other_href: str) -> str:
    t = TEXT[lang]
    return (f'<!doctype html><html lang="{t["lang"]}"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
            f'<nav><a href="index.html">{t["home"]}</a><a href="{other_href}">{t["other"]}</a></nav>'
            f"{body}</body></html>")


def build(executed: list[tuple[Path, nbformat.NotebookNode]], out_dir: Path, lang: str) -> list[Path]:
    """Write out_dir/index.html and one page per lab; return the page paths."""
    other = "en" if lang == "zh" else "zh"
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    pages, links = [], []
    for lab, nb in executed:
        view = bilingual.for_language(nb, lang)
        title = _title(view, lab.stem)
        name = f"{lab.stem}.html"
        body = "".join(_cell_html(c, lang) for c in view.cells)
        (out_dir / name).write_text(_page(title, body, lang, f"../{other}/{name}"), encoding="utf-8")
        pages.append(out_dir / name)
        links.append(f'<li><a href="{name}">{html.escape(title)}</a></li>')
    t = TEXT[lang]
    index = f"<h1>{t['title']}</h1><p>{t['intro']}</p><ol>{''.join(links)}</ol>"
    (out_dir / "index.html").write_text(_page(t["title"], index, lang, f"../{other}/index.html"), encoding="utf-8")
    return pages
