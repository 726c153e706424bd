"""A feature-based two-tower MLP recommender: user-history features x item features.

Item tower: ID embedding, popularity (log count), price, category/brand/attribute
tokens (mean embedding bag) and the title embedding. User tower: behaviour counts, the
mean and the last of the history's item vectors, and the mean history title embedding
(category/attribute affinity comes in through the item vectors it averages).
Why two towers and not one MLP over each (user, item) pair: full ranking must score all
~12k items for every user, and a dot product makes that one (B, D) @ (D, I) matmul.
Trained with binary cross-entropy: (history prefix -> next item) positives against
uniformly sampled negatives (seeded).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from soutui.data.schema import CATEGORY_SEP
from soutui.data.sequences import EvalSplit, SequenceData
from soutui.models.base import Recommender
from soutui.models.popularity import item_counts

MAX_TOKENS = 16  # category levels + brand + attributes kept per item


def _standardise(x: np.ndarray) -> np.ndarray:
    return ((x - x.mean()) / (x.std() + 1e-6)).astype(np.float32) if len(x) else x.astype(np.float32)


def aligned(items: pd.DataFrame, item_ids: np.ndarray) -> pd.DataFrame:
    """The items table re-indexed to the model's item order (unknown items: all null)."""
    df = items.assign(item_id=items["item_id"].astype(str)).drop_duplicates("item_id")
    return df.set_index("item_id").reindex([str(x) for x in item_ids])


def item_tokens(items: pd.DataFrame | None, item_ids: np.ndarray) -> tuple[np.ndarray, int]:
    """(I, MAX_TOKENS) token ids (0 = padding) for category prefixes, brand and attributes."""
    n = len(item_ids)
    if items is None or not len(items):
        return np.zeros((n, 1), np.int64), 1
    df = aligned(items, item_ids)
    lists: list[list[str]] = []
    for cat, brand, attrs in zip(
        df.get("category", pd.Series(None, index=df.index)),
        df.get("brand", pd.Series(None, index=df.index)),
        df.get("attributes", pd.Series(None, index=df.index)),
        strict=True,
    ):
        toks: list[str] = []
        if isinstance(cat, str) and cat:
            levels = cat.split(CATEGORY_SEP)
            toks += ["cat:" + CATEGORY_SEP.join(levels[: i + 1]) for i in range(len(levels))]
        if isinstance(brand, str) and brand:
            toks.append("brand:" + brand.lower())
        toks += _attribute_tokens(attrs)
        lists.append(toks)
    # a token only one item has (an ASIN, a SKU) is an ID in disguise, not a shared feature
    df_count = Counter(t for toks in lists for t in set(toks))
    vocab: dict[str, int] = {}
    rows = [
        [vocab.setdefault(t, len(vocab) + 1) for t in toks if df_count[t] > 1][:MAX_TOKENS] for toks in lists
    ]
    width = max([len(r) for r in rows] + [1])
    out = np.zeros((n, width), np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out, len(vocab) + 1


def _attribute_tokens(attrs: Any) -> list[str]:
    if not isinstance(attrs, str) or not attrs:
        return []
    try:
        obj = json.loads(attrs)
    except json.JSONDecodeError:
        return []
    if isinstance(obj, list):
        return [f"attr:{v}" for v in obj]
    if isinstance(obj, dict):
        toks = []
        for k, v in obj.items():
            for x in v if isinstance(v, list) else [v]:
                toks.append(f"attr:{k}={x}")
        return toks
    return []


def item_numeric(items: pd.DataFrame | None, item_ids: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(I, 3): standardised log popularity, standardised log price (0 if unknown), price-unknown flag."""
    pop = _standardise(np.log1p(counts))
    price = np.full(len(item_ids), np.nan)
    if items is not None and "price" in items.columns and len(items):
        price = pd.to_numeric(aligned(items, item_ids)["price"], errors="coerce").to_numpy(np.float64)
    known = np.isfinite(price) & (price >= 0)
    logp = np.zeros(len(item_ids), np.float32)
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


def pad_histories(histories: list[np.ndarray], max_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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

    def __init__(
        self,
        dim: int = 64,
        hidden: int = 128,
        id_dim: int = 32,
        max_history: int = 20,
        epochs: int = 6,
        batch_size: int = 512,
        lr: float = 2e-3,
        weight_decay: float = 0.0,
        dropout: float = 0.1,
        n_negatives: int = 8,
        use_text: bool = True,
        encoder: str = "minilm",
        patience: int = 2,
        seed: int = 0,
    ) -> None:
        if min(dim, hidden, id_dim, max_history, epochs, batch_size, n_negatives) < 1:
            raise ValueError("dim, hidden, id_dim, max_history, epochs, batch_size, n_negatives must be >= 1")
        self.dim, self.hidden, self.id_dim, self.max_history = dim, hidden, id_dim, max_history
        self.epochs, self.batch_size, self.lr, self.weight_decay = epochs, batch_size, lr, weight_decay
        self.dropout, self.n_negatives, self.use_text, self.encoder = dropout, n_negatives, use_text, encoder
        self.patience, self.seed = patience, seed

    def params(self) -> dict[str, Any]:
        keys = ("dim", "hidden", "id_dim", "max_history", "epochs", "batch_size", "lr", "weight_decay",
                "dropout", "n_negatives", "use_text", "encoder", "patience", "seed")  # fmt: skip
        return {k: getattr(self, k) for k in keys}

    # --- features --------------------------------------------------------------------
    def _text(
        self, items: pd.DataFrame | None, item_ids: np.ndarray, given: np.ndarray | None
    ) -> np.ndarray | None:
        if given is not None:
            if len(given) != len(item_ids):
                raise ValueError(
                    f"text_embeddings has {len(given)} rows, the catalogue has {len(item_ids)} items"
                )
            return np.asarray(given, np.float32)
        if not self.use_text or items is None or "title" not in items.columns:
            return None
        from soutui.features.embeddings import embed_texts

        texts = aligned(items, item_ids)["title"].fillna("").astype(str).tolist()
        return embed_texts(texts, self.encoder)

    def fit(
        self,
        train: SequenceData,
        valid: EvalSplit | None = None,
        items: pd.DataFrame | None = None,
        text_embeddings: np.ndarray | None = None,
        progress: bool = False,
    ) -> Self:
        """`items` (schema `items` table) supplies features; rows are aligned to train.item_ids."""
        self.n_items_ = train.n_items
        tokens, n_tokens = item_tokens(items, train.item_ids)
        numeric = item_numeric(items, train.item_ids, item_counts(train))
        text = self._text(items, train.item_ids, text_embeddings)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # small matmuls: one thread is as fast and deterministic
        try:
            torch.manual_seed(self.seed)
            self.net_ = TwoTowerNet(
                torch.from_numpy(tokens), n_tokens, torch.from_numpy(numeric),
                None if text is None else torch.from_numpy(text),
                self.id_dim, self.dim, self.hidden, self.dropout,
            )  # fmt: skip
            self._train(train, valid, progress)
        finally:
            torch.set_num_threads(threads)
        return self

    def _samples(self, train: SequenceData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Flat item array, and for every (prefix -> next) sample its target position and user start."""
        seqs = [np.asarray(s, np.int64) for s in train.sequences]
        flat = np.concatenate(seqs) if seqs else np.zeros(0, np.int64)
        lengths = np.array([len(s) for s in seqs], np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if len(seqs) else lengths
        owner_start = np.repeat(starts, lengths)
        pos = np.arange(len(flat))
        keep = pos > owner_start  # a target needs at least one item before it
        return flat, pos[keep], owner_start[keep]

    def _train(self, train: SequenceData, valid: EvalSplit | None, progress: bool) -> None:
        flat, pos, start = self._samples(train)
        if len(pos) == 0:
            raise ValueError("MLP needs training sequences with at least two items")
        rng = np.random.default_rng(self.seed)
        opt = torch.optim.Adam(self.net_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        offs = np.arange(-self.max_history, 0)
        best, best_state, bad = -1.0, None, 0
        for epoch in range(self.epochs):
            self.net_.train()
            order = rng.permutation(len(pos))
            batches = range(0, len(order), self.batch_size)
            for b in tqdm(batches, desc=f"mlp epoch {epoch + 1}", disable=not progress, unit="batch"):
                sel = order[b : b + self.batch_size]
                p, s = pos[sel], start[sel]
                idx = p[:, None] + offs[None, :]  # (B, L) flat positions of the prefix
                m = idx >= s[:, None]
                hist = np.where(m, flat[np.clip(idx, 0, None)], 0)
                n_prefix = p - s
                counts = np.log1p(np.stack([n_prefix, np.minimum(n_prefix, self.max_history)], 1))
                cand = np.concatenate(
                    [flat[p][:, None], rng.integers(0, self.n_items_, (len(sel), self.n_negatives))], axis=1
                )
                user = self.net_.user_vectors(
                    torch.from_numpy(hist), torch.from_numpy(m.astype(np.float32)),
                    torch.from_numpy(counts.astype(np.float32)),
                )  # fmt: skip
                logits = self.net_.logits(user, torch.from_numpy(cand))  # (B, 1 + n_neg)
                labels = torch.zeros_like(logits)
                labels[:, 0] = 1.0
                loss = F.binary_cross_entropy_with_logits(logits, labels)
                opt.zero_grad()
                loss.backward()
                opt.step()
            if valid is not None and len(valid) and self.patience > 0:
                hr = self._valid_hr(valid)
                if hr > best:
                    best, bad = hr, 0
                    best_state = {k: v.detach().clone() for k, v in self.net_.state_dict().items()}
                else:
                    bad += 1
                    if bad >= self.patience:
                        break
        if best_state is not None:
            self.net_.load_state_dict(best_state)
        self.net_.eval()

    def _valid_hr(self, valid: EvalSplit, n: int = 2000, k: int = 10) -> float:
        """HR@k (full ranking) on a fixed subsample of validation users, for early stopping."""
        sel = np.random.default_rng(self.seed).permutation(len(valid))[:n]
        scores = self._score([valid.histories[i] for i in sel])
        target = scores[np.arange(len(sel)), valid.targets[sel]][:, None]
        return float(((scores > target).sum(1) < k).mean())

    # --- scoring -----------------------------------------------------------------------
    @torch.no_grad()
    def _score(self, histories: list[np.ndarray]) -> np.ndarray:
        self.net_.eval()
        hist, mask, counts = pad_histories(histories, self.max_history)
        user = self.net_.user_vectors(
            torch.from_numpy(hist), torch.from_numpy(mask), torch.from_numpy(counts)
        )
        all_items = torch.arange(self.n_items_)
        v = self.net_.item_vectors(all_items)  # (I, D)
        scores = user @ v.T + self.net_.item_bias.weight.T  # (B, I)
        return scores.numpy().astype(np.float64)

    def score(self, histories: list[np.ndarray]) -> np.ndarray:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self._score(histories)
        finally:
            torch.set_num_threads(threads)

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
