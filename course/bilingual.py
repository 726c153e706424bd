"""One source per lab, two languages: the rules that keep Chinese and English complete.

A lab is a jupytext percent script. Every markdown cell carries exactly one language tag,
`zh` or `en`, and they come in adjacent pairs (the Chinese cell, then its English twin).
Code cells are shared by both languages. A pair must agree on its structure: the same
heading levels in the same order and the same exercise tag (`ex:<id>`). Every exercise code
cell (tag `exercise`, plus `ex:<id>`) must be introduced by such a pair, and every exercise
needs a check cell after it. `problems()` lists what breaks these rules, so a missing English
section fails CI instead of shipping a half-translated lab.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import jupytext
import nbformat

LANGS = ("zh", "en")
_CJK = re.compile(r"[\u4e00-\u9fff]")
_HEADING = re.compile(r"^(#{1,6})\s", re.MULTILINE)


@dataclass
class LabOutline:
    """What the checker found in one lab: its sections and exercises."""

    sections: list[str] = field(default_factory=list)
    exercises: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def read_lab(path: str | Path) -> nbformat.NotebookNode:
    return jupytext.read(Path(path), fmt="py:percent")


def tags(cell: nbformat.NotebookNode) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def language(cell: nbformat.NotebookNode) -> str | None:
    found = [t for t in tags(cell) if t in LANGS]
    return found[0] if len(found) == 1 else None


def exercise_id(cell: nbformat.NotebookNode) -> str | None:
    ids = [t[3:] for t in tags(cell) if t.startswith("ex:")]
    return ids[0] if ids else None


def _headings(text: str) -> list[int]:
    return [len(m.group(1)) for m in _HEADING.finditer(text)]


def _check_pair(i: int, zh: nbformat.NotebookNode, en: nbformat.NotebookNode, out: LabOutline) -> None:
    where = f"markdown cells {i}/{i + 1}"
    if _headings(zh.source) != _headings(en.source):
        out.problems.append(
            f"{where}: heading levels differ (zh {_headings(zh.source)}, en {_headings(en.source)})"
        )
    if exercise_id(zh) != exercise_id(en):
        out.problems.append(f"{where}: exercise tags differ (zh {exercise_id(zh)}, en {exercise_id(en)})")
    if not _CJK.search(zh.source):
        out.problems.append(f"{where}: the zh cell has no Chinese text")
    if len(_CJK.findall(en.source)) > 8:
        out.problems.append(f"{where}: the en cell is mostly Chinese")
    for level_text in re.findall(r"^#{1,6}\s+(.*)$", en.source, re.MULTILINE):
        out.sections.append(level_text.strip())


def _walk_markdown(cells: list[nbformat.NotebookNode], out: LabOutline) -> set[str]:
    """Check the zh/en pairing; return the exercise ids introduced in both languages."""
    introduced: set[str] = set()
    i = 0
    while i < len(cells):
        cell = cells[i]
        if cell.cell_type != "markdown":
            i += 1
            continue
        lang = language(cell)
        if lang is None:
            out.problems.append(f"markdown cell {i}: needs exactly one language tag of {LANGS}")
            i += 1
            continue
        nxt = cells[i + 1] if i + 1 < len(cells) else None
        if lang != "zh" or nxt is None or nxt.cell_type != "markdown" or language(nxt) != "en":
            first = " ".join(cell.source.split())[:50]
            out.problems.append(f"markdown cell {i} ({lang}, {first!r}): not followed by its en twin"
                                if lang == "zh" else f"markdown cell {i} ({first!r}): en cell without a zh twin")
            i += 1
            continue
        _check_pair(i, cell, nxt, out)
        if exercise_id(cell) and exercise_id(cell) == exercise_id(nxt):
            introduced.add(str(exercise_id(cell)))
        i += 2
    return introduced


def outline(nb: nbformat.NotebookNode) -> LabOutline:
    out = LabOutline()
    cells = list(nb.cells)
    introduced = _walk_markdown(cells, out)
    for i, cell in enumerate(cells):
        if cell.cell_type != "code" or "exercise" not in tags(cell):
            continue
        ex = exercise_id(cell)
        if ex is None:
            out.problems.append(f"code cell {i}: an exercise cell needs an ex:<id> tag")
            continue
        out.exercises.append(ex)
        if ex not in introduced:
            out.problems.append(f"exercise {ex}: no zh + en markdown pair tagged ex:{ex}")
        after = cells[i + 1] if i + 1 < len(cells) else None
        if after is None or after.cell_type != "code" or "checks." not in after.source:
            out.problems.append(f"exercise {ex}: the next cell must call a checks.* function")
    if len(set(out.exercises)) != len(out.exercises):
        out.problems.append(f"exercise ids repeat: {out.exercises}")
    if not out.sections:
        out.problems.append("the lab has no headings")
    return out


def problems(path: str | Path) -> list[str]:
    return [f"{Path(path).name}: {p}" for p in outline(read_lab(path)).problems]


def for_language(nb: nbformat.NotebookNode, lang: str) -> nbformat.NotebookNode:
    """A copy of the notebook with only `lang`'s markdown (code cells are shared)."""
    copy = nbformat.from_dict(nb)
    copy.cells = [c for c in copy.cells if c.cell_type != "markdown" or language(c) == lang]
    return copy
