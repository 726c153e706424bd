"""Lab 12's checks accept the right answer and say what is wrong with typical mistakes."""

from __future__ import annotations

import checks
import checks_ops
import numpy as np
import pytest

from soutui.serving.monitoring import psi


@pytest.fixture(autouse=True)
def lenient(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOUTUI_COURSE_STRICT", raising=False)


def test_reference_psi_is_soutuis() -> None:
    for expected, actual in checks_ops.PSI_CASES:
        assert checks_ops._psi(expected, actual) == pytest.approx(psi(expected, actual), rel=1e-12)


def test_psi(capsys: pytest.CaptureFixture[str]) -> None:
    assert checks.lab12_psi(psi)
    assert not checks.lab12_psi(lambda e, a: checks_ops._kl(np.asarray(a, float), np.asarray(e, float)))
    assert "not a one-way KL" in capsys.readouterr().out

    def no_floor(e: list[float], a: list[float]) -> float:
        ea, aa = np.asarray(e, float) / sum(e), np.asarray(a, float) / sum(a)
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(np.sum((aa - ea) * np.log(aa / ea)))

    assert not checks.lab12_psi(no_floor)
    assert "1e-4 floor" in capsys.readouterr().out

    def counts(e: list[float], a: list[float]) -> float:
        ea, aa = np.maximum(np.asarray(e, float), 1e-4), np.maximum(np.asarray(a, float), 1e-4)
        return float(np.sum((aa - ea) * np.log(aa / ea)))

    assert not checks.lab12_psi(counts)
    assert "shares first" in capsys.readouterr().out


def test_psi_strict_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOUTUI_COURSE_STRICT", "1")
    with pytest.raises(checks.CheckFailed, match="expected"):
        checks.lab12_psi(lambda e, a: 0.5)


def test_team_draft_reference() -> None:
    # coin "b" first: b picks p2; a (fewer picks) takes p1; tie, coin "a": a takes p3; b takes p5
    assert checks_ops.team_draft(["p1", "p2", "p3", "p4"], ["p2", "p5", "p1", "p6"], ["b", "a"], 4) == [
        ("p2", "b"), ("p1", "a"), ("p3", "a"), ("p5", "b")]
    # identical lists: every item shown once, teams alternate by the draft rule
    assert [i for i, _ in checks_ops.team_draft(["x", "y", "z"], ["x", "y", "z"], ["a", "b"], 3)] == ["x", "y", "z"]


def test_team_draft(capsys: pytest.CaptureFixture[str]) -> None:
    assert checks.lab12_team_draft(checks_ops.team_draft)

    def alternate(a: list[str], b: list[str], coins: list[str], k: int) -> list[tuple[str, str]]:
        out = []
        for x, y in zip(a, b, strict=False):
            out += [(x, "a"), (y, "b")]
        return out[:k]

    assert not checks.lab12_team_draft(alternate)
    assert "shown twice" in capsys.readouterr().out

    def all_a(a: list[str], b: list[str], coins: list[str], k: int) -> list[tuple[str, str]]:
        return [(i, "a") for i, _ in checks_ops.team_draft(a, b, coins, k)]

    assert not checks.lab12_team_draft(all_a)
    assert "wrong teams" in capsys.readouterr().out

    def ignore_coins(a: list[str], b: list[str], coins: list[str], k: int) -> list[tuple[str, str]]:
        return checks_ops.team_draft(a, b, ["a"] * 10, k)

    assert not checks.lab12_team_draft(ignore_coins)
    assert "next coin" in capsys.readouterr().out


def test_occlusion(capsys: pytest.CaptureFixture[str]) -> None:
    assert checks.lab10_occlusion(checks_ops._occlusion)
    assert not checks.lab10_occlusion(lambda score, h: [score([x]) for x in h])
    assert "score of the item alone" in capsys.readouterr().out
    assert not checks.lab10_occlusion(lambda score, h: [-w for w in checks_ops._occlusion(score, h)])
    assert "sign is flipped" in capsys.readouterr().out
    assert not checks.lab10_occlusion(lambda score, h: checks_ops._occlusion(score, h)[:-1])
    assert "one weight per history position" in capsys.readouterr().out


def test_top_beats_random(capsys: pytest.CaptureFixture[str]) -> None:
    assert checks_ops._beats([3, 1, 2], [1, 1, 5]) == pytest.approx(0.5)
    assert checks.lab10_top_beats_random(checks_ops._beats)
    assert not checks.lab10_top_beats_random(lambda t, r: float(np.mean(np.asarray(t) > np.asarray(r))))
    assert "a tie counts" in capsys.readouterr().out
    assert not checks.lab10_top_beats_random(lambda t, r: checks_ops._beats(r, t))
    assert "reversed" in capsys.readouterr().out
