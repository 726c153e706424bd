"""The benchmarks' learning-speed figure (benchmarks/curves.py): validation reached after 10 minutes
of the loop's wall clock, as a share of the run's best, read from a training record's history."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from curves import describe, mean_share, reached_by  # noqa: E402


def test_share_is_the_best_validation_by_the_deadline_over_the_best_of_the_run() -> None:
    history = [
        {"epoch": 1, "loss": 7.0, "valid": 0.030, "seconds": 250.0},
        {"epoch": 2, "loss": 6.5, "valid": 0.050, "seconds": 500.0},
        {"epoch": 3, "loss": 6.4, "valid": 0.048, "seconds": 600.0},  # at the deadline: counted
        {"epoch": 4, "loss": 6.3, "valid": 0.060, "seconds": 750.0},
        {"epoch": 5, "loss": 6.2, "valid": 0.058, "seconds": 1000.0},  # the best is kept, not the last
    ]
    r = reached_by(history)
    assert r is not None
    assert r["epochs"] == 3 and r["valid_at"] == 0.05 and r["valid_final"] == 0.06
    assert r["share"] == round(0.05 / 0.06, 4)
    assert "83.3 % of its final 0.0600" in describe(r) and "3 epochs" in describe(r)


def test_no_epoch_by_the_deadline_reads_zero_and_no_validation_reads_none() -> None:
    slow = [{"epoch": 1, "valid": 0.04, "seconds": 700.0}]
    r = reached_by(slow)
    assert r is not None and r["share"] == 0.0 and r["epochs"] == 0
    assert reached_by([{"epoch": 1, "loss": 5.0, "seconds": 10.0}]) is None
    assert describe(None) == "validation after 10 min: not recorded"


def test_mean_share_needs_every_seed() -> None:
    rows = [{"valid_reached": {"share": 0.9}}, {"valid_reached": {"share": 1.0}}]
    stat = mean_share(rows)
    assert stat is not None and abs(stat["mean"] - 0.95) < 1e-12 and stat["n"] == 2
    assert mean_share([*rows, {"valid_reached": None}]) is None
    assert mean_share([]) is None
