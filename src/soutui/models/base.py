"""The one small contract every recommender implements.

In the spirit of implicit / scikit-learn: `__init__` stores parameters, `fit`
learns (state ends in `_`) and returns self. Models score a *history* (a sequence
of item indices), not a user id, so the same call serves offline evaluation, new
users and real-time updates after fresh events.

One signature for every model, so callers never ask which model they hold:
`fit(train, valid=None, *, content=None)` (item content any model may use or ignore)
and `score(histories, timestamps=None)` (event times any model may use or ignore).
Models that learn with the shared epoch loop get it through `use_trainer` (see
soutui.models.fitting for why it is injected).
"""

from __future__ import annotations

import contextlib
import json
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Self

import numpy as np

from soutui.config import ConfigError
from soutui.data.sequences import EvalSplit, SequenceData
from soutui.features.content import ItemContent
from soutui.models.attribution import Attribution, history_attributions, history_weights
from soutui.models.fitting import BatchFn, PartsFn, TrainConfig, TrainOutcome

if TYPE_CHECKING:
    import torch


class Trainer(Protocol):
    """The training layer as a model sees it (implemented by soutui.training.trainer.LoopTrainer;
    why it is injected: see soutui.models.fitting)."""

    def train(
        self,
        model: Recommender,
        net: torch.nn.Module,
        batches: BatchFn,
        n_batches: int,
        cfg: TrainConfig,
        valid: EvalSplit | None,
        *,
        spent_s: float = 0.0,
        after_validations: float = 0.0,
    ) -> TrainOutcome:
        """Train `net` in place with the one epoch loop; early-stop on `valid` NDCG@10 of
        `model.score` (full ranking, pessimistic ties) and leave the best weights in `net`.

        `cfg.max_minutes` caps the whole fit: `spent_s` seconds the fit spent before the loop,
        and `after_validations` validation-sized passes it runs after, are kept within it."""
        ...

    def validate(self, model: Recommender, valid: EvalSplit) -> float:
        """Validation NDCG@10 of `model` as it scores now (full ranking, pessimistic ties)."""
        ...

    def blend_weights(
        self, parts: PartsFn, valid: EvalSplit, weights: Sequence[float]
    ) -> list[dict[float, float]]:
        """Validation NDCG@10 of base + w * extra for every candidate extra and weight w (one
        table per extra; scored once, blended cheaply)."""
        ...


def missing_trainer(model_name: str) -> RuntimeError:
    return RuntimeError(
        f"{model_name}.fit needs a trainer (the epoch loop lives in soutui.training): call "
        "model.use_trainer(soutui.training.trainer.LoopTrainer()) first, or train with `soutui train`"
    )


class CandidateScorer(Protocol):
    """A model whose score is a dense inner product `query . index_vectors()[i]` plus sparse terms
    that touch only a few "near" items per history (e.g. SASRec's seen bias and co-occurrence
    head): an item outside them scores exactly its inner product."""

    def index_vectors(self) -> np.ndarray:
        """(I, E) float32 rows an inner-product index is built over."""
        ...

    def encode(
        self, histories: Sequence[np.ndarray], timestamps: Sequence[np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(queries (B, E), near items (B, M) as catalogue indices or -1, their exact scores (B, M))."""
        ...


class Recommender(ABC):
    """Base class: subclasses implement `fit`, `score`, `_save_state`, `_load_state`."""

    name: ClassVar[str] = "base"
    # settings `variant` accepts (e.g. SASRec: head_weight); empty = the model has no variants
    VARIANTS: ClassVar[dict[str, str]] = {}
    # time-budget parameters of a model trained in epochs (empty: no epoch loop); `refit` zeroes
    # them and trains the validated fit's epoch count instead
    BUDGETS: ClassVar[tuple[str, ...]] = ()

    n_items_: int
    trainer: Trainer | None = None  # set with use_trainer; only models with an epoch loop read it

    @abstractmethod
    def fit(
        self, train: SequenceData, valid: EvalSplit | None = None, *, content: ItemContent | None = None
    ) -> Self:
        """Learn from training sequences; `valid` may be used for early stopping and choices
        made on validation only; `content` rows are aligned with `train.item_ids`."""

    @abstractmethod
    def score(
        self, histories: Sequence[np.ndarray], timestamps: Sequence[np.ndarray] | None = None
    ) -> np.ndarray:
        """Scores over all items, shape (len(histories), n_items); higher is better.

        `timestamps` (unix seconds, aligned with each history) feed time-aware models."""

    def params(self) -> dict[str, Any]:
        """Constructor parameters, saved with the model so it can rebuild itself."""
        return {}

    def use_trainer(self, trainer: Trainer) -> Self:
        """Inject the training layer (epoch loop, validation); models without a loop ignore it."""
        self.trainer = trainer
        return self

    def warm_start(self, previous: Recommender) -> Self:
        """Let the next `fit` start from `previous`, a fitted model of the same kind whose item
        vocabulary may be older (a retrain after new events and new items). Default: nothing to
        carry over (a model without learned weights refits as fast as it would warm-start)."""
        return self

    def refit(
        self, data: SequenceData, *, content: ItemContent | None = None, previous: Recommender | None = None
    ) -> Self:
        """This model's recipe fitted again on every interaction of `data` (through each user's
        newest), with what its validated fit chose kept, for serving: nothing is validated.

        A fit that early-stops on each user's last event never learns that event, the newest and
        most telling one (docs/sasrec.md, "Refitting for serving"). Default: a new model with this
        one's parameters, and for a model with an epoch loop as many epochs as the validated fit
        kept and no time budget; warm-started from `previous` when given; `content` as in `fit`.
        A model that chose more on validation carries it over in `_refit_params` and `_carry_choices`."""
        new = type(self)(**self._refit_params(data))
        if self.trainer is not None:
            new.use_trainer(self.trainer)
        if previous is not None:
            new.warm_start(previous)
        new.fit(data, None, content=content)
        self._carry_choices(new, data)
        return new

    def _refit_params(self, data: SequenceData) -> dict[str, Any]:
        """`params()` for a refit on `data`: the validated fit's epoch count (`best_epoch`, else every
        epoch it ran) and no time budget. A DP-SGD fit is refused: a second fit is outside its accounting."""
        return self._epoch_params(self.training_report() or {})

    def _epoch_params(self, report: dict[str, Any]) -> dict[str, Any]:
        """`params()` with the epoch count and budgets of the fit `report` describes (see `_refit_params`)."""
        if report.get("privacy"):
            raise ConfigError(f"{self.name}: a DP-SGD model cannot be refitted outside its privacy "
                              "accounting; serve it as trained")  # fmt: skip
        params = self.params()
        if self.BUDGETS:  # trained in epochs
            best = int(report.get("best_epoch", -1))
            epochs = best if best > 0 else int(report.get("epoch", 0))
            if epochs <= 0:
                raise ValueError(f"{self.name}: this model has no record of its training epochs "
                                 "(training.json); train it with `soutui train` before refitting it")  # fmt: skip
            params.update({"epochs": epochs, **{k: 0.0 for k in self.BUDGETS}})
        return params

    def _carry_choices(self, new: Self, data: SequenceData) -> None:
        """Copy onto `new` (just refitted on `data`) what this model chose after its fit, on
        validation, that a fit without validation does not choose again. Default: nothing."""
        return None

    def _trainer(self) -> Trainer:
        if self.trainer is None:
            raise missing_trainer(type(self).__name__)
        return self.trainer

    def export_served(self, path: str | Path) -> Path | None:
        """Write the model's torch-free served form into `path` (beside `save`), if it has one."""
        return None

    def training_report(self) -> dict[str, Any] | None:
        """What the last fit's training loop reported (epochs, best validation metric, ...), if any."""
        return None

    def recommend(
        self,
        history: np.ndarray,
        k: int = 10,
        exclude: np.ndarray | None = None,
        timestamps: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (item indices, scores) for one history; `exclude` items are never returned."""
        ts = None if timestamps is None else [np.asarray(timestamps)]
        scores = self.score([np.asarray(history, dtype=np.int64)], ts)[0].astype(np.float64)
        if exclude is not None and len(exclude):
            scores[np.asarray(exclude, dtype=np.int64)] = -np.inf
        return top_k(scores, k)

    @contextlib.contextmanager
    def variant(self, **settings: float) -> Iterator[Self]:
        """Score as a variant of this model inside the block (e.g. SASRec `head_weight=0`: the
        transformer without its co-occurrence head), restored on exit. Settings the model does
        not list in VARIANTS are a ConfigError (a user can ask for them from the CLI)."""
        unknown = sorted(set(settings) - set(self.VARIANTS))
        if unknown:
            offer = ", ".join(f"{k} ({v})" for k, v in self.VARIANTS.items()) or "none"
            raise ConfigError(
                f"model {self.name!r} has no variant setting {', '.join(unknown)}; it supports: {offer}"
            )
        with self._variant(settings):
            yield self

    def _variant(self, settings: dict[str, float]) -> contextlib.AbstractContextManager[None]:
        """Apply `settings` (keys already checked against VARIANTS) for the block."""
        return contextlib.nullcontext()

    def ablations(self) -> dict[str, dict[str, float]]:
        """Named variants worth reporting beside the model itself (name -> `variant` settings),
        e.g. SASRec's {"transformer_alone": {"head_weight": 0.0}}; evaluated by `soutui train`."""
        return {}

    def item_affinity(self, items: np.ndarray, history: np.ndarray) -> np.ndarray:
        """(len(items), len(history)): how much each history item raises each item's score in
        this model's own terms (<= 0: no link), so an explanation can name the history item
        behind a recommendation. Default: the score lift of a one-item history over an empty
        one (0 for a model that ignores history); models with a cheaper exact form override it."""
        probes = [np.array([h], np.int64) for h in np.asarray(history).tolist()] + [np.zeros(0, np.int64)]
        s = np.asarray(self.score(probes), np.float64)[:, np.asarray(items, np.int64)]  # (h + 1, k)
        return (s[:-1] - s[-1]).T

    def attribute(
        self,
        history: np.ndarray,
        items: np.ndarray,
        timestamps: np.ndarray | None = None,
        *,
        method: str = "occlusion",
    ) -> list[list[Attribution]]:
        """Why each of `items` scores as it does after `history`: one list per item, a
        `history_item` attribution per history position (strongest first), then whatever
        else the model can attribute (e.g. `content`). Default, for any model: occlusion or
        LIME over history subsets (soutui.models.attribution); models with an exact additive
        form or item content override or extend it."""
        return history_attributions(history_weights(self, history, items, timestamps, method), history)

    def item_vectors(self) -> np.ndarray | None:
        """Item embeddings (I, D) if the model has them; used for similar items and ANN."""
        return None

    def candidate_scorer(self) -> CandidateScorer | None:
        """The model's scores split for an inner-product index, so a large catalogue is scored
        on retrieved candidates only (soutui.serving.ann); None: score every item."""
        return None

    def similar_items(self, item: int, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Items most similar to `item` (never `item` itself).

        Default: cosine over item_vectors() if the model has them, else the items
        this model recommends after a history of just `item`.
        """
        vecs = self.item_vectors()
        if vecs is not None:
            v = vecs / (np.linalg.norm(vecs, axis=1, keepdims=True) + 1e-12)
            scores = (v @ v[item]).astype(np.float64)
        else:
            scores = self.score([np.array([item], dtype=np.int64)])[0].astype(np.float64)
        scores[item] = -np.inf
        return top_k(scores, k)

    # --- persistence -------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write a self-describing directory: model.json (class, params) + state files."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        meta = {"model": self.name, "params": self.params(), "n_items": self.n_items_}
        (path / "model.json").write_text(json.dumps(meta, indent=2))
        self._save_state(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Self:
        path = Path(path)
        meta = json.loads((path / "model.json").read_text())
        if meta["model"] != cls.name:
            raise ValueError(f"{path} holds a {meta['model']!r} model, not {cls.name!r}")
        model = cls(**meta["params"])
        model.n_items_ = int(meta["n_items"])
        model._load_state(path)
        return model

    @abstractmethod
    def _save_state(self, path: Path) -> None: ...

    @abstractmethod
    def _load_state(self, path: Path) -> None: ...


def top_k(scores: np.ndarray, k: int, block: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the k largest finite scores, best first; equal scores go to the
    lower index (also at the k-th place, so the answer is deterministic).

    For small k on a long vector (a request's scores over the catalogue) it looks only at the
    k blocks of `block` scores with the highest maxima: any block holding one of the k best
    has a maximum no lower than the k-th best block maximum (else k larger scores would exist
    elsewhere). That skips a full partition of the catalogue per request.
    """
    scores = np.asarray(scores)
    n = len(scores)
    if k <= 0 or n == 0:
        return np.zeros(0, np.int64), np.zeros(0)
    cand = _top_candidates(scores, k, block)
    vals = scores[cand]
    finite = np.isfinite(vals)
    cand, vals = cand[finite], vals[finite]
    order = np.lexsort((cand, -vals))[:k]
    return cand[order].astype(np.int64), vals[order]


def _top_candidates(scores: np.ndarray, k: int, block: int) -> np.ndarray:
    """Indices that surely include the k largest finite scores (and every score tied with the k-th)."""
    n = len(scores)
    n_blocks = n // block
    if n_blocks <= 2 * k:
        return np.arange(n)
    head = scores[: n_blocks * block].reshape(n_blocks, block)
    bmax = head.max(axis=1)  # (n_blocks,)
    if np.isnan(bmax).any() or np.isposinf(bmax).any():  # a NaN / +inf must not stand for its block
        bmax = np.where(np.isfinite(head), head, -np.inf).max(axis=1)
    kth = np.partition(bmax, n_blocks - k)[n_blocks - k]
    chosen = np.flatnonzero(bmax >= kth)
    idx = (chosen[:, None] * block + np.arange(block)[None, :]).ravel()
    return np.concatenate([idx, np.arange(n_blocks * block, n)])
