"""A feature-based two-tower MLP recommender: user-history features x item features.

Item tower: ID embedding, popularity (log count), price, category/brand/attribute
tokens (mean embedding bag) and the title embedding. User tower: behaviour counts, the
mean and the last of the history's item vectors, and the mean history title embedding
(category/attribute affinity comes in through the item vectors it averages).
Why two towers and not one MLP over each (user, item) pair: full ranking must score all
~12k items for every user, and a dot product makes that one (B, D) @ (D, I) matmul.
Trained on every (history prefix -> next item) pair with a softmax over the whole catalogue
(`loss="full_ce"`, the default: every other item is a negative, as for SASRec), or with binary
cross-entropy against `n_negatives` uniformly sampled negatives (`loss="bce"`, cheaper per step on
very large catalogues; always used under DP-SGD), in the shared epoch loop (soutui.training.loop via
the injected trainer), early-stopping on validation NDCG@10 with pessimistic ties.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from soutui.data.sequences import EvalSplit, SequenceData
from soutui.features.content import UNKNOWN, ItemContent
from soutui.models.attribution import Attribution, content_lift, zeroed
from soutui.models.base import Recommender
from soutui.models.fitting import Batch, TrainConfig, TrainOutcome, poisson_user_batches
from soutui.models.popularity import item_counts

MAX_TOKENS = 16  # category + brand + attributes kept per item
# learned from user data outside DP-SGD, so off when training privately (docs/privacy.md)
DP_OFF = [
    "item popularity feature (zeroed)",
    "early stopping on validation: the last step's weights are kept",
    "full-softmax loss: sampled BCE instead (a per-user gradient over the whole catalogue costs its size per user)",
]
LOSSES = ("full_ce", "bce")


def _standardise(x: np.ndarray) -> np.ndarray:
    return ((x - x.mean()) / (x.std() + 1e-6)).astype(np.float32) if len(x) else x.astype(np.float32)


def item_tokens(content: ItemContent, n_items: int) -> tuple[np.ndarray, int]:
    """(I, <= MAX_TOKENS) token ids (0 = padding) for category, brand and attribute ids.

    A token only one item has (an ASIN-like attribute) is an ID in disguise, not a shared
    feature, so it is dropped."""
    lists: list[list[tuple[str, int]]] = [[] for _ in range(n_items)]
    for kind, codes in (("cat", content.category), ("brand", content.brand)):
        if codes is not None:
            for i, c in enumerate(codes):
                if c != UNKNOWN:
                    lists[i].append((kind, int(c)))
    if content.attributes is not None:
        for i, attrs in enumerate(content.attributes):
            lists[i] += [("attr", int(a)) for a in attrs]
    df_count = Counter(t for toks in lists for t in set(toks))
    vocab: dict[tuple[str, int], int] = {}
    rows = [
        [vocab.setdefault(t, len(vocab) + 1) for t in toks if df_count[t] > 1][:MAX_TOKENS] for toks in lists
    ]
    width = max([len(r) for r in rows] + [1])
    out = np.zeros((n_items, width), np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out, len(vocab) + 1


def item_numeric(content: ItemContent, counts: np.ndarray) -> np.ndarray:
    """(I, 3): standardised log popularity, standardised log price (0 if unknown), price-unknown flag."""
    pop = _standardise(np.log1p(counts))
    price = content.price if content.price is not None else np.full(len(counts), np.nan)
    known = np.isfinite(price) & (price >= 0)
    logp = np.zeros(len(counts), np.float32)
    if known.any():
        logp[known] = _standardise(np.log1p(price[known]))
    return np.stack([pop, logp, (~known).astype(np.float32)], axis=1).astype(np.float32)


class _MLP(nn.Sequential):
    def __init__(self, d_in: int, hidden: int, d_out: int, dropout: float) -> None:
        super().__init__(nn.Linear(d_in, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, d_out))


class TwoTowerNet(nn.Module):
    """Item features live in buffers, so a checkpoint carries everything needed to score."""

    tokens: torch.Tensor
    numeric: torch.Tensor
    text: torch.Tensor

    def __init__(
        self, tokens: torch.Tensor, n_tokens: int, numeric: torch.Tensor, text: torch.Tensor | None,
        id_dim: int, dim: int, hidden: int, dropout: float,
    ) -> None:  # fmt: skip
        super().__init__()
        n_items = tokens.shape[0]
        self.register_buffer("tokens", tokens)  # (I, T)
        self.register_buffer("numeric", numeric)  # (I, 3)
        self.register_buffer("text", text if text is not None else torch.zeros(n_items, 0))  # (I, Dt)
        text_dim = self.text.shape[1]
        self.id_emb = nn.Embedding(n_items, id_dim)
        self.tok_emb = nn.EmbeddingBag(n_tokens, id_dim, mode="mean", padding_idx=0)
        self.text_proj = nn.Linear(text_dim, id_dim) if text_dim else None
        n_parts = 2 + (1 if text_dim else 0)
        self.item_mlp = _MLP(n_parts * id_dim + numeric.shape[1], hidden, dim, dropout)
        self.user_mlp = _MLP(2 * dim + (id_dim if text_dim else 0) + 2, hidden, dim, dropout)
        self.item_bias = nn.Embedding(n_items, 1)
        nn.init.normal_(self.id_emb.weight, std=0.05)
        nn.init.zeros_(self.item_bias.weight)
        self.softmax = False  # training loss: softmax over every item (True) or BCE over `cand`

    def item_vectors(self, idx: torch.Tensor) -> torch.Tensor:
        """idx (...,) -> (..., dim)."""
        flat = idx.reshape(-1)
        parts = [self.id_emb(flat), self.tok_emb(self.tokens[flat])]
        if self.text_proj is not None:
            parts.append(self.text_proj(self.text[flat]))
        parts.append(self.numeric[flat])
        return self.item_mlp(torch.cat(parts, dim=1)).reshape(*idx.shape, -1)

    def user_vectors(self, hist: torch.Tensor, mask: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """hist (B, L) left-padded, mask (B, L) 1 = real item, counts (B, 2) -> (B, dim)."""
        h = self.item_vectors(hist)  # (B, L, D)
        denom = mask.sum(1, keepdim=True).clamp(min=1.0)
        parts = [(h * mask[..., None]).sum(1) / denom, h[:, -1] * mask[:, -1:]]
        if self.text_proj is not None:
            t = (self.text[hist] * mask[..., None]).sum(1) / denom  # (B, Dt)
            parts.append(self.text_proj(t))
        parts.append(counts)
        return self.user_mlp(torch.cat(parts, dim=1))

    def logits(self, user: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """user (B, D), items (B, K) -> (B, K)."""
        v = self.item_vectors(items)  # (B, K, D)
        return (v * user[:, None, :]).sum(-1) + self.item_bias(items).squeeze(-1)

    def forward(
        self, hist: torch.Tensor, mask: torch.Tensor, counts: torch.Tensor, cand: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One training batch: candidates (B, 1 + n_neg), the true next item first -> (logits, loss):
        cross-entropy over the whole catalogue when `softmax` (only column 0 is read), else BCE."""
        user = self.user_vectors(hist, mask, counts)  # (B, D)
        if self.softmax:
            items = self.item_vectors(torch.arange(self.tokens.shape[0], device=user.device))  # (I, D)
            logits = torch.addmm(self.item_bias.weight.T, user, items.T)  # (B, I)
            return logits, F.cross_entropy(logits, cand[:, 0])
        logits = self.logits(user, cand)  # (B, 1 + n_neg)
        labels = torch.zeros_like(logits)
        labels[:, 0] = 1.0
        return logits, F.binary_cross_entropy_with_logits(logits, labels)


def pad_histories(histories: Sequence[np.ndarray], max_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Left-padded (B, L) item indices, (B, L) mask and (B, 2) log counts (full, kept length)."""
    b = len(histories)
    hist = np.zeros((b, max_len), np.int64)
    mask = np.zeros((b, max_len), np.float32)
    counts = np.zeros((b, 2), np.float32)
    for i, h in enumerate(histories):
        h = np.asarray(h, dtype=np.int64)
        counts[i] = np.log1p([len(h), min(len(h), max_len)])
        h = h[-max_len:]
        if len(h):
            hist[i, -len(h) :], mask[i, -len(h) :] = h, 1.0
    return hist, mask, counts


class MLPRecommender(Recommender):
    """Two-tower MLP over user-history and item features (see module docstring)."""

    name = "mlp"
    BUDGETS = ("max_cpu_minutes",)

    def __init__(
        self,
        dim: int = 64,
        hidden: int = 128,
        id_dim: int = 32,
        max_history: int = 20,
        epochs: int = 20,
        batch_size: int = 512,
        lr: float = 2e-3,
        weight_decay: float = 0.0,
        dropout: float = 0.1,
        n_negatives: int = 8,
        loss: str = "full_ce",
        use_text: bool = True,
        patience: int = 3,
        valid_users: int = 2000,
        seed: int = 0,
        dp_epsilon: float = 0.0,
        dp_delta: float = 1e-5,
        dp_clip: float = 1.0,
        dp_steps: int = 0,
        max_cpu_minutes: float = 0.0,
    ) -> None:
        if min(dim, hidden, id_dim, max_history, epochs, batch_size, n_negatives) < 1:
            raise ValueError("dim, hidden, id_dim, max_history, epochs, batch_size, n_negatives must be >= 1")
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
        self.dim, self.hidden, self.id_dim, self.max_history = dim, hidden, id_dim, max_history
        self.epochs, self.batch_size, self.lr, self.weight_decay = epochs, batch_size, lr, weight_decay
        self.dropout, self.n_negatives, self.loss, self.use_text = dropout, n_negatives, loss, use_text
        self.patience, self.valid_users, self.seed = patience, valid_users, seed
        self.dp_epsilon, self.dp_delta, self.dp_clip, self.dp_steps = dp_epsilon, dp_delta, dp_clip, dp_steps
        self.max_cpu_minutes = max_cpu_minutes  # CPU-time budget of the fit (0 = epochs alone)
        self.training_: TrainOutcome | None = None

    def params(self) -> dict[str, Any]:
        keys = ("dim", "hidden", "id_dim", "max_history", "epochs", "batch_size", "lr", "weight_decay",
                "dropout", "n_negatives", "loss", "use_text", "patience", "valid_users", "seed",
                "dp_epsilon", "dp_delta", "dp_clip", "dp_steps", "max_cpu_minutes")  # fmt: skip
        return {k: getattr(self, k) for k in keys}

    def training_report(self) -> dict[str, Any] | None:
        if self.training_ is None:
            return None
        info = self.training_.as_dict()
        if info.get("privacy"):
            info["privacy"]["off_in_dp_mode"] = DP_OFF
        return info

    def train_config(self) -> TrainConfig:
        """The shared loop's settings for this model: plain Adam-like steps, no clipping,
        one CPU thread (small matmuls: one thread is as fast and deterministic)."""
        return TrainConfig(
            epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, weight_decay=self.weight_decay,
            patience=self.patience, seed=self.seed, grad_clip=0.0, adam_beta2=0.999, threads=1,
            device="cpu", progress=False, dp_epsilon=self.dp_epsilon, dp_delta=self.dp_delta,
            dp_clip=self.dp_clip, dp_steps=self.dp_steps, max_cpu_minutes=self.max_cpu_minutes,
        )  # fmt: skip

    def _full_softmax(self) -> bool:
        """The training loss is the softmax over every item: `loss="full_ce"`, outside DP-SGD."""
        return self.loss == "full_ce" and not self.train_config().private

    def fit(
        self, train: SequenceData, valid: EvalSplit | None = None, *, content: ItemContent | None = None
    ) -> Self:
        """Item features come from `content` (rows aligned to train.item_ids); title
        embeddings are used when `use_text` and the content has them."""
        trainer = self._trainer()
        content = (content or ItemContent()).check(train.n_items)
        self.n_items_ = train.n_items
        tokens, n_tokens = item_tokens(content, train.n_items)
        private = self.train_config().private
        numeric = item_numeric(content, item_counts(train))
        if private:
            numeric[:, 0] = 0.0  # the popularity column counts users' events outside DP-SGD
        text = content.text if self.use_text and content.text is not None else None
        torch.manual_seed(self.seed)
        self.net_ = TwoTowerNet(
            torch.from_numpy(tokens), n_tokens, torch.from_numpy(numeric),
            None if text is None else torch.from_numpy(np.asarray(text, np.float32)),
            self.id_dim, self.dim, self.hidden, self.dropout,
        )  # fmt: skip
        self.net_.softmax = self._full_softmax()
        gen, n_batches = self._batches(train)
        vsplit = valid
        if valid is not None and self.valid_users and len(valid) > self.valid_users:
            pick = np.random.default_rng(self.seed).permutation(len(valid))[: self.valid_users]
            vsplit = valid.take(np.sort(pick))
        use_valid = vsplit if vsplit is not None and len(vsplit) and self.patience > 0 and not private else None
        threads = torch.get_num_threads()
        try:
            self.training_ = trainer.train(self, self.net_, gen, n_batches, self.train_config(), use_valid)
        finally:
            torch.set_num_threads(threads)
        self.net_.to("cpu").eval()
        return self

    def _batches(self, train: SequenceData) -> tuple[Any, int]:
        """Every (history prefix -> next item) sample of the training sequences, shuffled per epoch."""
        seqs = [np.asarray(s, np.int64) for s in train.sequences]
        flat = np.concatenate(seqs) if seqs else np.zeros(0, np.int64)
        lengths = np.array([len(s) for s in seqs], np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if len(seqs) else lengths
        owner_start = np.repeat(starts, lengths)
        keep = np.arange(len(flat)) > owner_start  # a target needs at least one item before it
        pos, start = np.arange(len(flat))[keep], owner_start[keep]
        if len(pos) == 0:
            raise ValueError("MLP needs training sequences with at least two items")
        offs = np.arange(-self.max_history, 0)
        bs, n_items = self.batch_size, self.n_items_
        n_neg = 0 if self._full_softmax() else self.n_negatives  # the softmax reads only the target

        def rows(sel: np.ndarray, rng: np.random.Generator) -> Batch:
            p, s = pos[sel], start[sel]
            idx = p[:, None] + offs[None, :]  # (B, L) flat positions of the prefix
            m = idx >= s[:, None]
            hist = np.where(m, flat[np.clip(idx, 0, None)], 0)
            n_prefix = p - s
            counts = np.log1p(np.stack([n_prefix, np.minimum(n_prefix, self.max_history)], 1))
            cand = np.concatenate([flat[p][:, None], rng.integers(0, n_items, (len(sel), n_neg))], axis=1)
            return hist, m.astype(np.float32), counts.astype(np.float32), cand

        if self.train_config().private:  # one (prefix -> next) pair per Poisson-drawn user
            first = np.flatnonzero(np.r_[True, start[1:] != start[:-1]])  # each user's first sample
            per_user = np.diff(np.r_[first, len(start)])

            def one_per_user(users: np.ndarray, rng: np.random.Generator) -> Batch:
                return rows(first[users] + (rng.random(len(users)) * per_user[users]).astype(np.int64), rng)

            return poisson_user_batches(len(first), bs, one_per_user)

        def gen(rng: np.random.Generator) -> Iterator[Batch]:
            order = rng.permutation(len(pos))
            for b in range(0, len(order), bs):
                yield rows(order[b : b + bs], rng)

        return gen, (len(pos) + bs - 1) // bs

    # --- scoring -----------------------------------------------------------------------
    @torch.no_grad()
    def score(
        self, histories: Sequence[np.ndarray], timestamps: Sequence[np.ndarray] | None = None
    ) -> np.ndarray:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            self.net_.eval()
            hist, mask, counts = pad_histories(histories, self.max_history)
            user = self.net_.user_vectors(
                torch.from_numpy(hist), torch.from_numpy(mask), torch.from_numpy(counts)
            )
            v = self.net_.item_vectors(torch.arange(self.n_items_))  # (I, D)
            scores = user @ v.T + self.net_.item_bias.weight.T  # (B, I)
            return scores.numpy().astype(np.float64)
        finally:
            torch.set_num_threads(threads)

    def attribute(
        self,
        history: np.ndarray,
        items: np.ndarray,
        timestamps: np.ndarray | None = None,
        *,
        method: str = "occlusion",
    ) -> list[list[Attribution]]:
        """History items (occlusion or LIME), then the content side: the score each item loses
        when the title projection, the category/brand/attribute token embeddings or the ID
        embeddings are zeroed (in both towers)."""
        rows = super().attribute(history, items, timestamps, method=method)
        net = self.net_
        parts: dict[str, Any] = {
            "ID embedding": lambda: zeroed([net.id_emb.weight]),
            "attribute vectors": lambda: zeroed([net.tok_emb.weight]),
        }
        if net.text_proj is not None:
            parts["title vectors"] = lambda: zeroed([net.text_proj.weight, net.text_proj.bias])
        lifts = content_lift(self, history, items, timestamps, parts)
        return [r + c for r, c in zip(rows, lifts, strict=True)]

    def item_vectors(self) -> np.ndarray | None:
        with torch.no_grad():
            return self.net_.item_vectors(torch.arange(self.n_items_)).numpy()

    def _save_state(self, path: Path) -> None:
        meta = {"n_tokens": self.net_.tok_emb.num_embeddings, "text_dim": int(self.net_.text.shape[1])}
        (path / "mlp.json").write_text(json.dumps(meta))
        torch.save(self.net_.state_dict(), path / "mlp.pt")

    def _load_state(self, path: Path) -> None:
        meta = json.loads((path / "mlp.json").read_text())
        state = torch.load(path / "mlp.pt", map_location="cpu", weights_only=True)
        text = state["text"] if meta["text_dim"] else None
        self.net_ = TwoTowerNet(
            state["tokens"], meta["n_tokens"], state["numeric"], text,
            self.id_dim, self.dim, self.hidden, self.dropout,
        )  # fmt: skip
        self.net_.load_state_dict(state)
        self.net_.eval()
