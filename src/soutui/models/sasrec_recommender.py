"""The `Recommender` wrapper around the SASRec network: batching, fit, scoring and checkpoints.

Parameters are one flat dict (so `--set key=value` works) split into three typed
groups: the network (`SASRecConfig`), optimisation (`TrainConfig`) and content use
(`ContentConfig`). Unknown keys fail loudly. Item content (title embeddings,
attribute ids) comes in through `fit(..., content=)` and is saved in the checkpoint,
so a loaded model needs nothing else to score. The epoch loop, early stopping and every
choice made on validation run in the injected trainer (soutui.models.fitting).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch

from soutui.config import ConfigError, from_dict
from soutui.data.sequences import EvalSplit, SequenceData
from soutui.features.content import ItemContent
from soutui.models.attribution import Attribution, content_lift, zeroed
from soutui.models.base import Recommender
from soutui.models.fitting import Batch, TrainOutcome, pick_device, poisson_user_batches
from soutui.models.itemknn import ItemKNN
from soutui.models.private_cooc import install_private_head
from soutui.models.sasrec import SASRec, SASRecConfig, check_objective
from soutui.models.sasrec_features import attribute_table, pad_left, pad_times, training_windows
from soutui.models.sasrec_onnx import export_onnx
from soutui.models.sasrec_params import (
    COOC_NOTE,
    DERIVED,
    DP_HEAD,
    DP_OFF,
    ContentConfig,
    head_weight_warning,
    split_params,
)
from soutui.models.sasrec_session import SessionHead, choose_session_head
from soutui.models.sasrec_warm import reset_cold_items, warm_start_net
from soutui.models.sknn import SessionKNN

__all__ = ["DERIVED", "ContentConfig", "SASRecRecommender", "head_weight_warning", "split_params"]


def _dated(data: SequenceData) -> bool:
    """Whether the sequences carry event times (files without times load as all zeros)."""
    return data.timestamps is not None and any(len(t) and int(np.max(t)) > 0 for t in data.timestamps)



class SASRecRecommender(Recommender):
    """Content-aware causal transformer; see soutui.models.sasrec for the network."""

    name = "sasrec"
    VARIANTS = {"head_weight": "co-occurrence head weight; 0 = the transformer alone"}
    BUDGETS = ("max_minutes", "max_cpu_minutes")

    def __init__(self, **params: Any):
        self.net_cfg, self.train_cfg, self.content_cfg = split_params(params)
        check_objective(self.net_cfg)
        self._params = dict(params)
        self.net_: SASRec | None = None
        self.training_: TrainOutcome | None = None
        self.item_ids_: np.ndarray | None = None
        self.cold_reset_valid_: tuple[float, float] | None = None  # valid NDCG@10 before/after
        self.cooc_valid_: dict[float, float] | None = None  # head weight -> valid NDCG@10 (chosen half-life)
        self.half_life_valid_: dict[float, float] | None = None  # head half-life -> its best valid NDCG@10
        self.content_used_: dict[str, bool] | None = None  # which item content the fit fed the network
        self.warm_from_: SASRecRecommender | None = None  # set by warm_start: the next fit starts from it
        self.warm_report_: dict[str, Any] | None = None  # what the warm start carried over
        self.saved_report_: dict[str, Any] = {}  # a loaded checkpoint's training.json (what its fit chose)
        self.session_: SessionHead | None = None  # the optional session head (content_cfg.session_neighbors)
        self.recent_tune_: dict[str, Any] | None = None  # set by tune_recent: what the fine-tune saw
        self.private_head_: dict[str, Any] | None = None  # DP mode: the private head's release record

    def params(self) -> dict[str, Any]:
        return dict(self._params)

    def training_report(self) -> dict[str, Any] | None:
        if self.training_ is None:
            return None
        info = self.training_.as_dict()
        info["content_used"] = self.content_used_
        info["cooc_distill"] = self._net().distill_weight()  # 0 where it does not apply
        if info.get("privacy"):
            info["privacy"]["off_in_dp_mode"] = [p for p in DP_OFF if not (self.private_head_ and p == DP_HEAD)]
            info["privacy"]["head"] = self.private_head_ or "off"
        if self.warm_report_ is not None:
            info["warm_start"] = self.warm_report_
        if self.cold_reset_valid_ is not None:
            info["cold_reset_valid"] = list(self.cold_reset_valid_)
        if self.cooc_valid_ is not None:
            chosen = float(self._net().cooc_alpha)
            info["head_weight"] = chosen
            info["head_half_life"] = float(self._net().cfg.cooc_half_life)
            info["cooc_valid"] = {"note": COOC_NOTE, "ndcg10_by_weight": self.cooc_valid_,
                                  "best_ndcg10_by_half_life": self.half_life_valid_}  # fmt: skip
            info["transformer_alone_valid_ndcg10"] = self.cooc_valid_.get(0.0)
            warning = head_weight_warning(self.cooc_valid_, chosen)
            info["warnings"] = [warning] if warning else []
        if self.session_ is not None:
            info["session_head"] = self.session_.report()
        if self.recent_tune_ is not None:
            info["recent_tune"] = self.recent_tune_
        return info

    def ablations(self) -> dict[str, dict[str, float]]:
        net = self._net()
        if net.cooc_idx is None or float(net.cooc_alpha) == 0.0:
            return {}
        return {"transformer_alone": {"head_weight": 0.0}}

    def _variant(self, settings: dict[str, float]) -> contextlib.AbstractContextManager[None]:
        if "head_weight" not in settings:
            return contextlib.nullcontext()
        weight = float(settings["head_weight"])
        if weight != 0.0 and self._net().cooc_idx is None:
            raise ConfigError(
                "this sasrec model has no co-occurrence head (cooc_neighbors=0): only head_weight=0"
            )
        return self.cooc_weight(weight)

    # --- building -----------------------------------------------------------------------
    def _build(self, n_items: int, content: ItemContent) -> SASRec:
        cfg = dataclasses.replace(self.net_cfg, n_items=n_items, dense_loss=self.train_cfg.private)
        text = content.text if self.content_cfg.use_text else None
        attrs = content.attributes if self.content_cfg.use_attrs else None
        table = None
        if text is not None:
            cfg.text_dim = text.shape[1]
        if attrs is not None:
            table, cfg.n_attrs = attribute_table(attrs)
            cfg.attrs_per_item = table.shape[1] if cfg.n_attrs else 0
        if not cfg.item_ids and text is None and not cfg.n_attrs:
            raise ConfigError("item_ids=false needs title vectors or attributes to represent items: give the "
                              "dataset titles (and an encoder) or attributes, or keep item_ids=true")  # fmt: skip
        net = SASRec(cfg)
        if text is not None and net.items.text is not None:
            net.items.text[1:] = torch.from_numpy(np.asarray(text, dtype=np.float32))
        if table is not None and cfg.n_attrs and net.items.attrs is not None:
            net.items.attrs.copy_(torch.from_numpy(table))
        return net

    def warm_start(self, previous: Recommender) -> Self:
        """The next fit starts from `previous` (a fitted SASRec, e.g. the serving bundle's): weights
        copied, item rows matched by id, new items content-initialised (soutui.models.sasrec_warm)."""
        if not isinstance(previous, SASRecRecommender) or previous.net_ is None or previous.item_ids_ is None:
            raise ConfigError(
                f"sasrec can only warm-start from a fitted sasrec checkpoint with items.json, not {previous.name!r}"
            )
        self.warm_from_ = previous
        return self

    # --- training -----------------------------------------------------------------------
    def _batches(self, train: SequenceData) -> tuple[Any, int]:
        L = self.net_cfg.max_len
        xs, ys, users = training_windows(train.sequences, L)
        use_ts = self.net_cfg.use_time and self.content_cfg.use_timestamps and train.timestamps is not None
        tss = (
            [np.asarray(train.timestamps[u])[-(L + 1) : -1] for u in users]
            if use_ts and train.timestamps
            else None
        )
        lengths = np.array([len(x) for x in xs])
        bs = self.train_cfg.batch_size

        def rows(idx: np.ndarray, rng: np.random.Generator | None = None) -> Batch:
            seq = pad_left([xs[i] for i in idx], L)
            tgt = pad_left([ys[i] for i in idx], L, width=seq.shape[1])
            ts = pad_times([tss[i] for i in idx], seq.shape[1]) if tss is not None else None
            return seq, tgt, ts

        if self.train_cfg.private:  # one row per user (its last max_len + 1 items), users Poisson-drawn
            return poisson_user_batches(len(xs), bs, rows)

        def gen(rng: np.random.Generator) -> Iterator[Batch]:
            order = rng.permutation(len(xs))
            # sort inside chunks of 50 batches by length so padding stays small, then shuffle batches
            chunks = [order[i : i + 50 * bs] for i in range(0, len(order), 50 * bs)]
            batches = []
            for c in chunks:
                c = c[np.argsort(lengths[c], kind="stable")]
                batches += [c[i : i + bs] for i in range(0, len(c), bs)]
            for bi in rng.permutation(len(batches)):
                yield rows(batches[bi])

        return gen, (len(xs) + bs - 1) // bs

    def fit(
        self, train: SequenceData, valid: EvalSplit | None = None, *, content: ItemContent | None = None
    ) -> Self:
        """Train with early stopping on validation NDCG@10 (full ranking, history not excluded),
        then make the two choices read on validation: the cold-item reset and the head weight."""
        started = time.perf_counter()
        trainer = self._trainer()
        content = (content or ItemContent()).check(train.n_items)
        private = self._check_private()
        torch.manual_seed(self.train_cfg.seed)
        self.n_items_ = train.n_items
        self.item_ids_ = np.asarray(train.item_ids)
        self.session_ = None
        self.net_ = self._build(train.n_items, content)
        self.content_used_ = self._content_used(content, train)
        counts = np.bincount(
            np.concatenate(train.sequences) if train.sequences else np.zeros(0, np.int64),
            minlength=train.n_items,
        )
        pop = torch.from_numpy(np.log((counts + 1.0) / (counts + 1.0).sum())).float()
        self.net_.logq[1:] = pop  # sampling distribution for sampled softmax
        if self.net_.bias is not None and not private:
            # start from the popularity prior: scores are divided by the temperature, so the bias is
            # multiplied by it, and the prior the scores start from is log popularity at any temperature
            self.net_.bias.data[1:] = (pop - pop.mean()) * self.net_.cfg.temperature
        if self.warm_from_ is not None:  # keep what the previous model learned (soutui.models.sasrec_warm)
            if private:
                raise ConfigError(
                    "sasrec: a DP-SGD fit cannot warm-start from a model trained outside its privacy "
                    "accounting; retrain from scratch (soutui retrain --cold)"
                )
            prev, old_ids = self.warm_from_, self.warm_from_.item_ids_
            assert old_ids is not None  # checked by warm_start
            self.warm_report_ = warm_start_net(self.net_, prev._net(), list(old_ids), list(train.item_ids))
        gen, n_batches = self._batches(train)
        vsplit = None if private else self._valid_sample(valid)
        if self.net_.cooc_idx is not None and not private:
            self._install_neighbours(train)
        cfg, self.private_head_ = self.train_cfg, None
        if private and self.net_.cooc_idx is not None and self.content_cfg.dp_head > 0:
            self.private_head_ = install_private_head(self.net_, train, content.text, self.content_cfg.dp_head * cfg.dp_epsilon,
                                                      cfg.dp_delta, self.content_cfg.dp_head_weight)  # fmt: skip
            cfg = dataclasses.replace(cfg, dp_spent=tuple(map(tuple, self.private_head_["history"])))
        n = self.content_cfg.session_neighbors
        knn = SessionKNN(neighbors=n).fit(train) if n > 0 and vsplit is not None else None
        choices_s = self._choices_seconds(vsplit, knn)  # the time budget keeps them inside it
        self.training_ = outcome = trainer.train(
            self, self.net_, gen, n_batches, cfg, vsplit,
            spent_s=time.perf_counter() - started + choices_s, after_validations=self._after_validations(counts),
        )  # fmt: skip
        self.net_.to("cpu").eval()
        if self.content_cfg.cold_item_reset and outcome.stopped and not private:
            before = {k: v.clone() for k, v in self.net_.state_dict().items()}
            if reset_cold_items(self.net_, counts) and vsplit is not None:
                # a choice made on VALIDATION only: keep the reset unless it lowers NDCG@10
                after = trainer.validate(self, vsplit)
                self.cold_reset_valid_ = (outcome.best_metric, after)
                if after < outcome.best_metric:
                    self.net_.load_state_dict(before)
        if outcome.stopped and not private:
            self._choose_heads(train, vsplit, knn)
        return self

    def _choose_heads(self, train: SequenceData, vsplit: EvalSplit | None, knn: SessionKNN | None = None) -> None:
        """The heads' weights read on validation: the co-occurrence head's, then the session head's
        (`knn`, or one fitted on `train`, scored against the network and the first head)."""
        self.session_ = None
        if self._net().cooc_idx is not None:
            self._choose_head_weight(vsplit)
        if self.content_cfg.session_neighbors > 0 and vsplit is not None:
            knn = knn or SessionKNN(neighbors=self.content_cfg.session_neighbors).fit(train)
            self.session_ = choose_session_head(knn, self.score, self._trainer().blend_weights, vsplit)

    def refit_heads(self, data: SequenceData) -> Self:
        """Rebuild the heads that train nothing (the co-occurrence table and the session head's sessions)
        from `data`, in place, their weights and the network kept: seconds, where `refit` retrains. For
        events the network was not trained on, e.g. the newest sessions a time-based validation held
        out. Same item vocabulary. Refused for DP-SGD (the heads are off there) and for
        `graph_neighbors > 0`, whose item vectors read the table (use `refit`)."""
        net = self._net()
        self._check_refit_heads(data, "refit_heads")
        if net.cooc_idx is not None:
            self._install_neighbours(data)
        if self.session_ is not None:
            self.session_ = self.session_.refit(data)
        return self

    def _check_refit_heads(self, data: SequenceData, what: str) -> None:
        """Refuses a heads-only refit on `data` (see `refit_heads`), before any work is done."""
        if self.train_cfg.private:
            raise ConfigError("sasrec: a DP-SGD model has no co-occurrence or session head to refit")
        if self._net().cfg.graph_neighbors > 0:
            raise ConfigError("sasrec: graph_neighbors > 0 feeds the table into the item vectors; use refit")
        self._same_catalogue(data, what)

    def tune_recent(
        self, data: SequenceData, rows: Iterable[int], *, epochs: int = 6, lr: float = 6e-4,
        valid: EvalSplit | None = None, weights_from: SASRecRecommender | None = None,
    ) -> Self:  # fmt: skip
        """A copy of this model fine-tuned `epochs` at `lr` (cosine to 0) on the sequences `rows` of `data`
        alone (the newest ones: the caller knows the clock), warm-started from it, both heads rebuilt from
        all of `data`. Their weights are chosen again on `valid` when given, else kept from
        `weights_from` (default: this model). For a model whose validation held out the newest sessions:
        they and the latest trained ones then reach the network too (docs/sasrec.md, "Catching up on the
        newest sessions"). This model is left as it was."""
        self._check_refit_heads(data, "tune_recent")  # its heads are rebuilt that way: refused before the tune
        keep = {int(r) for r in rows}
        if not keep or min(keep) < 0 or max(keep) >= data.n_users:
            raise ValueError(f"tune_recent: rows must be a non-empty set of sequence positions in [0, {data.n_users})")
        sub = data.with_sequences([s if u in keep else s[:0] for u, s in enumerate(data.sequences)], None)
        base = self._refit_params(data)  # a refit of the tuned model is a refit of this one
        tuned = {**base, "epochs": int(epochs), "lr": float(lr), "cold_item_reset": False}
        new = type(self)(**tuned).use_trainer(self._trainer()).warm_start(self)
        new.fit(sub, None, content=self._own_content())
        new.recent_tune_ = {"sequences": len(keep), "events": int(sum(len(s) for s in sub.sequences)),
                            "epochs": int(epochs), "lr": float(lr), "base_refit_params": base}  # fmt: skip
        if valid is not None:  # the heads' weights chosen again, for the tuned network
            new.refit_heads(data)._choose_heads(data, valid)
            return new
        src = weights_from or self
        new._net().cooc_alpha.fill_(float(src._net().cooc_alpha))
        new._net().cfg.cooc_half_life = src._net().cfg.cooc_half_life
        new.session_, new.cooc_valid_ = src.session_, src.cooc_valid_
        return new.refit_heads(data)

    def refit(
        self, data: SequenceData, *, content: ItemContent | None = None, previous: Recommender | None = None
    ) -> Self:
        """The contract's refit (every interaction, the validated epoch count, nothing validated),
        with the rest of what that fit chose on validation kept: the head's weight and half-life,
        whether the cold-item reset stayed, and the session head's weight. Same item vocabulary;
        content defaults to this model's own (read back from its network)."""
        if self.train_cfg.private:
            raise ConfigError("sasrec: a DP-SGD model cannot be refitted outside its privacy accounting; "
                              "serve the checkpoint as trained")  # fmt: skip
        own = self._own_content() if content is None else content
        return super().refit(data, content=own, previous=previous)

    def _refit_params(self, data: SequenceData) -> dict[str, Any]:
        """The epoch count and budgets (a loaded checkpoint's from its training.json), the head's
        half-life, and the cold-item reset only if validation kept it."""
        net, report = self._net(), self.training_report() or self.saved_report_
        self._same_catalogue(data, "refit")
        if report.get("recent_tune"):
            return dict(report["recent_tune"]["base_refit_params"])
        params = {**self._epoch_params(report), "cooc_half_life": float(net.cfg.cooc_half_life)}
        reset = report.get("cold_reset_valid")
        if reset is not None and reset[1] < reset[0]:  # validation refused the reset: so does the refit
            params["cold_item_reset"] = False
        return params

    def _same_catalogue(self, data: SequenceData, what: str) -> None:
        if self.item_ids_ is not None and [str(x) for x in self.item_ids_] != [str(x) for x in data.item_ids]:
            raise ValueError(f"sasrec: {what} needs the catalogue the model was trained on (same items, same order)")

    def _carry_choices(self, new: Self, data: SequenceData) -> None:
        """The co-occurrence head's weight, and the session head refitted on `data` at its weight."""
        new._net().cooc_alpha.fill_(float(self._net().cooc_alpha))
        new.session_ = None if self.session_ is None else self.session_.refit(data)

    def _own_content(self) -> ItemContent:
        """The item content this network was built with (title vectors, attribute rows)."""
        items = self._net().items
        text = None if items.text is None else items.text[1:].numpy().copy()
        attrs = None
        if items.attrs is not None and self._net().cfg.n_attrs:
            attrs = [[int(a) for a in row if a > 0] for row in items.attrs[1:].tolist()]
        return ItemContent(text=text, attributes=attrs)

    def _check_private(self) -> bool:
        """Whether this fit is DP-SGD (then everything in DP_OFF stays off); refuses what it cannot
        make private: sampled softmax draws negatives from item popularity."""
        if self.train_cfg.private and self.net_cfg.loss != "full_ce":
            raise ConfigError("sasrec: dp_epsilon needs loss='full_ce' (sampled softmax draws by popularity)")
        return self.train_cfg.private

    def _content_used(self, content: ItemContent, train: SequenceData) -> dict[str, bool]:
        """Which item content the network is fed (for the run record)."""
        net = self._net()
        return {
            "titles": net.items.text_proj is not None,
            "attributes": net.items.attr_emb is not None,
            "time": bool(net.cfg.use_time and self.content_cfg.use_timestamps and _dated(train)),
        }

    def _after_validations(self, counts: np.ndarray) -> float:
        """Validation passes the fit runs after training besides the head-weight choices (timed apart,
        `_choices_seconds`): the cold-item reset check, when it can happen."""
        net = self._net()
        has_content = net.items.text_proj is not None or net.items.attr_emb is not None
        return float(self.content_cfg.cold_item_reset and has_content and bool((counts == 0).any()))

    def _choices_seconds(self, vsplit: EvalSplit | None, knn: SessionKNN | None, sample: int = 256) -> float:
        """Wall seconds the head-weight choices after training will take on `vsplit` (the model's passes,
        the heads' scores and votes, every blend), timed before training on its first `sample` rows and
        extrapolated; nothing is chosen. What a time budget reserves for them: they can cost several
        validation passes (Diginetica's session head: its votes over 181,000 sessions)."""
        if vsplit is None or not len(vsplit) or self.train_cfg.max_minutes <= 0:
            return 0.0
        part, t0 = vsplit.take(np.arange(min(sample, len(vsplit)))), time.perf_counter()
        if self._net().cooc_idx is not None and self.content_cfg.cooc_alphas:
            self._head_tables(part)
        if knn is not None:
            choose_session_head(knn, self.score, self._trainer().blend_weights, part)
        return (time.perf_counter() - t0) * len(vsplit) / len(part)

    def _valid_sample(self, valid: EvalSplit | None) -> EvalSplit | None:
        """The validation users early stopping reads: all, or a seeded sample of `valid_users`."""
        if valid is None or not len(valid):
            return None
        n = self.content_cfg.valid_users
        if not n or len(valid) <= n:
            return valid
        pick = np.random.default_rng(self.train_cfg.seed).choice(len(valid), n, replace=False)
        return valid.take(np.sort(pick))

    def _install_neighbours(self, train: SequenceData) -> None:
        """The co-occurrence head's item-to-item neighbours, from the TRAINING sequences."""
        net = self._net()
        knn = ItemKNN(neighbors=net.cfg.cooc_neighbors, history_half_life=net.cfg.cooc_half_life).fit(train)
        idx, val = knn.neighbour_table(net.cfg.cooc_neighbors)
        net.set_cooccurrence(torch.from_numpy(idx), torch.from_numpy(val))

    def _half_lives(self) -> tuple[float, ...]:
        """The head's history half-lives to try: the network's own first, then the configured grid."""
        own = float(self._net().cfg.cooc_half_life)
        return (own, *sorted({float(h) for h in self.content_cfg.cooc_half_lives} - {own}))

    def _choose_head_weight(self, vsplit: EvalSplit | None) -> None:
        """The trainer reads the head's weight and history half-life on validation NDCG@10 (weight
        0, the transformer alone, is always a candidate; ties go to the smaller weight, then to the
        network's own half-life)."""
        net = self._net()
        if vsplit is None or not self.content_cfg.cooc_alphas:
            return
        lives, alphas, tables = self._head_tables(vsplit)
        pairs = [(i, a) for i in range(len(lives)) for a in alphas]
        i, best = max(pairs, key=lambda p: (tables[p[0]][p[1]], -p[1], -p[0]))
        self.cooc_valid_ = tables[i]
        self.half_life_valid_ = {h: max(t.values()) for h, t in zip(lives, tables, strict=True)}
        net.cfg.cooc_half_life = lives[i]
        net.cooc_alpha.fill_(best)

    def _head_tables(self, vsplit: EvalSplit) -> tuple[tuple[float, ...], tuple[float, ...], list[dict[float, float]]]:
        """Validation NDCG@10 of every head weight at every history half-life (half-lives, weights, tables)."""
        lives, alphas = self._half_lives(), tuple(sorted({0.0, *map(float, self.content_cfg.cooc_alphas)}))
        return lives, alphas, self._trainer().blend_weights(functools.partial(self._score_parts, lives), vsplit, alphas)

    @torch.no_grad()
    def _score_parts(
        self, half_lives: Sequence[float], histories: list[np.ndarray], timestamps: list[np.ndarray] | None
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """(transformer scores, the co-occurrence head's scores at each history half-life), each
        (B, I), for choosing the head's weight and half-life."""
        net = self._net()
        with self.cooc_weight(0.0):
            base = self.score(histories, timestamps).astype(np.float64)
        seq = torch.from_numpy(pad_left(histories, net.cfg.max_len))
        return base, [net.cooc_scores(seq, h).double().numpy() for h in half_lives]  # each (B, I)

    # --- scoring ------------------------------------------------------------------------
    @contextlib.contextmanager
    def cooc_weight(self, weight: float) -> Iterator[None]:
        """Score with the co-occurrence head at `weight` inside the block (0 = the transformer
        alone, for ablations: the session head is off too); the chosen weights are restored on exit."""
        net, session = self._net(), self.session_
        kept, kept_session = float(net.cooc_alpha), session.weight if session is not None else 0.0
        net.cooc_alpha.fill_(weight)
        if session is not None and weight == 0.0:
            session.weight = 0.0
        try:
            yield
        finally:
            net.cooc_alpha.fill_(kept)
            if session is not None:
                session.weight = kept_session

    def _net(self) -> SASRec:
        if self.net_ is None:
            raise RuntimeError("sasrec model is not fitted; call fit() or load a checkpoint first")
        return self.net_

    @torch.no_grad()
    def score(
        self, histories: Sequence[np.ndarray], timestamps: Sequence[np.ndarray] | None = None
    ) -> np.ndarray:
        """Scores (B, n_items); `timestamps` (unix seconds per history item) feed time-aware models."""
        net = self._net()
        if net.training:
            net.eval()
        device = next(net.parameters()).device
        seq = pad_left(histories, net.cfg.max_len)
        ts = None
        if net.cfg.use_time and self.content_cfg.use_timestamps and timestamps is not None:
            ts = torch.from_numpy(pad_times(timestamps, seq.shape[1])).to(device)
        out = net.score(torch.from_numpy(seq).to(device), ts).float().cpu().numpy()
        return out if self.session_ is None else self.session_.add(out, histories)

    @torch.no_grad()
    def item_vectors(self) -> np.ndarray:
        return self._net().item_table()[1:].float().cpu().numpy()

    def attribute(
        self,
        history: np.ndarray,
        items: np.ndarray,
        timestamps: np.ndarray | None = None,
        *,
        method: str = "occlusion",
    ) -> list[list[Attribution]]:
        """History items (occlusion or LIME), then the content side: the score each item loses
        when the title vectors, the attribute vectors or the ID embeddings are zeroed in every
        item's vector (history and candidates alike)."""
        rows = super().attribute(history, items, timestamps, method=method)
        enc = self._net().items
        parts: dict[str, Any] = {"ID embedding": lambda: zeroed([enc.id_emb.weight])}
        if enc.text_proj is not None:
            parts["title vectors"] = lambda: zeroed([enc.text_proj.weight, enc.text_proj.bias])
        if enc.attr_emb is not None:
            parts["attribute vectors"] = lambda: zeroed([enc.attr_emb.weight])
        lifts = content_lift(self, history, items, timestamps, parts)
        return [r + c for r, c in zip(rows, lifts, strict=True)]

    # --- persistence --------------------------------------------------------------------
    def _save_state(self, path: Path) -> None:
        net = self._net()
        torch.save(
            {"config": dataclasses.asdict(net.cfg), "state_dict": net.state_dict(), "format": 1},
            path / "sasrec.pt",
        )
        ids = [] if self.item_ids_ is None else [str(x) for x in self.item_ids_]
        (path / "items.json").write_text(json.dumps(ids))
        info = self.training_report()
        if info is not None:
            (path / "training.json").write_text(json.dumps(info, indent=1))
        if self.session_ is not None:
            self.session_.save(path)

    def _load_state(self, path: Path) -> None:
        ck = torch.load(path / "sasrec.pt", map_location="cpu", weights_only=False)
        cfg = from_dict(SASRecConfig, ck["config"], "checkpoint config")
        net = SASRec(cfg)
        state = dict(ck["state_dict"])
        state.setdefault("cooc_alpha", torch.zeros(()))  # checkpoints from before the co-occurrence head
        net.load_state_dict(state)
        self.net_ = net.eval()
        self.net_cfg = cfg
        report = path / "training.json"
        self.saved_report_ = json.loads(report.read_text()) if report.exists() else {}
        self.session_ = SessionHead.load(path)
        items = path / "items.json"
        self.item_ids_ = np.array(json.loads(items.read_text()), dtype=object) if items.exists() else None
        if self.item_ids_ is not None and len(self.item_ids_) not in (0, cfg.n_items):
            raise ValueError(
                f"{path}: items.json has {len(self.item_ids_)} ids but the model has {cfg.n_items} items"
            )

    def export_served(self, path: str | Path) -> Path:
        """The ONNX scorer (sasrec.onnx + sidecar + item vectors) the server loads as OnnxScorer."""
        return export_onnx(self, path)

    def to(self, device: str) -> Self:
        """Move the network (e.g. to 'cuda') for faster scoring."""
        self._net().to(pick_device(device))
        return self
