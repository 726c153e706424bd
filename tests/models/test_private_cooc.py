"""The private co-occurrence head (issue 12 §2): per-user sensitivity, public candidates, noise and
accounting as stated, and a known answer it recovers under the noise."""

from __future__ import annotations

import numpy as np
import pytest
from opacus.accountants import RDPAccountant

from soutui.data.sequences import SequenceData
from soutui.models.private_cooc import (
    PrivateHeadConfig,
    candidate_pairs,
    clipped_table,
    gaussian_sigma,
    private_cooccurrence,
    user_pairs,
    with_popular,
)

N = 30


def walks(n_users: int, seed: int = 0) -> SequenceData:
    """Each user walks 0 -> 1 -> ... -> 29 -> 0 from a random start: the next item is last + 1."""
    rng = np.random.default_rng(seed)
    seqs = [(int(rng.integers(N)) + np.arange(int(rng.integers(4, 9)))) % N for _ in range(n_users)]
    return SequenceData(np.array([f"i{i}" for i in range(N)], dtype=object),
                        np.array([f"u{u}" for u in range(n_users)], dtype=object), seqs)  # fmt: skip


def ring_vectors() -> np.ndarray:
    """Public title vectors on a circle: each item's nearest items are its two ring neighbours."""
    angle = 2 * np.pi * np.arange(N) / N
    return np.stack([np.cos(angle), np.sin(angle)], 1).astype(np.float32)


def test_one_user_moves_the_table_by_at_most_the_clip() -> None:
    data, cfg = walks(300), PrivateHeadConfig(clip=0.5)
    cand = with_popular(candidate_pairs(ring_vectors(), 3), np.arange(10), N)
    users, keys, weights = user_pairs(data.sequences, N, cfg)
    full = clipped_table(users, keys, weights, cand, cfg.clip)
    for drop in (0, 7, 123):
        keep = users != drop
        without = clipped_table(users[keep], keys[keep], weights[keep], cand, cfg.clip)
        assert 0 < np.linalg.norm(full - without) <= cfg.clip + 1e-9


def test_candidates_come_from_the_public_vectors_only() -> None:
    cand = candidate_pairs(ring_vectors(), 2)
    pairs = {(int(k) // N, int(k) % N) for k in cand}
    # the two ring neighbours, both ways
    assert pairs == {(i, (i + d) % N) for i in range(N) for d in (1, -1)}
    users, keys, weights = user_pairs(walks(50).sequences, N, PrivateHeadConfig())
    outside = ~np.isin(keys, cand)
    assert outside.any()  # the walks co-occur beyond the candidates (window 5) ...
    table = clipped_table(users, keys, weights, cand, 0.5)
    assert len(table) == len(cand)  # ... and only the candidates are released


def test_no_candidates_releases_nothing_and_still_accounts() -> None:
    """No public vectors and no popular pairs: an empty table (the model falls back on the noisy
    counts' order), and the count release is still recorded."""
    model, rec = private_cooccurrence(walks(50), None, 4.0, 1e-5, PrivateHeadConfig(popular_items=0), seed=0)
    assert rec["candidate_pairs"] == 0 and model.sim_.nnz == 0 and not rec["public_vectors"]
    assert model.score([np.array([3, 4])]).shape == (1, N) and 3.9 < rec["epsilon"] <= 4.0


def test_noise_and_accounting_are_as_recorded() -> None:
    eps, delta = 4.0, 1e-5
    _, rec = private_cooccurrence(walks(300), ring_vectors(), eps, delta, seed=0)
    sigma_p, sigma_c = rec["noise_multiplier"], rec["count_noise_multiplier"]
    # the two Gaussian releases compose like one of noise (sigma_c^-2 + sigma_p^-2)^-1/2, solved for eps
    assert (sigma_p**-2 + sigma_c**-2) ** -0.5 == pytest.approx(gaussian_sigma(eps, delta), rel=1e-9)
    acc = RDPAccountant()
    acc.history = [tuple(h) for h in rec["history"]]
    assert rec["epsilon"] == pytest.approx(acc.get_epsilon(delta=delta), abs=1e-4)
    assert eps - 0.02 < rec["epsilon"] <= eps
    # the noise on a candidate nobody holds has the stated std (empty data: the table is pure noise)
    cfg = PrivateHeadConfig(content_neighbours=29, popular_items=0, content_weight=0.0, shrink=1e9)
    empty = SequenceData(np.array([f"i{i}" for i in range(N)], dtype=object), np.array(["u"], dtype=object),
                         [np.array([0])])  # fmt: skip
    draws = []
    for seed in range(40):
        m, r = private_cooccurrence(empty, ring_vectors(), eps, delta, cfg, seed=seed)
        draws.append(m.sim_.toarray())
    # positive noise survives (scaled by 1 / (rows + shrink)); its spread matches sigma_p x clip
    vals = np.concatenate([d[d > 0] for d in draws]) * (1e9 + 1.0)
    assert np.sqrt(np.mean(vals**2)) == pytest.approx(r["noise_multiplier"] * cfg.clip, rel=0.1)


def test_the_walk_is_recovered_under_the_noise() -> None:
    """Known answer: next = last + 1. At epsilon 4 over 2,000 users, the private table puts i + 1
    first for almost every item, and the model ranks the true next item first for most histories."""
    data = walks(2000)
    model, _ = private_cooccurrence(
        data, ring_vectors(), 4.0, 1e-5, PrivateHeadConfig(content_weight=0.0), seed=1
    )
    sim = model.sim_.toarray()
    assert np.mean(sim.argmax(1) == (np.arange(N) + 1) % N) >= 0.9
    hist = [np.array([i, (i + 1) % N]) for i in range(N)]
    top = model.score(hist).argmax(1)
    assert np.mean(top == (np.arange(N) + 2) % N) >= 0.8
