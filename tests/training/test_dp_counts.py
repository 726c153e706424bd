"""Private item counts (issue 12 §2): the noise meets (epsilon, delta), contributions are bounded per user,
and the composition with DP-SGD is one RDP accountant's."""

from __future__ import annotations

import math

import numpy as np
import pytest
from opacus.accountants import RDPAccountant
from opacus.accountants.utils import get_noise_multiplier
from scipy.stats import norm

from soutui.training.dp_counts import bounded_counts, compose, count_noise_multiplier, private_counts


def analytic_gaussian_delta(epsilon: float, sigma: float) -> float:
    """delta of the Gaussian mechanism with sensitivity 1 and noise std sigma at `epsilon`, exactly
    (Balle & Wang 2018, Theorem 8): an accountant-free check that the release is (epsilon, delta)-DP."""
    return float(norm.cdf(1 / (2 * sigma) - epsilon * sigma) - math.exp(epsilon) * norm.cdf(-1 / (2 * sigma) - epsilon * sigma))


@pytest.mark.parametrize(("epsilon", "delta"), [(0.5, 1e-6), (1.0, 1e-5), (4.0, 1e-5)])
def test_noise_scale_meets_the_stated_epsilon_and_delta(epsilon: float, delta: float) -> None:
    sigma = count_noise_multiplier(epsilon, delta)
    assert sigma == get_noise_multiplier(target_epsilon=epsilon, target_delta=delta, sample_rate=1.0, steps=1,
                                         accountant="rdp")  # fmt: skip
    acc = RDPAccountant()
    acc.history = [(sigma, 1.0, 1)]
    assert epsilon - 0.02 < acc.get_epsilon(delta=delta) <= epsilon  # Opacus's accountant: on target
    assert analytic_gaussian_delta(epsilon, sigma) <= delta  # the exact Gaussian bound agrees it is enough
    assert analytic_gaussian_delta(epsilon, 0.5 * sigma) > delta  # ... and half the noise would not be


def test_released_noise_has_the_calibrated_standard_deviation() -> None:
    noisy, rec = private_counts([], 40_000, epsilon=1.0, delta=1e-5, max_items=9, seed=1)
    assert rec["l2_sensitivity"] == 3.0 and rec["noise_std"] == pytest.approx(3.0 * rec["noise_multiplier"])
    assert rec["unit"] == "user" and rec["accountant"] == "rdp" and 0.98 < rec["epsilon"] <= 1.0
    assert float(noisy.std()) == pytest.approx(rec["noise_std"], rel=0.02)  # 40,000 draws: sd error ~0.4 %
    assert abs(float(noisy.mean())) < 4 * rec["noise_std"] / math.sqrt(40_000)


def test_each_user_counts_each_item_once_and_at_most_k_items() -> None:
    rng = np.random.default_rng(0)
    bot = np.full(1000, 3)  # one item viewed 1,000 times
    wide = np.arange(100)  # 100 distinct items
    counts = bounded_counts([bot, wide, np.array([3, 5, 5])], 100, max_items=5, rng=rng)
    assert counts[3] <= 3 and counts[5] <= 2
    assert counts.sum() == 1 + 5 + 2
    # the L2 sensitivity: adding any one user moves the vector by at most sqrt(k)
    others = [rng.integers(0, 100, rng.integers(1, 40)) for _ in range(50)]
    for user in (bot, wide, np.arange(50, 60)):
        same = np.random.default_rng(7)
        without = bounded_counts(others, 100, 5, same)
        with_user = bounded_counts([*others, user], 100, 5, np.random.default_rng(7))
        assert np.linalg.norm(with_user - without) <= math.sqrt(5) + 1e-12


def test_composition_is_one_accountant_over_all_parts() -> None:
    sgd = {"epsilon": 3.99, "delta": 1e-5, "accountant": "rdp", "unit": "user", "noise_multiplier": 0.56,
           "sample_rate": 1 / 175, "steps": 900}  # fmt: skip
    _, counts = private_counts([np.array([0, 1])], 4, epsilon=1.0, delta=1e-5, seed=0)
    total = compose({"sasrec": sgd, "popularity": counts})
    acc = RDPAccountant()
    acc.history = [(0.56, 1 / 175, 900), (counts["noise_multiplier"], 1.0, 1)]
    assert total["epsilon"] == pytest.approx(acc.get_epsilon(delta=1e-5), abs=1e-4)
    alone = RDPAccountant()
    alone.history = [(0.56, 1 / 175, 900)]
    assert alone.get_epsilon(delta=1e-5) < total["epsilon"] < alone.get_epsilon(delta=1e-5) + counts["epsilon"]
    assert total["parts"] == ["popularity", "sasrec"] and total["unit"] == "user" and total["delta"] == 1e-5
    with pytest.raises(ValueError, match="not an RDP"):
        compose({"x": {**counts, "accountant": "prv"}})
