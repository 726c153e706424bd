"""A private co-occurrence head (one user = one unit): item-to-item evidence released with a Gaussian
mechanism on PUBLIC candidate pairs, for models trained with DP-SGD (docs/privacy.md).

Why this shape. Item-kNN's table has I x I entries; noising all of them (146 M on Amazon Beauty)
drowns every pair but the few thousand strongest, and a threshold that keeps those also keeps
thousands of pure-noise pairs. So the release is restricted to a candidate set chosen without
reading any user's events:

- each item's `content_neighbours` nearest items by the catalogue's own title vectors (public:
  the shop publishes its catalogue), and
- every pair among the `popular_items` most popular items, read off a private count release
  (a first Gaussian mechanism, below), so the choice is post-processing of a private output.

Only those entries are released; every other entry is zero for every dataset, so it needs no noise.
Steps, with add/remove-one-user adjacency (as DP-SGD's Poisson sampling):

1. Counts: each user adds 1 to at most `max_items` distinct items (L2 sensitivity sqrt(max_items)),
   plus N(0, (sigma_c sqrt(max_items))^2) per item.
2. Pairs: a user's windowed co-occurrence entries (item-kNN's window, distance decay and backward
   weight), summed within the user, restricted to the candidates, and scaled down to L2 norm
   <= `clip` (the sensitivity), plus N(0, (sigma_p clip)^2) on every candidate entry.
3. Post-processing (no further cost): a cosine-like normalisation by the noisy table's row sums
   with a `shrink`, plus `content_weight` x the pair's title cosine (public), pruned to each item's
   strongest neighbours; the noisy counts become the vanishing prior item-kNN orders ties with.

Two Gaussian mechanisms compose under RDP like one of noise (sigma_c^-2 + sigma_p^-2)^-1/2: the
pair of noises is solved for the target (epsilon, delta), the counts getting `count_noise` times the
pairs' multiplier (a small share of the budget). The record's `history` is the RDP accountant's
(noise multiplier, sample rate 1, 1 step) per release, ready to compose with DP-SGD's.

Defaults were chosen on Amazon Beauty's leave-one-out VALIDATION split at epsilon 8 (docs/privacy.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from opacus.accountants import RDPAccountant
from opacus.accountants.utils import get_noise_multiplier

from soutui.data.sequences import SequenceData
from soutui.models.itemknn import ItemKNN, prune_rows, windowed_pairs
from soutui.models.sasrec import SASRec

ACCOUNTANT = "rdp"  # the accountant every private release in soutui is recorded under (DP-SGD, counts, this head)
MECHANISM = ("Gaussian mechanisms on per-user bounded item counts, then on per-user clipped co-occurrence "
             "restricted to public candidate pairs (title neighbours, and pairs of privately popular items)")  # fmt: skip


@dataclass(frozen=True)
class PrivateHeadConfig:
    content_neighbours: int = 20  # candidate pairs: each item's nearest items by title vector
    popular_items: int = 500  # candidate pairs: every pair among the privately most popular items
    clip: float = 0.5  # L2 bound of one user's co-occurrence entries (the pairs' sensitivity)
    max_items: int = 20  # distinct items one user adds to the counts (sensitivity sqrt(max_items))
    count_noise: float = 3.0  # the counts' noise multiplier / the pairs' (their share of the budget)
    shrink: float = 30.0  # normalisation: v / (sqrt(row_i row_j) + shrink), rows = noisy row sums
    content_weight: float = 0.1  # + this x the pair's title cosine (public)
    window: int = 5  # item-kNN's co-occurrence window, decay and backward weight
    decay: float = 0.7
    backward: float = 0.25
    neighbours: int = 100  # strongest neighbours kept per item

    def __post_init__(self) -> None:
        if self.content_neighbours < 0 or self.popular_items < 0 or self.max_items < 1 or self.window < 1:
            raise ValueError("content_neighbours, popular_items >= 0; max_items, window >= 1")
        if self.clip <= 0 or self.count_noise <= 0 or self.neighbours < 1:
            raise ValueError("clip > 0, count_noise > 0 and neighbours >= 1")


def gaussian_sigma(epsilon: float, delta: float) -> float:
    """Noise multiplier (noise std / L2 sensitivity) of ONE Gaussian release that is (epsilon, delta)-DP."""
    if not (0 < epsilon < math.inf) or not (0 < delta < 1):
        raise ValueError(
            f"a private release needs 0 < epsilon < inf and 0 < delta < 1 (got {epsilon}, {delta})"
        )
    return float(get_noise_multiplier(target_epsilon=epsilon, target_delta=delta, sample_rate=1.0, steps=1,
                                      accountant=ACCOUNTANT))  # fmt: skip


def rdp_epsilon(history: Sequence[tuple[float, float, int]], delta: float) -> float:
    """Epsilon of several releases on the same users: their RDP curves summed, converted once."""
    acc = RDPAccountant()
    acc.history = [(float(s), float(q), int(t)) for s, q, t in history]
    return float(acc.get_epsilon(delta=delta))


def bounded_counts(
    sequences: Sequence[np.ndarray], n_items: int, max_items: int, rng: np.random.Generator
) -> np.ndarray:
    """Per item, how many users hold it, each user counting at most `max_items` distinct items (I,)."""
    if max_items < 1:
        raise ValueError(f"max_items must be >= 1, got {max_items}")
    counts = np.zeros(n_items, np.float64)
    for seq in sequences:
        held = np.unique(np.asarray(seq, np.int64))
        if len(held) > max_items:
            held = rng.choice(held, size=max_items, replace=False)
        counts[held] += 1.0
    return counts


def candidate_pairs(vectors: np.ndarray | None, neighbours: int) -> np.ndarray:
    """Sorted keys i * I + j (i != j, both directions) of each item's `neighbours` nearest items by
    cosine of `vectors` (public)."""
    n = len(vectors) if vectors is not None else 0
    parts = []
    if vectors is not None and neighbours > 0 and n > 1:
        k = min(neighbours, n - 1)
        unit = np.asarray(vectors, np.float32) / (np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-12)
        block = max(1, 2**24 // n)  # rows of similarities held at once (64 MiB of float32)
        for a in range(0, n, block):
            s = unit[a : a + block] @ unit.T
            s[np.arange(len(s)), np.arange(a, a + len(s))] = -np.inf
            top = np.argpartition(-s, k - 1, axis=1)[:, :k]
            rows = np.arange(a, a + len(s)).repeat(k)
            parts += [rows * n + top.ravel(), top.ravel() * n + rows]
    return np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)


def with_popular(keys: np.ndarray, popular: np.ndarray, n_items: int) -> np.ndarray:
    """`keys` plus every ordered pair of distinct `popular` items."""
    p = np.asarray(popular, np.int64)
    grid = (p[:, None] * n_items + p[None, :])[~np.eye(len(p), dtype=bool)]
    return np.union1d(keys, grid)


def user_pairs(
    sequences: Sequence[np.ndarray], n_items: int, cfg: PrivateHeadConfig
) -> tuple[np.ndarray, ...]:
    """(user, key i * I + j, weight) of every user's windowed co-occurrence entries (item-kNN's pairs),
    summed within the user."""
    u, i, j, w = windowed_pairs(sequences, cfg.window, cfg.backward, cfg.decay)
    k = i * n_items + j
    if not len(u):
        return u, k, w
    order = np.lexsort((k, u))
    u, k, w = u[order], k[order], w[order]
    first = np.r_[True, (u[1:] != u[:-1]) | (k[1:] != k[:-1])]
    return u[first], k[first], np.add.reduceat(w, np.flatnonzero(first))


def clipped_table(
    users: np.ndarray, keys: np.ndarray, weights: np.ndarray, candidates: np.ndarray, clip: float
) -> np.ndarray:
    """Sum over users of their entries on `candidates` (sorted keys), each user scaled to L2 norm <= clip."""
    if not len(candidates):
        return np.zeros(0)
    pos = np.searchsorted(candidates, keys)
    inside = (pos < len(candidates)) & (candidates[np.minimum(pos, len(candidates) - 1)] == keys)
    users, pos, weights = users[inside], pos[inside], weights[inside]
    if not len(users):
        return np.zeros(len(candidates))
    norms = np.sqrt(np.bincount(users, weights=weights**2))
    scale = np.minimum(1.0, clip / np.maximum(norms, 1e-12))
    return np.bincount(pos, weights=weights * scale[users], minlength=len(candidates))


def private_cooccurrence(
    train: SequenceData,
    vectors: np.ndarray | None,
    epsilon: float,
    delta: float,
    cfg: PrivateHeadConfig | None = None,
    seed: int | None = None,
) -> tuple[ItemKNN, dict[str, Any]]:
    """An `ItemKNN` whose similarity is the private release of `train`'s co-occurrence (module
    docstring), and the release's "privacy" record. `vectors`: the catalogue's public title vectors
    (None: only the popular pairs are released). Noise comes from the OS entropy pool unless `seed`
    is given (tests only): noise drawn from a public seed could be subtracted again."""
    cfg = cfg or PrivateHeadConfig()
    rng, n = np.random.default_rng(seed), train.n_items
    sigma = gaussian_sigma(epsilon, delta)  # of the two releases together
    sigma_p = sigma * math.sqrt(1.0 + cfg.count_noise**-2)
    sigma_c = cfg.count_noise * sigma_p
    counts = bounded_counts(train.sequences, n, cfg.max_items, rng)
    counts += rng.normal(0.0, sigma_c * math.sqrt(cfg.max_items), n)
    popular = np.argsort(-counts, kind="stable")[: min(cfg.popular_items, n)]
    candidates = with_popular(candidate_pairs(vectors, cfg.content_neighbours), popular, n)
    users, keys, weights = user_pairs(train.sequences, n, cfg)
    table = clipped_table(users, keys, weights, candidates, cfg.clip) + rng.normal(
        0.0, sigma_p * cfg.clip, len(candidates)
    )
    model = ItemKNN(neighbors=cfg.neighbours)
    model.n_items_ = n
    model.sim_ = _similarity(table, candidates, n, vectors, cfg)
    model.prior_ = 1e-9 * np.maximum(counts, 0) / max(float(counts.max()), 1.0)
    history = [(sigma_c, 1.0, 1), (sigma_p, 1.0, 1)]
    record = {
        "epsilon": round(rdp_epsilon(history, delta), 4), "delta": delta, "accountant": ACCOUNTANT, "unit": "user",
        "target_epsilon": epsilon, "mechanism": MECHANISM, "history": history,
        "noise_multiplier": sigma_p, "count_noise_multiplier": sigma_c, "candidate_pairs": int(len(candidates)),
        "settings": asdict(cfg), "public_vectors": vectors is not None,
    }  # fmt: skip
    return model, record


def _similarity(
    table: np.ndarray, candidates: np.ndarray, n: int, vectors: np.ndarray | None, cfg: PrivateHeadConfig
) -> sp.csr_matrix:
    """Post-processing of the noisy table: normalised by its row sums, plus the public title cosine, pruned."""
    r, c = candidates // n, candidates % n
    rows = np.maximum(np.bincount(r, weights=table, minlength=n), 1.0)
    v = np.where(table > 0, table / (np.sqrt(rows[r] * rows[c]) + cfg.shrink), 0.0)
    if vectors is not None and cfg.content_weight:
        unit = vectors / (np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-12)
        v = v + cfg.content_weight * np.maximum(np.einsum("id,id->i", unit[r], unit[c]), 0.0)
    sim = prune_rows(sp.csr_matrix((v, (r, c)), shape=(n, n)), cfg.neighbours)
    sim.eliminate_zeros()
    return sim.astype(np.float64)


def install_private_head(
    net: SASRec, train: SequenceData, vectors: np.ndarray | None, epsilon: float, delta: float, weight: float
) -> dict[str, Any]:
    """SASRec's co-occurrence head in DP mode: the private release of `train` at (epsilon, delta),
    at a fixed `weight` (choosing it on validation would read user data outside the accounting).
    Returns the release's record; its `history` is for DP-SGD's accounting to compose with."""
    assert net.cooc_idx is not None
    k = int(net.cooc_idx.shape[1])
    knn, record = private_cooccurrence(train, vectors, epsilon, delta, PrivateHeadConfig(neighbours=k))
    idx, val = knn.neighbour_table(k)
    net.set_cooccurrence(torch.from_numpy(idx), torch.from_numpy(val))
    net.cooc_alpha.fill_(float(weight))
    return {**record, "weight": float(weight)}
