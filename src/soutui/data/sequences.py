"""Users' item sequences (the form every recommender learns from) and the evaluation splits.

Item indices are dense 0..n_items-1 over the dataset's whole catalogue (items table,
plus any item seen in events), so full-ranking evaluation ranks every item.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

# Event weights when several behaviour types are mixed into one sequence.
INTERACTION_TYPES = ("view", "click", "cart", "purchase")


@dataclass
class SequenceData:
    """Per-user chronological item sequences over a fixed item vocabulary."""

    item_ids: np.ndarray  # (I,) external item ids; index i <-> item_ids[i]
    user_ids: np.ndarray  # (U,) external user ids
    sequences: list[np.ndarray]  # U arrays of item indices, oldest first
    timestamps: list[np.ndarray] | None = None  # U arrays of unix seconds (may be all 0)
    item_index: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self.item_index:
            self.item_index = {str(x): i for i, x in enumerate(self.item_ids)}

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_interactions(self) -> int:
        return int(sum(len(s) for s in self.sequences))

    def with_sequences(
        self, sequences: list[np.ndarray], timestamps: list[np.ndarray] | None
    ) -> SequenceData:
        return SequenceData(self.item_ids, self.user_ids, sequences, timestamps, self.item_index)

    def stats(self) -> dict[str, float]:
        n = self.n_interactions
        return {
            "users": self.n_users,
            "items": self.n_items,
            "interactions": n,
            "avg_sequence_length": round(n / max(self.n_users, 1), 3),
            "density": round(n / max(self.n_users * self.n_items, 1), 6),
        }

    @classmethod
    def from_events(
        cls,
        events: pd.DataFrame,
        items: pd.DataFrame | None = None,
        event_types: tuple[str, ...] = INTERACTION_TYPES,
        group: str = "user_id",
    ) -> SequenceData:
        """Group events (schema `events` table) into sequences ordered by (ts, event_id order).

        `group` is `user_id` for user histories or `session_id` for session datasets.
        """
        ev = events[events["event_type"].isin(event_types) & events["item_id"].notna()]
        ev = ev[ev[group].notna()]
        catalogue = items["item_id"].astype(str).tolist() if items is not None and len(items) else []
        known = dict.fromkeys(catalogue)
        for it in ev["item_id"].astype(str).unique():
            known.setdefault(it, None)
        item_ids = np.array(list(known), dtype=object)
        item_index = {x: i for i, x in enumerate(item_ids)}
        ev = ev.assign(_order=np.arange(len(ev)), _ts=ev["ts"].fillna(0).astype("int64"))
        ev = ev.sort_values([group, "_ts", "_order"], kind="stable")
        idx = ev["item_id"].astype(str).map(item_index).to_numpy(dtype=np.int64)
        ts = ev["_ts"].to_numpy(dtype=np.int64)
        keys = ev[group].astype(str).to_numpy()
        # keep users in order of first appearance in the file for reproducibility
        _, first, counts = np.unique(keys, return_index=True, return_counts=True)
        starts = np.sort(first)
        order_keys = keys[starts]
        bounds = np.append(starts, len(keys))
        seqs = [idx[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        tss = [ts[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        del counts
        return cls(item_ids, order_keys.astype(object), seqs, tss, item_index)


@dataclass
class EvalSplit:
    """Users to evaluate: the history the model may read and the held-out next item."""

    users: np.ndarray  # (N,) user positions in the SequenceData
    histories: list[np.ndarray]  # N input sequences (item indices)
    targets: np.ndarray  # (N,) held-out item index
    name: str = "test"
    timestamps: list[np.ndarray] | None = None  # N arrays of unix seconds aligned with histories

    def __len__(self) -> int:
        return len(self.targets)

    def take(self, rows: np.ndarray, name: str | None = None) -> EvalSplit:
        """The rows `rows` (positions in this split) as a new split, timestamps included."""
        rows = np.asarray(rows, dtype=np.int64)
        return EvalSplit(
            self.users[rows],
            [self.histories[i] for i in rows],
            self.targets[rows],
            self.name if name is None else name,
            [self.timestamps[i] for i in rows] if self.timestamps is not None else None,
        )


@dataclass
class LeaveOneOut:
    """Leave-one-out: last item = test, second last = validation, the rest = training.

    The model is fitted on `train` only; at test time the validation item is part of
    the input history (the standard SASRec / S3-Rec protocol) but never a training label.
    """

    train: SequenceData
    valid: EvalSplit
    test: EvalSplit

    protocol = "leave-one-out (last item test, second-last validation)"


class _SplitBuilder:
    """Collects (user, history, target, history times) rows for one evaluation split."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.users: list[int] = []
        self.histories: list[np.ndarray] = []
        self.targets: list[int] = []
        self.times: list[np.ndarray] = []

    def add(self, user: int, seq: np.ndarray, ts: np.ndarray, n_history: int) -> None:
        """User `user` reads seq[:n_history] and must predict seq[n_history]."""
        self.users.append(user)
        self.histories.append(seq[:n_history])
        self.targets.append(int(seq[n_history]))
        self.times.append(ts[:n_history])

    def build(self) -> EvalSplit:
        return EvalSplit(
            np.array(self.users, np.int64),
            self.histories,
            np.array(self.targets, np.int64),
            self.name,
            self.times,
        )


def _timestamps(data: SequenceData, u: int) -> np.ndarray:
    return data.timestamps[u] if data.timestamps is not None else np.zeros(len(data.sequences[u]), np.int64)


def leave_one_out(data: SequenceData, min_length: int = 3) -> LeaveOneOut:
    """Split users with >= `min_length` events; shorter users only contribute training data."""
    train_seqs, train_ts = [], []
    valid, test = _SplitBuilder("valid"), _SplitBuilder("test")
    for u, seq in enumerate(data.sequences):
        ts = _timestamps(data, u)
        n_train = len(seq) - 2 if len(seq) >= min_length else len(seq)
        train_seqs.append(seq[:n_train])
        train_ts.append(ts[:n_train])
        if len(seq) >= min_length:
            valid.add(u, seq, ts, len(seq) - 2)
            test.add(u, seq, ts, len(seq) - 1)
    return LeaveOneOut(data.with_sequences(train_seqs, train_ts), valid.build(), test.build())


def temporal_split(data: SequenceData, valid_frac: float = 0.1, test_frac: float = 0.1) -> LeaveOneOut:
    """Global temporal split: events after time quantiles go to validation / test.

    Each user's first held-out event after the cut becomes their target; users with no
    event before the cut are skipped for evaluation (they have no history to read).
    """
    if data.timestamps is None:
        raise ValueError("temporal split needs timestamps")
    all_ts = np.concatenate(data.timestamps) if data.timestamps else np.zeros(0)
    t_valid, t_test = np.quantile(all_ts, [1 - valid_frac - test_frac, 1 - test_frac])
    train_seqs, train_ts = [], []
    valid, test = _SplitBuilder("valid"), _SplitBuilder("test")
    for u, (seq, ts) in enumerate(zip(data.sequences, data.timestamps, strict=True)):
        n_tr = int(np.searchsorted(ts, t_valid, side="right"))
        n_va = int(np.searchsorted(ts, t_test, side="right"))
        train_seqs.append(seq[:n_tr])
        train_ts.append(ts[:n_tr])
        if n_tr > 0 and n_va > n_tr:
            valid.add(u, seq, ts, n_tr)
        if n_va > 0 and len(seq) > n_va:
            test.add(u, seq, ts, n_va)
    return LeaveOneOut(data.with_sequences(train_seqs, train_ts), valid.build(), test.build())


def split_queries(
    queries: list[str] | np.ndarray, test_frac: float = 0.2, seed: int = 0
) -> tuple[set[str], set[str]]:
    """By-query split for search: each distinct query lands wholly in train or test (seeded)."""
    uniq = sorted(set(map(str, queries)))
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(uniq))
    n_test = int(round(len(uniq) * test_frac))
    test = {uniq[i] for i in perm[:n_test]}
    return set(uniq) - test, test
