"""Continuous training: the time-window gate between a retrained candidate and the serving model.

`soutui retrain` (orchestrated in soutui.serving.retrain_bundle, which reads and writes
bundles) calls this module for everything that is not a bundle:

1. `split_at` holds out the last time window of events. The candidate trains on the events
   before it; neither model trained on the window (unless the serving bundle was built from
   data newer than the cut, which the decision reports as `serving_saw_window`).
2. `fit_recipe` trains a model the one way retraining trains: warm-started from the previous
   model when it has one (`Recommender.warm_start`), fitted on every event except each user's
   last, which early stopping reads. On promotion `final_fit` refits the candidate's recipe on
   every event, each user's last included, for the epoch count its early stopping chose.
3. `window_metrics` scores any model on the window with the evaluation code (full ranking,
   pessimistic ties, history not excluded). Each model ranks its own catalogue; a target the
   model does not know (an item newer than it) counts as a miss, so a stale vocabulary costs.
4. `decide` promotes when candidate NDCG@10 >= serving NDCG@10 - margin.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from soutui.config import ConfigError, from_dict
from soutui.data.sequences import EvalSplit, SequenceData
from soutui.evaluation.protocol import ranking_metrics, target_ranks
from soutui.features.content import ItemContent
from soutui.models.base import Recommender, Trainer
from soutui.models.registry import model_class
from soutui.training.trainer import LoopTrainer

DAY = 86400
KS = (10,)
MISS = 10**12  # the rank of a target the model cannot score (not in its catalogue)
PROTOCOL = (
    "time window gate: the last window of events held out by time; every window event is a target "
    "whose history is all of the user's earlier events; full ranking over each model's own catalogue, "
    "pessimistic ties, history not excluded; a target outside a model's catalogue counts as a miss"
)


@dataclass
class RetrainConfig:
    """Settings of `soutui retrain` (TOML table [retrain]; flags override)."""

    window_days: float = 7.0  # the held-out window: the last `window_days` of events ...
    window_frac: float = 0.0  # ... or, when > 0, this share of the events' time span
    margin: float = 0.0  # promote when candidate NDCG@10 >= serving NDCG@10 - margin (absolute)
    warm_start: bool = True  # start the candidate from the serving bundle's checkpoint when it has one
    max_window_targets: int = 0  # score at most this many window events (seeded sample; 0 = all)
    encoder: str = "minilm"  # title encoder for item content (must match the serving model's)
    store_wait_s: float = 120.0  # a store held by a writer (the server's flush) is retried this long
    refit: bool = True  # publish the candidate's recipe refitted on every event (see `final_fit`)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.window_days <= 0 and self.window_frac <= 0:
            raise ConfigError("set window_days > 0 or window_frac in (0, 1)")
        if not 0 <= self.window_frac < 1:
            raise ConfigError(f"window_frac must be in [0, 1), got {self.window_frac}")
        if self.margin < 0:
            raise ConfigError(f"margin must be >= 0, got {self.margin}")


def retrain_config(values: dict[str, Any] | None = None) -> RetrainConfig:
    """A RetrainConfig from a dict (unknown keys are errors)."""
    return from_dict(RetrainConfig, values or {}, "retrain")


@dataclass
class Window:
    """The data split at `cutoff`: what the candidate may train on, and the held-out targets."""

    cutoff: int  # unix seconds; events at or after it are in the window
    train: SequenceData  # every user's events before the cutoff
    targets: EvalSplit  # one row per window event with a non-empty history
    events: int  # window events (targets may be fewer: a user's first event has no history)

    def describe(self) -> dict[str, Any]:
        return {
            "cutoff": self.cutoff,
            "cutoff_utc": dt.datetime.fromtimestamp(self.cutoff, dt.UTC).isoformat(timespec="seconds"),
            "events": self.events,
            "targets": len(self.targets),
            "users": len(np.unique(self.targets.users)),
            "train_interactions": self.train.n_interactions,
        }


def cutoff_time(data: SequenceData, cfg: RetrainConfig, serving_until: int | None = None) -> int:
    """The window's start: `window_days` before the newest event, or the `window_frac` time quantile;
    never at or before `serving_until` (the newest event the serving model learned from), so the
    serving model is judged on events it never saw."""
    base = _base_cutoff(data, cfg)
    return max(base, serving_until + 1) if serving_until else base


def _base_cutoff(data: SequenceData, cfg: RetrainConfig) -> int:
    if data.timestamps is None or not data.n_interactions:
        raise ConfigError("retrain needs events with timestamps (the gate holds out the last window by time)")
    ts = np.concatenate(data.timestamps)
    if int(ts.max()) <= 0:
        raise ConfigError("retrain needs events with timestamps; this dataset has none")
    if cfg.window_frac > 0:
        lo, hi = int(ts[ts > 0].min()), int(ts.max())
        return int(hi - cfg.window_frac * (hi - lo))
    return int(ts.max() - cfg.window_days * DAY)


def split_at(data: SequenceData, cutoff: int, max_targets: int = 0, seed: int = 0) -> Window:
    """Events before `cutoff` train; every later event with an earlier one is a target."""
    assert data.timestamps is not None
    train_seqs, train_ts = [], []
    users, hists, targets, times = [], [], [], []
    n_events = 0
    for u, (seq, ts) in enumerate(zip(data.sequences, data.timestamps, strict=True)):
        n = int(np.searchsorted(ts, cutoff, side="left"))  # sequences are time-ordered
        train_seqs.append(seq[:n])
        train_ts.append(ts[:n])
        n_events += len(seq) - n
        for p in range(max(n, 1), len(seq)):
            users.append(u)
            hists.append(seq[:p])
            targets.append(int(seq[p]))
            times.append(ts[:p])
    split = EvalSplit(np.array(users, np.int64), hists, np.array(targets, np.int64), "window", times)
    if max_targets and len(split) > max_targets:
        pick = np.random.default_rng(seed).choice(len(split), max_targets, replace=False)
        split = split.take(np.sort(pick))
    return Window(cutoff, data.with_sequences(train_seqs, train_ts), split, n_events)


def last_event_holdout(data: SequenceData) -> tuple[SequenceData, EvalSplit]:
    """Train on every event but each user's last (users with >= 2 events); the last ones validate."""
    ts_of = data.timestamps or [np.zeros(len(s), np.int64) for s in data.sequences]
    seqs, tss, users, hists, targets, times = [], [], [], [], [], []
    for u, (seq, ts) in enumerate(zip(data.sequences, ts_of, strict=True)):
        cut = len(seq) - 1 if len(seq) >= 2 else len(seq)
        seqs.append(seq[:cut])
        tss.append(ts[:cut])
        if cut < len(seq):
            users.append(u)
            hists.append(seq[:cut])
            targets.append(int(seq[cut]))
            times.append(ts[:cut])
    valid = EvalSplit(np.array(users, np.int64), hists, np.array(targets, np.int64), "valid", times)
    return data.with_sequences(seqs, tss), valid


def fit_recipe(
    model: str,
    params: dict[str, Any],
    data: SequenceData,
    content: ItemContent | None,
    previous: Recommender | None,
    trainer: Trainer | None = None,
) -> Recommender:
    """The one way retraining fits: warm-started from `previous` if given, trained on all but each
    user's last event, early-stopped on those last events."""
    rec = model_class(model)(**params).use_trainer(trainer or LoopTrainer())
    if previous is not None:
        rec.warm_start(previous)
    train, valid = last_event_holdout(data)
    return rec.fit(train, valid, content=content)


def final_fit(
    candidate: Recommender,
    model: str,
    params: dict[str, Any],
    data: SequenceData,
    content: ItemContent | None,
    previous: Recommender | None,
    refit: bool = True,
) -> tuple[Recommender, str]:
    """The model a promotion publishes, trained on every event of `data`, and how it was fitted.

    `refit` (the default): the candidate's recipe refitted on every event, each user's newest
    included, for the epoch count the candidate's early stopping chose, with its other validated
    choices kept (`Recommender.refit`); warm-started from `previous` like the candidate. No
    validation pass, so it costs at most the candidate's fit. A DP-SGD candidate cannot be refitted
    outside its accounting; it, one that trained no epoch, and `refit=False` run `fit_recipe` on
    `data` again (each user's last event then only validates)."""
    report = candidate.training_report() or {}
    trained = not candidate.BUDGETS or int(report.get("epoch", 0)) > 0  # an untrained candidate has no count
    if refit and trained and not report.get("privacy"):
        return candidate.refit(data, content=content, previous=previous), "refit"
    return fit_recipe(model, params, data, content, previous, candidate.trainer), "recipe"


def window_ranks(
    model: Recommender, item_ids: Sequence[Any], data: SequenceData, window: Window
) -> np.ndarray:
    """0-based rank of each window target under `model` (vocabulary `item_ids`; targets in `data`'s
    indices): full ranking, pessimistic ties; MISS for a target outside the model's catalogue."""
    index = {str(x): i for i, x in enumerate(item_ids)}
    to_model = np.array([index.get(str(x), -1) for x in data.item_ids], np.int64)  # data index -> model index
    split = window.targets
    mapped_targets = to_model[split.targets] if len(split) else np.zeros(0, np.int64)
    known = np.flatnonzero(mapped_targets >= 0)
    ranks = np.full(len(split), MISS, np.int64)  # unknown target: a miss at every k
    if len(known):
        hists, times = [], []
        for r in known:
            h = to_model[split.histories[r]]
            keep = h >= 0  # items the model does not know are left out of its input
            hists.append(h[keep])
            times.append(
                np.asarray(split.timestamps[r])[keep] if split.timestamps is not None else h[keep] * 0
            )
        sub = EvalSplit(split.users[known], hists, mapped_targets[known], "window", times)
        ranks[known], _ = target_ranks(model, sub)
    return ranks


def metrics_of(ranks: np.ndarray, n_items: int) -> dict[str, Any]:
    """HR@10 / NDCG@10 (the evaluation's metric code) of window ranks, with the target counts."""
    out: dict[str, Any] = ranking_metrics(ranks, KS) if len(ranks) else {"HR@10": 0.0, "NDCG@10": 0.0}
    out = {k: v for k, v in out.items() if k in ("HR@10", "NDCG@10")}
    out.update(targets=len(ranks), targets_known=int((ranks < MISS).sum()), n_items=n_items)
    return out


def window_metrics(
    model: Recommender, item_ids: Sequence[Any], data: SequenceData, window: Window
) -> dict[str, Any]:
    """HR@10 / NDCG@10 of `model` (vocabulary `item_ids`) on the window targets (`data`'s indices)."""
    return metrics_of(window_ranks(model, item_ids, data, window), len(item_ids))


def paired_difference(candidate: np.ndarray, serving: np.ndarray) -> dict[str, Any]:
    """Candidate minus serving NDCG@10 over the same window targets: mean, 95 % CI and p-value of a
    paired t-test (scipy.stats.ttest_rel) on per-target NDCG@10. For the record: the gate decides by
    the margin alone, and this says how much of the gap noise could explain."""
    from scipy import stats

    def gain(r: np.ndarray) -> np.ndarray:
        return np.where(r < 10, 1.0 / np.log2(np.minimum(r, 10) + 2.0), 0.0)

    a, b = gain(candidate), gain(serving)
    diff = float((a - b).mean()) if len(a) else 0.0
    if len(a) < 2 or not np.any(a != b):
        return {"ndcg10_diff": round(diff, 6), "ci95": [round(diff, 6), round(diff, 6)], "p_value": 1.0,
                "test": "paired t-test on per-target NDCG@10 (no differing targets)"}  # fmt: skip
    res = stats.ttest_rel(a, b)
    lo, hi = res.confidence_interval(0.95)
    return {"ndcg10_diff": round(diff, 6), "ci95": [round(float(lo), 6), round(float(hi), 6)],
            "p_value": round(float(res.pvalue), 6), "test": "paired t-test on per-target NDCG@10 (scipy)"}  # fmt: skip


def decide(candidate: dict[str, Any], serving: dict[str, Any], margin: float) -> tuple[bool, str]:
    """Promote when the candidate's window NDCG@10 is not worse than serving's by more than `margin`."""
    c, s = float(candidate["NDCG@10"]), float(serving["NDCG@10"])
    if c >= s - margin:
        return True, f"candidate NDCG@10 {c:.4f} >= serving {s:.4f} - margin {margin:g}"
    return False, f"candidate NDCG@10 {c:.4f} < serving {s:.4f} - margin {margin:g}"


def run_gate(
    data: SequenceData,
    content: ItemContent | None,
    serving: tuple[Recommender, Sequence[Any]],
    previous: Recommender | None,
    model: str,
    params: dict[str, Any],
    cfg: RetrainConfig,
    trainer: Trainer | None = None,
    serving_until: int | None = None,
) -> tuple[dict[str, Any], Recommender]:
    """Hold out the window, train the candidate before it, score both on it, decide.

    `serving` is the serving model and its item ids; `previous` the trainable form the candidate
    warm-starts from (None: from scratch). Returns the decision record (plain JSON) and the
    candidate (trained on the events before the window only). `serving_until`: the newest event the
    serving model learned from, if known; the window starts after it (see cutoff_time)."""
    import time

    cutoff = cutoff_time(data, cfg, serving_until)
    window = split_at(data, cutoff, cfg.max_window_targets, cfg.seed)
    if not len(window.targets):
        raise ConfigError(
            f"the held-out window (from {window.describe()['cutoff_utc']}) has no events with a history; "
            "widen it with --window-days / --window-frac"
        )
    t0 = time.perf_counter()
    warm = previous if cfg.warm_start else None
    candidate = fit_recipe(model, params, window.train, content, warm, trainer)
    fit_s = time.perf_counter() - t0
    cand_ranks = window_ranks(candidate, list(data.item_ids), data, window)
    served_model, served_ids = serving
    serv_ranks = window_ranks(served_model, served_ids, data, window)
    cand, serv = metrics_of(cand_ranks, data.n_items), metrics_of(serv_ranks, len(served_ids))
    promoted, reason = decide(cand, serv, cfg.margin)
    report = candidate.training_report() or {}
    return {
        "kind": "retrain-gate",
        "model": model,
        "protocol": PROTOCOL,
        "window": {**window.describe(), "clipped_to_serving_data": cutoff != _base_cutoff(data, cfg)},
        "serving_data_until": serving_until,
        "serving_saw_window": None if not serving_until else bool(serving_until >= cutoff),
        "candidate": cand,
        "serving": serv,
        "margin": cfg.margin,
        "difference": paired_difference(cand_ranks, serv_ranks),
        "promoted": promoted,
        "reason": reason,
        "warm_start": report.get("warm_start") if warm is not None else None,
        "candidate_epochs": report.get("epoch"),
        "time": {"candidate_fit_s": round(fit_s, 1), "gate_s": round(time.perf_counter() - t0, 1)},
    }, candidate
