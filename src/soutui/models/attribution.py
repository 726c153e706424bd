"""Attributions: how much each history item (or item content, or search feature) adds to one score.

Generic for ANY `Recommender`, because all three methods only call `score`:

- **occlusion** (the default): weight of history position j = score(item | history) -
  score(item | history without position j). Every history item and every explained item
  come from ONE batched `score` call of len(history) + 1 histories, so explaining a whole
  result list costs one pass.
- **counterfactual**: weight of position j = how much of the item's *lead* removing j takes away,
  the lead being its score minus the best score among the items that are neither explained nor
  in the history (the best one left out; re-chosen after the removal). It answers "would this
  still be recommended without j?", the counterfactual explanation of PRINCE (Ghazimatin et al.,
  WSDM 2020) and ACCENT (Tran et al., CIKM 2021) for single actions: a weight above the lead
  means that removing j alone lets another item overtake it. Occlusion explains the item's
  score; this explains its place in the ranking, which a removal that lowers every score alike
  does not move, and one that raises a competitor does. Same single batched `score` call.
- **lime**: LIME's local surrogate (`lime.lime_base.LimeBase`, the `[explain]` extra) fitted
  over random subsets of the history: each sample keeps each history item with probability
  1/2, samples are weighted by LIME's exponential kernel on the cosine distance to the full
  history (its text explainer's choice: distance x 100, width 25), and the surrogate's ridge
  coefficients are the weights. Subsets keep the history's order, so sequential models see
  a real (shorter) sequence.

Models add their own terms through `Recommender.attribute`: ItemKNN returns its exact
additive neighbour evidence; SASRec and the MLP add the content side (`content_lift`: the
score lost when title vectors, attribute vectors or ID embeddings are switched off).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

Kind = Literal["history_item", "feature", "content"]
METHODS: tuple[str, ...] = ("occlusion", "counterfactual", "lime")
LIME_SAMPLES = 256
LIME_KERNEL_WIDTH = 25.0  # lime.lime_text's default, on cosine distance x 100


class Scorer(Protocol):
    """What attribution needs of a model: `Recommender.score` (this module sits below base.py)."""

    def score(
        self, histories: Sequence[np.ndarray], timestamps: Sequence[np.ndarray] | None = None
    ) -> np.ndarray: ...


@dataclass(frozen=True)
class Attribution:
    """One contribution to one result's score (in the model's own score units).

    `item` / `position` locate a history item (index in the model's item vocabulary,
    position in the history, 0 = oldest); callers turn them into readable names."""

    kind: Kind
    name: str
    weight: float
    item: int | None = None
    position: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "weight": float(self.weight)}


def check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown attribution method {method!r}; choose one of {METHODS}")


def _subset(
    history: np.ndarray, timestamps: np.ndarray | None, keep: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None]:
    return history[keep], None if timestamps is None else timestamps[keep]


def _score_subsets(
    model: Scorer, history: np.ndarray, timestamps: np.ndarray | None, masks: np.ndarray, items: np.ndarray | None
) -> np.ndarray:
    """(len(masks), len(items)) scores of `items` (every item if None) after each kept subset of the
    history (order kept)."""
    parts = [_subset(history, timestamps, m) for m in masks.astype(bool)]
    hists = [p[0] for p in parts]
    times = None if timestamps is None else [np.asarray(p[1]) for p in parts]
    s = np.asarray(model.score(hists, times), np.float64)
    return s if items is None else s[:, items]


def _leave_one_out_scores(
    model: Scorer, history: np.ndarray, timestamps: np.ndarray | None, items: np.ndarray | None
) -> np.ndarray:
    """(h + 1, len(items)) scores: row j without history position j, the last row with all of it."""
    h = len(history)
    masks = np.ones((h + 1, h), bool)
    masks[np.arange(h), np.arange(h)] = False
    return _score_subsets(model, history, None if timestamps is None else np.asarray(timestamps), masks, items)


def occlusion(
    model: Scorer, history: np.ndarray, items: np.ndarray, timestamps: np.ndarray | None = None
) -> np.ndarray:
    """(len(items), len(history)) score drop of each item when each history position is removed."""
    history, items = np.asarray(history, np.int64), np.asarray(items, np.int64)
    s = _leave_one_out_scores(model, history, timestamps, items)
    return (s[-1][None, :] - s[:-1]).T


def leads(scores: np.ndarray, items: np.ndarray, history: np.ndarray) -> np.ndarray:
    """(rows, len(items)) each item's score minus the best score among items neither in `items` nor
    in `history` (0 where no such item is left: nothing to overtake it)."""
    others = np.array(scores, np.float64)
    others[:, np.concatenate([items, history])] = -np.inf
    best = others.max(1, keepdims=True)
    return np.asarray(scores[:, items] - np.where(np.isfinite(best), best, scores[:, items]))


def counterfactual(
    model: Scorer, history: np.ndarray, items: np.ndarray, timestamps: np.ndarray | None = None
) -> np.ndarray:
    """(len(items), len(history)) drop of each item's lead over the best item left out when each
    history position is removed (see the module docstring)."""
    history, items = np.asarray(history, np.int64), np.asarray(items, np.int64)
    lead = leads(_leave_one_out_scores(model, history, timestamps, None), items, history)
    return (lead[-1][None, :] - lead[:-1]).T


def lime_masks(h: int, n_samples: int, seed: int) -> np.ndarray:
    """(n_samples, h) random keep-masks, the full history first (LIME's own first sample)."""
    rng = np.random.default_rng(seed)
    masks = rng.random((n_samples, h)) < 0.5
    masks[0] = True
    return masks


def lime(
    model: Scorer,
    history: np.ndarray,
    items: np.ndarray,
    timestamps: np.ndarray | None = None,
    n_samples: int = LIME_SAMPLES,
    seed: int = 0,
) -> np.ndarray:
    """(len(items), len(history)) LIME surrogate weights (see the module docstring)."""
    try:
        from lime.lime_base import LimeBase
    except ModuleNotFoundError as exc:  # pragma: no cover - depends on the install
        raise ModuleNotFoundError(
            "LIME attributions need the lime package: pip install 'soutui[explain]'", name=exc.name
        ) from exc
    history, items = np.asarray(history, np.int64), np.asarray(items, np.int64)
    h = len(history)
    out = np.zeros((len(items), h))
    if h == 0:
        return out
    masks = lime_masks(h, n_samples, seed)
    s = _score_subsets(model, history, None if timestamps is None else np.asarray(timestamps), masks, items)
    z = masks.astype(np.float64)
    cos = z.sum(1) / (np.sqrt(np.maximum(z.sum(1), 1e-12)) * np.sqrt(h))  # cosine to the all-ones row
    distances = (1.0 - cos) * 100.0

    def kernel(d: np.ndarray) -> np.ndarray:
        return np.asarray(np.sqrt(np.exp(-(d**2) / LIME_KERNEL_WIDTH**2)))

    base = LimeBase(kernel, random_state=seed)
    for col in range(len(items)):
        _, weights, _, _ = base.explain_instance_with_data(z, s, distances, col, h, feature_selection="none")
        for feature, w in weights:
            out[col, int(feature)] = w
    return out


def history_weights(
    model: Scorer,
    history: np.ndarray,
    items: np.ndarray,
    timestamps: np.ndarray | None = None,
    method: str = "occlusion",
) -> np.ndarray:
    """(len(items), len(history)) by `method` (occlusion, counterfactual or lime)."""
    check_method(method)
    if method == "lime":
        return lime(model, history, items, timestamps)
    if method == "counterfactual":
        return counterfactual(model, history, items, timestamps)
    return occlusion(model, history, items, timestamps)


def history_attributions(weights: np.ndarray, history: np.ndarray) -> list[list[Attribution]]:
    """One list per explained item: a `history_item` attribution per history position, strongest first."""
    history = np.asarray(history, np.int64)
    out = []
    for row in np.asarray(weights, np.float64):
        attrs = [
            Attribution("history_item", f"item {int(history[j])}", float(row[j]), int(history[j]), j)
            for j in range(len(history))
        ]
        out.append(sorted(attrs, key=lambda a: -abs(a.weight)))
    return out


@contextlib.contextmanager
def zeroed(tensors: Sequence[Any]) -> Iterator[None]:
    """Temporarily set parameters / buffers to zero in place (torch tensors; duck-typed so this
    module needs no torch), restored exactly on exit."""
    kept = [t.detach().clone() for t in tensors]
    try:
        for t in tensors:
            t.data.zero_()
        yield
    finally:
        for t, k in zip(tensors, kept, strict=True):
            t.data.copy_(k)


def content_lift(
    model: Scorer,
    history: np.ndarray,
    items: np.ndarray,
    timestamps: np.ndarray | None,
    parts: dict[str, Callable[[], contextlib.AbstractContextManager[None]]],
) -> list[list[Attribution]]:
    """For each item, a `content` attribution per part: the score lost when that part is switched
    off inside `parts[name]()` (e.g. title vectors zeroed), everything else unchanged."""
    items = np.asarray(items, np.int64)
    hist = [np.asarray(history, np.int64)]
    ts = None if timestamps is None else [np.asarray(timestamps)]
    full = np.asarray(model.score(hist, ts), np.float64)[0, items]
    lifts: dict[str, np.ndarray] = {}
    for name, off in parts.items():
        with off():
            lifts[name] = full - np.asarray(model.score(hist, ts), np.float64)[0, items]
    return [
        [Attribution("content", name, float(v[k])) for name, v in lifts.items()] for k in range(len(items))
    ]


def strongest(attrs: list[Attribution], kind: Kind | None = None) -> Attribution | None:
    """The attribution with the largest positive weight (of `kind`), or None if none is positive."""
    pool = [a for a in attrs if (kind is None or a.kind == kind) and a.weight > 0]
    return max(pool, key=lambda a: a.weight) if pool else None
