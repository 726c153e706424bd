"""The `Recommender` wrapper around the SASRec network: batching, fit, scoring and checkpoints.

Parameters are one flat dict (so `--set key=value` works) split into three typed
groups: the network (`SASRecConfig`), optimisation (`TrainConfig`) and content use
(`ContentConfig`). Unknown keys fail loudly. Item content (title embeddings,
attribute ids) is attached with `set_content` before `fit` and saved in the checkpoint,
so a loaded model needs nothing else to score.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch

from soutui.config import ConfigError, from_dict
from soutui.data.sequences import EvalSplit, SequenceData
from soutui.models.base import Recommender
from soutui.models.sasrec import SASRec, SASRecConfig
from soutui.models.sasrec_features import attribute_table, pad_left, pad_times, training_windows
from soutui.training import loop
from soutui.training.loop import Batch, TrainConfig, TrainState, pick_device

# network fields derived from the data, never set by the user
DERIVED = ("n_items", "text_dim", "n_attrs", "attrs_per_item")


@dataclass
class ContentConfig:
    use_text: bool = True  # use title embeddings when set_content provided them
    use_attrs: bool = True  # use attribute ids when provided
    use_timestamps: bool = True  # feed event times (only matters when model use_time=True)
    cold_item_reset: bool = True  # items unseen in training score by content alone
    valid_users: int = 0  # cap validation users for early stopping (0 = all); seeded sample
    cooc_alphas: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)  # head weights tried


COOC_NOTE = "co-occurrence head weight chosen on VALIDATION NDCG@10 (transformer alone = weight 0)"


def split_params(params: dict[str, Any]) -> tuple[SASRecConfig, TrainConfig, ContentConfig]:
    """Partition a flat parameter dict into the three typed configs; unknown keys raise."""
    groups: dict[type, dict[str, Any]] = {SASRecConfig: {}, TrainConfig: {}, ContentConfig: {}}
    owner = {f.name: cls for cls in groups for f in dataclasses.fields(cls) if f.name not in DERIVED}
    unknown = sorted(set(params) - set(owner))
    if unknown:
        raise ConfigError(f"sasrec: unknown parameter(s) {unknown}; allowed: {sorted(owner)}")
    for k, v in params.items():
        groups[owner[k]][k] = v
    return (
        from_dict(SASRecConfig, groups[SASRecConfig], "sasrec"),
        from_dict(TrainConfig, groups[TrainConfig], "sasrec"),
        from_dict(ContentConfig, groups[ContentConfig], "sasrec"),
    )


class SASRecRecommender(Recommender):
    """Content-aware causal transformer; see soutui.models.sasrec for the network."""

    name = "sasrec"

    def __init__(self, **params: Any):
        self.net_cfg, self.train_cfg, self.content_cfg = split_params(params)
        self._params = dict(params)
        self._text: np.ndarray | None = None
        self._attrs: list[list[int]] | None = None
        self.net_: SASRec | None = None
        self.state_: TrainState | None = None
        self.item_ids_: np.ndarray | None = None
        self.cold_reset_valid_: tuple[float, float] | None = None  # valid NDCG@10 before/after
        self.cooc_valid_: dict[float, float] | None = None  # head weight -> valid NDCG@10

    def params(self) -> dict[str, Any]:
        return dict(self._params)

    def set_content(
        self, text: np.ndarray | None = None, attributes: Sequence[Sequence[int]] | None = None
    ) -> Self:
        """Attach per-item content aligned with the training item vocabulary (row i = item i)."""
        self._text = None if text is None else np.asarray(text, dtype=np.float32)
        self._attrs = None if attributes is None else [list(a) for a in attributes]
        return self

    # --- building -----------------------------------------------------------------------
    def _build(self, n_items: int) -> SASRec:
        cfg = dataclasses.replace(self.net_cfg, n_items=n_items)
        text = self._text if self.content_cfg.use_text else None
        attrs = self._attrs if self.content_cfg.use_attrs else None
        if text is not None and len(text) != n_items:
            raise ValueError(f"title embeddings have {len(text)} rows but the catalogue has {n_items} items")
        if attrs is not None and len(attrs) != n_items:
            raise ValueError(f"attributes cover {len(attrs)} items but the catalogue has {n_items} items")
        table = None
        if text is not None:
            cfg.text_dim = text.shape[1]
        if attrs is not None:
            table, cfg.n_attrs = attribute_table(attrs)
            cfg.attrs_per_item = table.shape[1] if cfg.n_attrs else 0
        net = SASRec(cfg)
        if text is not None and net.items.text is not None:
            net.items.text[1:] = torch.from_numpy(text)
        if table is not None and cfg.n_attrs and net.items.attrs is not None:
            net.items.attrs.copy_(torch.from_numpy(table))
        return net

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

        def gen(rng: np.random.Generator) -> Iterator[Batch]:
            order = rng.permutation(len(xs))
            # sort inside chunks of 50 batches by length so padding stays small, then shuffle batches
            chunks = [order[i : i + 50 * bs] for i in range(0, len(order), 50 * bs)]
            batches = []
            for c in chunks:
                c = c[np.argsort(lengths[c], kind="stable")]
                batches += [c[i : i + bs] for i in range(0, len(c), bs)]
            for bi in rng.permutation(len(batches)):
                b = batches[bi]
                seq = pad_left([xs[i] for i in b], L)
                tgt = pad_left([ys[i] for i in b], L, width=seq.shape[1])
                ts = pad_times([tss[i] for i in b], seq.shape[1]) if tss is not None else None
                yield seq, tgt, ts

        return gen, (len(xs) + bs - 1) // bs

    def fit(
        self,
        train: SequenceData,
        valid: EvalSplit | None = None,
        checkpoint_dir: str | Path | None = None,
        resume: bool = False,
        stop_after_epochs: int | None = None,
    ) -> Self:
        """Train with early stopping on validation NDCG@10 (full ranking, history not excluded)."""
        from soutui.evaluation.protocol import ranking_metrics, target_ranks

        torch.manual_seed(self.train_cfg.seed)
        self.n_items_ = train.n_items
        self.item_ids_ = np.asarray(train.item_ids)
        self.net_ = self._build(train.n_items)
        counts = np.bincount(
            np.concatenate(train.sequences) if train.sequences else np.zeros(0, np.int64),
            minlength=train.n_items,
        )
        pop = torch.from_numpy(np.log((counts + 1.0) / (counts + 1.0).sum())).float()
        self.net_.logq[1:] = pop  # sampling distribution for sampled softmax
        if self.net_.bias is not None:
            self.net_.bias.data[1:] = pop - pop.mean()  # start from the popularity prior
        gen, n_batches = self._batches(train)
        vsplit = valid
        if valid is not None and self.content_cfg.valid_users and len(valid) > self.content_cfg.valid_users:
            pick = np.sort(
                np.random.default_rng(self.train_cfg.seed).choice(
                    len(valid), self.content_cfg.valid_users, replace=False
                )
            )
            vsplit = valid.take(pick)

        def validate() -> float:
            assert vsplit is not None
            ranks, _ = target_ranks(self, vsplit)
            return ranking_metrics(ranks, (10,))["NDCG@10"]

        ckpt = Path(checkpoint_dir) if checkpoint_dir else None
        self.state_ = train_state = loop.train(
            self.net_,
            gen,
            n_batches,
            validate if vsplit is not None and len(vsplit) else None,
            self.train_cfg,
            ckpt,
            resume,
            stop_after_epochs,
        )
        self.net_.to("cpu").eval()
        if self.content_cfg.cold_item_reset and train_state.stopped:
            before = {k: v.clone() for k, v in self.net_.state_dict().items()}
            if self._reset_cold_items(counts) and vsplit is not None and len(vsplit):
                # a choice made on VALIDATION only: keep the reset unless it lowers NDCG@10
                after = validate()
                self.cold_reset_valid_ = (train_state.best_metric, after)
                if after < train_state.best_metric:
                    self.net_.load_state_dict(before)
        if self.net_.cooc_idx is not None and train_state.stopped:
            self._fit_cooccurrence(train, vsplit)
        return self

    def _fit_cooccurrence(self, train: SequenceData, vsplit: EvalSplit | None) -> None:
        """Install item-to-item neighbours from the TRAINING sequences and choose the head's
        weight on validation NDCG@10 (weight 0 = the transformer alone is always a candidate)."""
        from soutui.evaluation.metrics import ndcg_from_ranks
        from soutui.evaluation.protocol import pessimistic_ranks
        from soutui.models.itemknn import ItemKNN

        net = self._net()
        k = net.cfg.cooc_neighbors
        sim = ItemKNN(neighbors=k, history_half_life=net.cfg.cooc_half_life).fit(train).sim_.tocsr()
        idx = np.zeros((train.n_items + 1, k), dtype=np.int64)
        val = np.zeros((train.n_items + 1, k), dtype=np.float32)
        for i in range(train.n_items):
            a, b = sim.indptr[i], sim.indptr[i + 1]
            idx[i + 1, : b - a] = sim.indices[a:b] + 1
            val[i + 1, : b - a] = sim.data[a:b]
        net.set_cooccurrence(torch.from_numpy(idx), torch.from_numpy(val))
        alphas = self.content_cfg.cooc_alphas
        if vsplit is None or not len(vsplit) or not alphas:
            return
        ranks: dict[float, list[np.ndarray]] = {a: [] for a in alphas}
        net.cooc_alpha.zero_()
        for start in range(0, len(vsplit), 256):
            hist = vsplit.histories[start : start + 256]
            times = vsplit.timestamps[start : start + 256] if vsplit.timestamps is not None else None
            base = self.score_timed(hist, times).astype(np.float64)
            with torch.no_grad():
                extra = net.cooc_scores(torch.from_numpy(pad_left(hist, net.cfg.max_len))).double().numpy()
            tgt = vsplit.targets[start : start + 256]
            for a in alphas:
                ranks[a].append(pessimistic_ranks(base + a * extra, tgt))
        found = {a: round(ndcg_from_ranks(np.concatenate(r), 10), 6) for a, r in ranks.items()}
        self.cooc_valid_ = found
        best = max(alphas, key=lambda a: (found[a], -a))  # ties -> the smaller weight
        net.cooc_alpha.fill_(best)

    @torch.no_grad()
    def _reset_cold_items(self, counts: np.ndarray) -> bool:
        """Items never seen in training were only ever pushed down as negatives: drop their
        ID embedding and give them the mean bias of rare items, so content alone places them."""
        assert self.net_ is not None
        cold = torch.from_numpy(np.flatnonzero(counts == 0) + 1)
        if not len(cold) or (self.net_.items.text_proj is None and self.net_.items.attr_emb is None):
            return False
        self.net_.items.id_emb.weight[cold] = 0.0
        if self.net_.bias is not None:
            rare = torch.from_numpy(np.flatnonzero((counts > 0) & (counts <= 5)) + 1)
            if not len(rare):
                rare = torch.from_numpy(np.flatnonzero(counts > 0) + 1)
            if len(rare):
                self.net_.bias[cold] = self.net_.bias[rare].mean()
        return True

    # --- scoring ------------------------------------------------------------------------
    @contextlib.contextmanager
    def cooc_weight(self, weight: float) -> Iterator[None]:
        """Score with the co-occurrence head at `weight` inside the block (0 = the transformer
        alone, for ablations); the chosen weight is restored on exit."""
        net = self._net()
        kept = float(net.cooc_alpha)
        net.cooc_alpha.fill_(weight)
        try:
            yield
        finally:
            net.cooc_alpha.fill_(kept)

    def _net(self) -> SASRec:
        if self.net_ is None:
            raise RuntimeError("sasrec model is not fitted; call fit() or load a checkpoint first")
        return self.net_

    def score(self, histories: list[np.ndarray]) -> np.ndarray:
        return self.score_timed(histories, None)

    @torch.no_grad()
    def score_timed(self, histories: list[np.ndarray], timestamps: list[np.ndarray] | None) -> np.ndarray:
        """Scores (B, n_items); `timestamps` (unix seconds per history item) feed time-aware models."""
        net = self._net()
        if net.training:
            net.eval()
        device = next(net.parameters()).device
        seq = pad_left(histories, net.cfg.max_len)
        ts = None
        if net.cfg.use_time and self.content_cfg.use_timestamps and timestamps is not None:
            ts = torch.from_numpy(pad_times(timestamps, seq.shape[1])).to(device)
        out = net.score(torch.from_numpy(seq).to(device), ts)
        return out.float().cpu().numpy()

    @torch.no_grad()
    def item_vectors(self) -> np.ndarray:
        return self._net().item_table()[1:].float().cpu().numpy()

    # --- persistence --------------------------------------------------------------------
    def _save_state(self, path: Path) -> None:
        net = self._net()
        torch.save(
            {"config": dataclasses.asdict(net.cfg), "state_dict": net.state_dict(), "format": 1},
            path / "sasrec.pt",
        )
        ids = [] if self.item_ids_ is None else [str(x) for x in self.item_ids_]
        (path / "items.json").write_text(json.dumps(ids))
        if self.state_ is not None:
            info = dataclasses.asdict(self.state_)
            if self.cooc_valid_ is not None:
                info["cooc_valid"] = {"note": COOC_NOTE, "ndcg10_by_weight": self.cooc_valid_}
            (path / "training.json").write_text(json.dumps(info, indent=1))

    def _load_state(self, path: Path) -> None:
        ck = torch.load(path / "sasrec.pt", map_location="cpu", weights_only=False)
        cfg = from_dict(SASRecConfig, ck["config"], "checkpoint config")
        net = SASRec(cfg)
        state = dict(ck["state_dict"])
        state.setdefault("cooc_alpha", torch.zeros(()))  # checkpoints from before the co-occurrence head
        net.load_state_dict(state)
        self.net_ = net.eval()
        self.net_cfg = cfg
        items = path / "items.json"
        self.item_ids_ = np.array(json.loads(items.read_text()), dtype=object) if items.exists() else None
        if self.item_ids_ is not None and len(self.item_ids_) not in (0, cfg.n_items):
            raise ValueError(
                f"{path}: items.json has {len(self.item_ids_)} ids but the model has {cfg.n_items} items"
            )

    def to(self, device: str) -> Self:
        """Move the network (e.g. to 'cuda') for faster scoring."""
        self._net().to(pick_device(device))
        return self
