"""Numpy-only input preparation for the sequential model (shared by training, PyTorch and ONNX scoring).

Kept free of torch so the ONNX Runtime scorer (and the server) can build inputs
without importing it. Item index i becomes row i + 1; row 0 is padding.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SECONDS_PER_DAY = 86400.0


def pad_left(histories: Sequence[np.ndarray], max_len: int, width: int | None = None) -> np.ndarray:
    """(B, T) int64 item rows, most recent item in the last column.

    T = `width` if given (fixed-shape export), else the longest history in the batch
    (capped at max_len), so short batches cost less.
    """
    if width is None:
        width = max(1, min(max_len, max((len(h) for h in histories), default=1)))
    out = np.zeros((len(histories), width), dtype=np.int64)
    for r, h in enumerate(histories):
        h = np.asarray(h, dtype=np.int64)[-width:]
        if len(h):
            out[r, width - len(h) :] = h + 1
    return out


def pad_times(timestamps: Sequence[np.ndarray | None], width: int) -> np.ndarray:
    """(B, T) float32 days since the epoch, aligned with `pad_left`; -1 = unknown (or padding).

    A timestamp <= 0 means unknown (SequenceData stores 0 for missing times).
    """
    out = np.full((len(timestamps), width), -1.0, dtype=np.float32)
    for r, ts in enumerate(timestamps):
        if ts is None or len(ts) == 0:
            continue
        t = np.asarray(ts, dtype=np.float64)[-width:]
        days = np.where(t > 0, t / SECONDS_PER_DAY, -1.0)
        out[r, width - len(t) :] = days
    return out


def training_windows(
    sequences: Sequence[np.ndarray], max_len: int
) -> tuple[list[np.ndarray], list[np.ndarray], list[int]]:
    """Next-item pairs per user: input s[:-1] and labels s[1:] over the last max_len + 1 items.

    Returns (inputs, labels, user positions) for users with at least two items.
    """
    xs, ys, users = [], [], []
    for u, s in enumerate(sequences):
        if len(s) < 2:
            continue
        s = np.asarray(s, dtype=np.int64)[-(max_len + 1) :]
        xs.append(s[:-1])
        ys.append(s[1:])
        users.append(u)
    return xs, ys, users


def attribute_table(
    attribute_lists: Sequence[Sequence[int]], max_per_item: int = 8
) -> tuple[np.ndarray, int]:
    """Padded (I+1, A) attribute-row table (0 = none) and the attribute vocabulary size.

    Raw attribute ids are re-indexed densely from 1 so the table stays small.
    """
    vocab: dict[int, int] = {}
    width = max(1, min(max_per_item, max((len(a) for a in attribute_lists), default=1)))
    table = np.zeros((len(attribute_lists) + 1, width), dtype=np.int64)
    for i, attrs in enumerate(attribute_lists):
        for j, a in enumerate(list(attrs)[:width]):
            table[i + 1, j] = vocab.setdefault(int(a), len(vocab) + 1)
    return table, len(vocab)
