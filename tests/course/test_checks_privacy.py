"""Lab 11's checks accept the right answer and say what is wrong with typical mistakes."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

import checks
import checks_privacy
import numpy as np
import pytest
from opacus.accountants import RDPAccountant


@pytest.fixture(autouse=True)
def lenient(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOUTUI_COURSE_STRICT", raising=False)


# ---- 11.1 traces --------------------------------------------------------------------------


def holding(root: Path, needles: Sequence[str]) -> list[str]:
    wanted = [n.encode() for n in needles]
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and any(n in p.read_bytes() for n in wanted))  # fmt: skip


def test_traces_accepts_a_byte_scan(capsys: pytest.CaptureFixture[str]) -> None:
    assert checks_privacy.lab11_traces(holding)
    assert "correct" in capsys.readouterr().out
    assert checks_privacy.lab11_traces(lambda root, needles: [root / p for p in holding(root, needles)])  # absolute ok


def test_traces_rejects_text_reading(capsys: pytest.CaptureFixture[str]) -> None:
    def as_text(root: Path, needles: Sequence[str]) -> list[str]:
        return [p.relative_to(root).as_posix() for p in root.rglob("*")
                if p.is_file() and any(n in p.read_text(encoding="utf-8") for n in needles)]  # fmt: skip

    assert not checks_privacy.lab11_traces(as_text)
    assert "read bytes" in capsys.readouterr().out


def test_traces_names_what_is_missing(capsys: pytest.CaptureFixture[str]) -> None:
    top_only = lambda root, needles: [p for p in holding(root, needles) if "/" not in p]  # noqa: E731
    assert not checks_privacy.lab11_traces(top_only)
    assert "subfolder" in capsys.readouterr().out

    def head_only(root: Path, needles: Sequence[str]) -> list[str]:
        return [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()
                and any(n.encode() in p.read_bytes()[:4096] for n in needles)]  # fmt: skip

    assert not checks_privacy.lab11_traces(head_only)
    assert "whole file" in capsys.readouterr().out
    assert not checks_privacy.lab11_traces(lambda root, needles: holding(root, needles[:1]))
    assert "every needle" in capsys.readouterr().out
    assert not checks_privacy.lab11_traces(lambda root, needles: holding(root, ["u_"]))
    assert "should not be listed" in capsys.readouterr().out
    assert not checks_privacy.lab11_traces(lambda root, needles: None)
    assert "list of paths" in capsys.readouterr().out


def test_traces_strict_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOUTUI_COURSE_STRICT", "1")
    with pytest.raises(checks.CheckFailed, match="should not be listed"):
        checks_privacy.lab11_traces(lambda root, needles: holding(root, ["u_"]))


# ---- 11.2 epsilon -------------------------------------------------------------------------

RECORD = {"epsilon": 3.9999, "delta": 1e-4, "noise_multiplier": 0.848388671875,
          "sample_rate": 1 / 13, "steps": 20}  # fmt: skip  (a real run's record: shop11, target eps 4)


def rdp(sigma: float, q: float, steps: int, delta: float) -> float:
    acc = RDPAccountant()
    acc.history = [(sigma, q, steps)]
    return float(acc.get_epsilon(delta=delta))


def test_reference_epsilon_matches_a_real_record() -> None:
    got = checks_privacy.rdp_epsilon(RECORD["noise_multiplier"], RECORD["sample_rate"], RECORD["steps"], RECORD["delta"])
    assert got == pytest.approx(RECORD["epsilon"], abs=1e-3)


def test_epsilon(capsys: pytest.CaptureFixture[str]) -> None:
    assert checks_privacy.lab11_epsilon(rdp, RECORD)
    assert not checks_privacy.lab11_epsilon(lambda s, q, n, d: rdp(s, q, 1, d), RECORD)
    assert "one step's epsilon" in capsys.readouterr().out
    assert not checks_privacy.lab11_epsilon(lambda s, q, n, d: rdp(s, 1.0, n, d), RECORD)
    assert "subsampling" in capsys.readouterr().out

    def prv(s: float, q: float, n: int, d: float) -> float:
        from opacus.accountants import PRVAccountant

        acc = PRVAccountant()
        acc.history = [(s, q, n)]
        return float(acc.get_epsilon(delta=d))

    assert not checks_privacy.lab11_epsilon(prv, RECORD)
    assert "accountant" in capsys.readouterr().out
    assert not checks_privacy.lab11_epsilon(lambda s, q, n, d: n * q / s, RECORD)
    assert "expected" in capsys.readouterr().out


def test_epsilon_must_match_the_record(capsys: pytest.CaptureFixture[str]) -> None:
    assert not checks_privacy.lab11_epsilon(rdp, {**RECORD, "epsilon": 2.0})
    assert "record" in capsys.readouterr().out


# ---- 11.3 bytes per round -----------------------------------------------------------------

SHAPES = [[601], [1], [601, 16], [16], [10, 16], [48, 16], [48], [16, 64]]


def npy_bytes(shape: list[int]) -> int:
    buf = io.BytesIO()
    np.save(buf, np.zeros(shape, np.float32))
    return len(buf.getvalue())


def fed_record(shapes: list[list[int]], clients: int) -> dict[str, object]:
    per_client = sum(npy_bytes(s) for s in shapes)  # what Flower's ndarray framing sends
    return {"param_shapes": shapes, "federated": {"clients": clients}, "bytes_per_round": 2 * clients * per_client}


def test_reference_bytes_equal_npy_framing() -> None:
    rec = fed_record(SHAPES, 3)
    assert checks_privacy.fed_bytes(SHAPES, 3) == rec["bytes_per_round"]
    # the figure of a real run (shop11, d_model 16, 1 layer, 3 clients): 58,856 bytes up per client
    real = [[601], [1], [601, 16], [16], [16], [10, 16], [16, 16], [16], [16], [48, 16], [48], [16, 16], [16],
            [16, 2], [16], [16], [64, 16], [64], [16, 64], [16], [16], [16]]  # fmt: skip
    assert checks_privacy.fed_bytes(real, 1) == 2 * 58_856


def test_bytes(capsys: pytest.CaptureFixture[str]) -> None:
    rec = fed_record(SHAPES, 3)
    assert checks_privacy.lab11_bytes(checks_privacy.fed_bytes, rec)
    wrong = {
        "one direction": lambda s, n: checks_privacy.fed_bytes(s, n) // 2,
        "one client only": lambda s, n: checks_privacy.fed_bytes(s, 1),
        "float32": lambda s, n: 2 * n * sum(8 * math.prod(x) for x in s),
        "header": lambda s, n: 2 * n * sum(4 * math.prod(x) for x in s),
        "expected": lambda s, n: 1,
    }
    for hint, answer in wrong.items():
        assert not checks_privacy.lab11_bytes(answer, rec), hint
        assert hint in capsys.readouterr().out


def test_bytes_strict_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOUTUI_COURSE_STRICT", "1")
    with pytest.raises(checks.CheckFailed, match="header"):
        checks_privacy.lab11_bytes(lambda s, n: 2 * n * sum(4 * math.prod(x) for x in s), fed_record(SHAPES, 2))
