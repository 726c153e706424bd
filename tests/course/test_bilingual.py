"""Every lab is complete in both languages, and the checker catches a lab that is not."""

from __future__ import annotations

from pathlib import Path

import bilingual
import pytest
import run_labs

COURSE = Path(__file__).resolve().parents[2] / "course"

LABS = sorted((COURSE / "labs").glob("[0-9][0-9]_*.py"))


def test_there_are_labs() -> None:
    assert [p.name[:2] for p in LABS][:3] == ["01", "02", "03"]


@pytest.mark.parametrize("lab", LABS, ids=lambda p: p.stem)
def test_lab_is_bilingual_with_solved_exercises(lab: Path) -> None:
    assert bilingual.problems(lab) == []
    found = bilingual.outline(bilingual.read_lab(lab))
    assert len(found.exercises) >= 2
    assert set(run_labs.solutions_for(lab)) == set(found.exercises)
    nb = run_labs.with_solutions(bilingual.read_lab(lab), lab)
    for cell in nb.cells:
        if "exercise" in bilingual.tags(cell):
            assert cell.source != cell.metadata["learner_source"]


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "99_broken.py"
    path.write_text(body, encoding="utf-8")
    return path


GOOD = '''# %% [markdown] tags=["zh"]
# # 实验
# %% [markdown] tags=["en"]
# # Lab
# %% [markdown] tags=["zh", "ex:9.1"]
# ### 练习 9.1
# %% [markdown] tags=["en", "ex:9.1"]
# ### Exercise 9.1
# %% tags=["exercise", "ex:9.1"]
x = None
# %%
checks.anything(x)
'''


def test_a_complete_lab_passes(tmp_path: Path) -> None:
    assert bilingual.problems(_write(tmp_path, GOOD)) == []


def test_missing_english_twin_is_named(tmp_path: Path) -> None:
    body = GOOD.replace('# %% [markdown] tags=["en"]\n# # Lab\n', "")
    problems = bilingual.problems(_write(tmp_path, body))
    assert any("not followed by its en twin" in p for p in problems)


def test_heading_structure_must_match(tmp_path: Path) -> None:
    body = GOOD.replace("# # Lab\n", "# # Lab\n# ## An extra English section\n")
    problems = bilingual.problems(_write(tmp_path, body))
    assert any("heading levels differ" in p for p in problems)


def test_untranslated_english_cell_is_caught(tmp_path: Path) -> None:
    body = GOOD.replace("# # Lab\n", "# # 实验：这是一段没有翻译成英文的中文说明文字\n")
    assert any("mostly Chinese" in p for p in bilingual.problems(_write(tmp_path, body)))


def test_exercise_needs_both_languages_and_a_check(tmp_path: Path) -> None:
    body = GOOD.replace('tags=["en", "ex:9.1"]', 'tags=["en"]').replace("checks.anything(x)", "print(x)")
    problems = bilingual.problems(_write(tmp_path, body))
    assert any("exercise tags differ" in p for p in problems)
    assert any("no zh + en markdown pair" in p for p in problems)
    assert any("must call a checks.* function" in p for p in problems)


def test_language_view_keeps_code_and_one_language() -> None:
    nb = bilingual.read_lab(LABS[0])
    zh = bilingual.for_language(nb, "zh")
    n_code = sum(c.cell_type == "code" for c in nb.cells)
    assert sum(c.cell_type == "code" for c in zh.cells) == n_code
    assert {bilingual.language(c) for c in zh.cells if c.cell_type == "markdown"} == {"zh"}
