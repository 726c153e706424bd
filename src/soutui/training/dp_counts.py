"""Private item counts (one user = one unit): per-user contribution bounding + a Gaussian mechanism,
accounted with Opacus's RDP accountant and composed with DP-SGD's.

A DP bundle must not ship counts taken outside DP-SGD (docs/privacy.md): the popularity model and the
trending fallback are this release instead. Why each step:

- Bounding: each user adds 1 to at most `max_items` DISTINCT items (a user with more is cut to a
  uniformly random subset), so adding or removing one user moves the count vector by at most
  sqrt(max_items) in L2 norm, whatever their history (a bot viewing one item 10,000 times adds 1).
- Noise: N(0, (sigma x sqrt(max_items))^2) on every item's count, sigma solved by Opacus's
  `get_noise_multiplier` for the target (epsilon, delta) of one full-batch Gaussian step
  (sample rate 1, one step). Adjacency is add/remove one user, as for DP-SGD's Poisson sampling.
- Accounting: a Gaussian mechanism is RDP with the same curve as one unsampled DP-SGD step of the
  same noise multiplier, so `compose` puts every part (the release and each DP-SGD run on the same
  users) into ONE RDPAccountant history and converts the summed curve once: the bundle's total,
  tighter than adding the parts' epsilons.
- Fresh randomness: the noise and the subsets come from the OS entropy pool unless a seed is given
  (tests only); noise drawn from a public seed could be subtracted again and protects nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from soutui.data.sequences import SequenceData
from soutui.models.popularity import Popularity
from soutui.models.private_cooc import ACCOUNTANT, bounded_counts, gaussian_sigma, rdp_epsilon

MECHANISM = (
    "Gaussian mechanism on per-user bounded item counts (each user: at most max_items distinct items, once)"
)


# sigma (noise std / L2 sensitivity) of ONE Gaussian release that is (epsilon, delta)-DP under RDP
count_noise_multiplier = gaussian_sigma


def private_counts(
    sequences: Sequence[np.ndarray],
    n_items: int,
    epsilon: float,
    delta: float,
    max_items: int = 20,
    seed: int | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """(noisy counts (I,), the release's "privacy" record) for the users' `sequences`."""
    rng = np.random.default_rng(seed)  # None: OS entropy (see the module docstring)
    sigma = count_noise_multiplier(epsilon, delta)
    sensitivity = math.sqrt(max_items)
    noisy = bounded_counts(sequences, n_items, max_items, rng) + rng.normal(0.0, sigma * sensitivity, n_items)
    record = {
        "epsilon": round(rdp_epsilon([(sigma, 1.0, 1)], delta), 4),
        "delta": delta,
        "accountant": ACCOUNTANT,
        "unit": "user",
        "target_epsilon": epsilon,
        "noise_multiplier": sigma,
        "sample_rate": 1.0,
        "steps": 1,
        "max_items_per_user": max_items,
        "l2_sensitivity": sensitivity,
        "noise_std": sigma * sensitivity,
        "mechanism": MECHANISM,
    }
    return noisy, record


def compose(parts: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The total privacy of several releases on the same users: their RDP curves summed (one
    accountant history) and converted once, at the largest of their deltas."""
    if not parts:
        raise ValueError("nothing to compose")
    history: list[tuple[float, float, int]] = []
    for name, p in parts.items():
        if p.get("accountant") != ACCOUNTANT or p.get("unit") != "user":
            raise ValueError(f"part {name!r} is not an RDP-accounted per-user release: {dict(p)}")
        # a part that made several releases (SASRec's private head, then DP-SGD) carries its own history
        for s, q, t in p.get("history") or [(p["noise_multiplier"], p["sample_rate"], p["steps"])]:
            history.append((float(s), float(q), int(t)))
    delta = max(float(p["delta"]) for p in parts.values())
    return {
        "epsilon": round(rdp_epsilon(history, delta), 4),
        "delta": delta,
        "accountant": ACCOUNTANT,
        "unit": "user",
        "composition": "RDP curves of all parts summed, converted once at the largest delta",
        "parts": sorted(parts),
    }


def private_popularity(
    data: SequenceData, epsilon: float, delta: float, max_items: int = 20, seed: int | None = None
) -> tuple[Popularity, dict[str, Any]]:
    """A `Popularity` model whose scores are the private release of `data`'s counts, and its record."""
    counts, record = private_counts(data.sequences, data.n_items, epsilon, delta, max_items, seed)
    model = Popularity()
    model.n_items_ = data.n_items
    model.scores_ = counts
    return model, record
