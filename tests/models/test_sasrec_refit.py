"""SASRec's refit for serving: the same recipe trained again on every interaction.

Known answer: four "new" items are only ever bought last (each user's final item is new item
(previous item mod 4)), so a model fitted on the leave-one-out training part never sees one as a
target, and the refit on all interactions learns which new item follows which item.
"""

from __future__ import annotations

import numpy as np
import pytest
from sasrec_fixtures import SMALL, sasrec

from soutui.config import ConfigError
from soutui.data.sequences import SequenceData, leave_one_out
from soutui.models.registry import load_model

CYCLE, NEW = 12, 4


def last_item_data(n_users: int = 240, seed: int = 0) -> SequenceData:
    """A walk 0 -> 1 -> ... round a 12-item cycle, then new item 12 + (last % 4) as the final event."""
    rng = np.random.default_rng(seed)
    seqs, tss = [], []
    for _ in range(n_users):
        start, length = int(rng.integers(CYCLE)), int(rng.integers(3, 6))
        walk = (start + np.arange(length)) % CYCLE
        seqs.append(np.append(walk, CYCLE + walk[-1] % NEW))
        tss.append(1_600_000_000 + np.arange(length + 1) * 86400)
    ids = np.array([f"i{i}" for i in range(CYCLE + NEW)], dtype=object)
    return SequenceData(ids, np.array([f"u{u}" for u in range(n_users)], dtype=object), seqs, tss)


def new_item_ranks(model, histories: list[np.ndarray]) -> np.ndarray:  # type: ignore[no-untyped-def]
    """0-based rank of the new item that follows each history's last item."""
    with model.variant(head_weight=0.0):  # the network itself, not the co-occurrence head
        scores = model.score(histories)
    targets = np.array([CYCLE + h[-1] % NEW for h in histories])
    return (scores > scores[np.arange(len(histories)), targets][:, None]).sum(1)


@pytest.fixture(scope="module")
def fitted() -> tuple[SequenceData, object]:
    data = last_item_data()
    split = leave_one_out(data)
    return data, sasrec(**SMALL, epochs=6, patience=20).fit(split.train, split.valid)


def test_refit_learns_the_events_the_validated_fit_held_out(fitted, tmp_path) -> None:  # type: ignore[no-untyped-def]
    data, model = fitted
    model.save(tmp_path / "ckpt")
    loaded = load_model(tmp_path / "ckpt").use_trainer(model.trainer)  # as `bundle build --refit` gets it
    new = loaded.refit(data)
    report, old_report = new.training_report(), model.training_report()
    assert report["epoch"] == old_report["best_epoch"] > 0  # as many epochs as validation kept
    assert report["best_epoch"] == -1 and report["stopped"] == "epochs"  # nothing validated
    assert float(new._net().cooc_alpha) == float(model._net().cooc_alpha)  # the head weight it chose
    assert new._net().cfg.cooc_half_life == model._net().cfg.cooc_half_life
    fresh = [np.array([s, (s + 1) % CYCLE, (s + 2) % CYCLE]) for s in range(CYCLE)]  # histories never trained on
    before, after = new_item_ranks(model, fresh), new_item_ranks(new, fresh)
    assert (after <= 1).mean() >= 0.75, after  # the refit ranks the right new item first or second
    assert (before <= 1).mean() <= 0.25, before  # the validated fit never saw a new item as a target


def test_refit_refuses_what_it_cannot_repeat(fitted) -> None:  # type: ignore[no-untyped-def]
    data, model = fitted
    other = data.with_sequences(data.sequences, data.timestamps)
    other.item_ids = other.item_ids[::-1].copy()
    with pytest.raises(ValueError, match="same items"):
        model.refit(other)
    with pytest.raises(ConfigError, match="privacy accounting"):
        sasrec(**SMALL, dp_epsilon=4.0, dp_delta=1e-3).refit(data)
    with pytest.raises(ValueError, match="no record of its training epochs"):
        _unfitted_report(model).refit(data)


def _unfitted_report(model):  # type: ignore[no-untyped-def]
    """A copy of `model` that lost its training record (a checkpoint saved without training.json)."""
    import copy

    clone = copy.copy(model)
    clone.training_, clone.saved_report_ = None, {}
    return clone
