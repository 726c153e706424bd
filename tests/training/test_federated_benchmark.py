"""benchmarks/federated.py's summary: each seed's run is chosen on validation, never on test, the
grid keeps compute equal, and the ratio is of the means over seeds."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from federated import chosen, grid, summary  # noqa: E402


def row(setting: str, clients: int, seed: int, lr: float, valid: float, test: float, local: int = 1) -> dict:
    return {"setting": setting, "clients": clients, "seed": seed, "lr": lr, "local_epochs": local,
            "valid_NDCG@10": valid, "NDCG@10": test, "HR@10": 2 * test, "bytes_per_round": 0}  # fmt: skip


def test_each_seed_keeps_the_run_its_validation_chose_and_the_ratio_is_of_the_means() -> None:
    runs = [
        row("centralised", 1, 0, 0.002, 0.06, 0.040),
        row("centralised", 1, 0, 0.004, 0.05, 0.090),  # best test, worse validation: not chosen
        row("centralised", 1, 1, 0.002, 0.06, 0.050),
        row("federated", 4, 0, 0.016, 0.05, 0.036, local=4),
        row("federated", 4, 0, 0.016, 0.04, 0.080, local=1),
        row("federated", 4, 1, 0.016, 0.05, 0.045, local=4),
    ]
    picked = chosen(runs)
    assert [(r["setting"], r["seed"], r["NDCG@10"]) for r in picked] == [
        ("centralised", 0, 0.040), ("centralised", 1, 0.050), ("federated", 0, 0.036), ("federated", 1, 0.045)
    ]  # fmt: skip
    central, fed = summary(picked)
    assert central["NDCG@10"] == pytest.approx(0.045) and central["seeds"] == [0, 1]
    assert fed["NDCG@10"] == pytest.approx(0.0405) and fed["NDCG@10_sd"] == pytest.approx(0.0063640, abs=1e-6)
    assert fed["ndcg_vs_centralised"] == pytest.approx(0.9)
    assert [c["local_epochs"] for c in fed["chosen"]] == [4, 4]


def test_the_grid_keeps_compute_equal_and_refuses_a_local_epoch_count_that_does_not_divide_it() -> None:
    args = argparse.Namespace(epochs=40, local_epochs="1,4", seeds="0,1", clients="4", lrs="0.016",
                              central_lrs="0.002", no_central=False)  # fmt: skip
    runs = grid(args)
    assert (0, 0.002, 1, 0) in runs and (0, 0.016, 1, 0) not in runs  # the centralised side's own rates
    assert {(n, le) for n, _, le, _ in runs if n} == {(4, 1), (4, 4)} and len(runs) == 2 + 4
    with pytest.raises(SystemExit, match="divide"):
        grid(argparse.Namespace(**{**vars(args), "local_epochs": "3"}))
