"""Lab 13's checks accept the right answer and say what is wrong with typical mistakes; labpg starts a
real throwaway PostgreSQL server (Debian's binaries; CI installs them, so no skip)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import checks
import checks_scale
import numpy as np
import pytest

COURSE = Path(__file__).resolve().parents[2] / "course"


@pytest.fixture(autouse=True)
def lenient(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOUTUI_COURSE_STRICT", raising=False)


# ---- 13.1 candidate recall ------------------------------------------------------------


def test_reference_recall_by_hand() -> None:
    assert checks_scale.candidate_recall([[3, 1, 2]], [[1, 2, 3]], 3) == 1.0
    # first query finds 7 and 0 of its top 4; the second 12, 10, 11 (its -1 padding is no item)
    cands = [[0, 1, 2, 3, 4, 5, 6, 7], [10, 11, 12, -1, -1, -1, -1, -1]]
    assert checks_scale.candidate_recall(cands, [[7, 8, 9, 0], [12, 13, 10, 11]], 4) == pytest.approx((2 / 4 + 3 / 4) / 2)
    # -1 never counts, even if an exact list were to hold it
    assert checks_scale.candidate_recall([[-1, -1]], [[-1, 5]], 2) == 0.0


def test_recall_accepts_the_solution_and_faiss_output_shapes(capsys: pytest.CaptureFixture[str]) -> None:
    def solution(candidates: np.ndarray, exact_top: np.ndarray, k: int) -> float:
        hits = [len({c for c in cand if c >= 0} & set(top[:k])) / k for cand, top in zip(candidates, exact_top, strict=True)]
        return float(np.mean(hits))

    assert checks_scale.lab13_recall(solution)
    assert "correct" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("wrong", "says"),
    [
        (lambda c, t, k: float(np.mean([len(set(a) & set(b[:k])) / len(a) for a, b in zip(c, t, strict=True)])),
         "not by the number of candidates"),
        (lambda c, t, k: sum(len(set(a) & set(b[:k])) for a, b in zip(c, t, strict=True)) / k, "average over the queries"),
        (lambda c, t, k: float(np.mean([len(set(a) & set(b)) / k for a, b in zip(c, t, strict=True)])), "first k of the exact"),
        (lambda c, t, k: float(np.mean([len(set(a[:k]) & set(b[:k])) / k for a, b in zip(c, t, strict=True)])),
         "count every candidate"),
        (lambda c, t, k: 0.5, "expected"),
        (lambda c, t, k: 1 / 0, "raised ZeroDivisionError"),
    ],
)  # fmt: skip
def test_recall_names_the_mistake(wrong: object, says: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert not checks_scale.lab13_recall(wrong)
    out = capsys.readouterr().out
    assert says in out and "✗" in out


def test_recall_strict_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOUTUI_COURSE_STRICT", "1")
    with pytest.raises(checks.CheckFailed, match="expected"):
        checks_scale.lab13_recall(lambda c, t, k: 0.5)


# ---- 13.2 memory of the tables --------------------------------------------------------


def test_reference_memory_matches_the_parts_of_docs_scaling() -> None:
    mib = 2**20
    table = 1_000_000 * 64 * 4 / mib  # 244.1 MiB: one I x d float32 table (256 MB)
    index_rows = 1_000_000 * 65 * 4 / mib  # 248 MiB: item_index.npy, as docs/scaling.md lists it
    assert checks_scale.serving_tables_mib(1_000_000, 64) == pytest.approx(4 * table + 2 * index_rows + 8e6 / mib)
    assert checks_scale.serving_tables_mib(1_000_000, 64) / 1024 == pytest.approx(1.445, abs=0.001)
    assert checks_scale.serving_tables_mib(2_000_000, 64) == pytest.approx(2 * checks_scale.serving_tables_mib(1_000_000, 64))


def test_reference_index_part_is_what_faiss_stores() -> None:
    """The IVF part of the formula (rows + int64 ids) against the serialised index, at a lab-like size."""
    import faiss

    from soutui.serving.ann import AnnConfig, build_index

    rows = np.random.default_rng(0).normal(size=(20_000, 17)).astype(np.float32)
    index = build_index(rows, AnnConfig(min_items=1))
    formula = rows.nbytes + 20_000 * 8
    centroids = index.nlist * 17 * 4
    assert formula <= len(faiss.serialize_index(index)) <= formula + centroids + 64 * 1024


def test_memory_accepts_the_solution(capsys: pytest.CaptureFixture[str]) -> None:
    assert checks_scale.lab13_memory(lambda i, d: ((4 * i * d + 2 * i * (d + 1)) * 4 + 8 * i) / 2**20)
    assert "correct" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("wrong", "says"),
    [
        (lambda i, d: ((4 * i * d + 2 * i * (d + 1)) * 4 + 8 * i) / 1e6, "not 10^6"),
        (lambda i, d: (4 * i * d + 2 * i * (d + 1) + 2 * i) / 2**20, "4 bytes"),
        (lambda i, d: ((4 * i * d + 2 * i * (d + 1)) * 4 + 8 * i) / 2**30, "not GiB"),
        (lambda i, d: (6 * i * d * 4 + 8 * i) / 2**20, "d + 1 columns"),  # 2 x I x 4 bytes = I x 8 bytes:
        (lambda i, d: (4 * i * d + 2 * i * (d + 1)) * 4 / 2**20, "int64 id"),  # one message names both
        (lambda i, d: ((2 * i * d + 2 * i * (d + 1)) * 4 + 8 * i) / 2**20, "4 tables of I × d"),
        (lambda i, d: ((4 * i * d + i * (d + 1)) * 4 + 8 * i) / 2**20, "2 tables of I × (d + 1)"),
        (lambda i, d: i * d * 4 / 1e6, "expected"),
    ],
)  # fmt: skip
def test_memory_names_the_mistake(wrong: object, says: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert not checks_scale.lab13_memory(wrong)
    out = capsys.readouterr().out
    assert says in out and "✗" in out


# ---- exactly once -----------------------------------------------------------------------


def test_exactly_once() -> None:
    posted = [["e1", "e2", "e3"], ["e2", "e3", "e4"]]
    assert checks_scale.exactly_once(posted, ["e1", "e2", "e3", "e4"], [1, 3]) == []
    problems = checks_scale.exactly_once(posted, ["e1", "e2", "e2", "e3"], [2, 2])
    text = " ".join(en for _, en in problems)
    assert "1 events were not stored" in text and "'e4'" in text
    assert "stored more than once" in text and "'e2'" in text
    assert "add up to 4" not in text  # 2 + 2 = 4 distinct: the counts are right
    counted_twice = checks_scale.exactly_once(posted, ["e1", "e2", "e3", "e4"], [3, 3])
    assert [en for _, en in counted_twice] == ["the writers' new-event counts add up to 6, not to the 4 distinct events"]


# ---- labpg: a real server ------------------------------------------------------------------


def test_labpg_starts_a_server_gives_fresh_databases_and_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    import labpg
    import psycopg

    monkeypatch.delenv("SOUTUI_PG_URL", raising=False)
    try:
        url = labpg.database("lab13_test")
        root = Path(str(labpg._SERVER["root"]))
        with psycopg.connect(url, autocommit=True) as con:
            con.execute("CREATE TABLE t (x int)")
            con.execute("INSERT INTO t VALUES (1)")
        # $SOUTUI_PG_URL names a server of one's own: used as it is, and the database starts empty again
        monkeypatch.setenv("SOUTUI_PG_URL", labpg.start())
        again = labpg.database("lab13_test")
        assert again == url
        with psycopg.connect(again) as con:
            assert con.execute("SELECT count(*) FROM pg_tables WHERE tablename = 't'").fetchone() == (0,)
        assert labpg.start().endswith("/postgres") and root.is_dir()
    finally:
        labpg.stop()
    assert not root.exists() and not labpg._SERVER
    if os.geteuid() == 0:  # initdb refuses root: the server ran as the postgres user
        assert labpg._as_owner(["initdb"])[:3] == ["runuser", "-u", "postgres"]


def test_labpg_server_goes_away_when_its_process_is_killed(tmp_path: Path) -> None:
    """SIGKILL skips atexit: the watchdog stops the server and removes its directory."""
    import psycopg

    code = ("import sys, time; sys.path.insert(0, sys.argv[1]); import labpg; "
            "print(labpg.start(), labpg._SERVER['root'], flush=True); time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(COURSE)], stdout=subprocess.PIPE, text=True)
    try:
        url, root = proc.stdout.readline().split()  # type: ignore[union-attr]
        with psycopg.connect(url) as con:
            assert con.execute("SELECT 1").fetchone() == (1,)
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 60
    while Path(root).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not Path(root).exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=5)
