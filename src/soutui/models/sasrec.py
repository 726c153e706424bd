"""The content-aware causal transformer over item sequences (SASRec / HSTU family).

Read top to bottom: config -> item encoder (ID + title + attributes) -> causal
blocks (with an optional HSTU-style relative-time attention bias) -> scoring head
(tied item table + per-item bias + a learned "already seen" bias) -> loss.

Conventions: item index 0 is padding, catalogue item i is row i + 1. Sequences are
LEFT-padded, so the last column is always the most recent item. Timestamps are in
days (float); a negative value means "unknown" and maps to a dedicated bucket, so a
model trained with time can still score histories that arrive without it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from soutui.config import ConfigError


def seen_counts(
    seq: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, y: torch.Tensor, neg: torch.Tensor
) -> torch.Tensor:
    """(N, 1+M) times the target y[n] (column 0) and each shared negative neg[m] occur in the labelled
    position's own prefix seq[rows[n], :cols[n]+1], padding counted as item 0 (as in `_prefix`).

    The negatives' counts come from one running count over the batch, (B, T, M) int32, read at each
    labelled position, instead of comparing every prefix with every candidate, (N, T, 1+M): T times
    less work and memory (at 1M items, batch 256, that comparison alone passed 5 GiB)."""
    T = seq.shape[1]
    upto = torch.arange(T, device=seq.device).unsqueeze(0) <= cols.unsqueeze(1)  # (N, T)
    pos = ((seq[rows] == y.unsqueeze(1)) & upto).sum(1, keepdim=True)  # y > 0: padding never matches
    running = (seq.unsqueeze(2) == neg).to(torch.int32)  # (B, T, M), summed along T in place:
    for t in range(1, T):  # ~6x faster than torch.cumsum(dim=1), which is strided over B x M
        running[:, t] += running[:, t - 1]
    negc = running[rows, cols]  # (N, M)
    # a drawn padding row (item 0) also matches the zeros `_prefix` puts after the position
    negc = negc + (neg == 0).to(torch.int32) * (T - 1 - cols).to(torch.int32).unsqueeze(1)
    return torch.cat([pos.to(torch.int32), negc], dim=1)


@dataclass
class SASRecConfig:
    """Every hyper-parameter of the network and its objective (the checkpoint stores it)."""

    n_items: int = 0  # catalogue size (without padding); set by the wrapper at fit time
    max_len: int = 50
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 2
    dropout: float = 0.5  # residual / FFN / attention dropout
    emb_dropout: float = 0.5  # on the input token embeddings
    text_dim: int = 0  # 0 = no title embeddings
    n_attrs: int = 0  # attribute vocabulary size (0 = none)
    attrs_per_item: int = 0  # width of the padded attribute-id table
    id_dropout: float = 0.2  # prob. an item's ID embedding is zeroed in a training step
    item_mask: float = 0.2  # prob. a history item is hidden (its vector zeroed, position kept) in a training step
    # False: no trained per-item ID vector (the table stays zero and frozen), items are their public
    # title and attribute vectors only: far fewer trained numbers, which is what DP-SGD's noise favours
    item_ids: bool = True
    use_time: bool = True  # interval embedding + relative-time attention bias
    n_time_buckets: int = 16
    time_dropout: float = 0.1  # prob. a training row is shown without timestamps
    seen_bias: bool = True  # learned score offset for items already in the history
    item_bias: bool = True  # learned per-item score offset (a popularity prior)
    gated: bool = False  # HSTU-style pointwise gate on the attention output
    cooc_neighbors: int = 100  # co-occurrence head: top neighbours kept per item (0 = no head)
    cooc_half_life: float = 1.0  # history weight 0.5 ** (steps from the end / half-life)
    # graph-aware item vectors (GCE-GNN's global graph, one hop): each item's vector gets a learned
    # projection of the similarity-weighted mean of its top `graph_neighbors` co-occurrence neighbours'
    # vectors (the head's table, from the training sequences); 0 = off. Needs the head's table
    graph_neighbors: int = 0
    loss: Literal["full_ce", "sampled_softmax"] = "full_ce"
    n_negatives: int = 1024  # sampled_softmax only
    label_smoothing: float = 0.0
    # full_ce only: weight of an unsupervised contrastive term (CL4SRec / DuoRec's dropout views): each
    # history's last state under two dropout draws must pick the other out of the batch (InfoNCE)
    cl_weight: float = 0.0
    temperature: float = 0.5  # logits are divided by it in the loss and in scoring
    # weight (0..1) of a distillation term: at each labelled position the softmax is also pulled toward
    # the co-occurrence head's evidence of that position's own history (item-kNN as the teacher, its
    # tables built from the training sequences before training); 0 = off. It applies with full_ce and a
    # head (cooc_neighbors > 0) outside DP-SGD, and has no effect elsewhere (the run record says 0)
    cooc_distill: float = 0.3
    # loss over every position, labelled ones picked by masking (fixed shapes, so per-user
    # gradients can be taken with torch.func.vmap for DP-SGD); set by the wrapper, not the user
    dense_loss: bool = False


def time_buckets(dt_days: torch.Tensor, known: torch.Tensor, n_buckets: int) -> torch.Tensor:
    """Log2 buckets of |dt| in days: 1 = same day, 2 = 1 day, 3 = 2-3 days ...; 0 = unknown."""
    b = torch.floor(torch.log2(dt_days.abs() + 1.0)).clamp(max=n_buckets - 2) + 1.0
    return torch.where(known, b, torch.zeros_like(b)).long()


class ItemEncoder(nn.Module):
    """One vector per item = ID embedding + projected title embedding + mean attribute embedding.

    Content lives in buffers so checkpoints carry it and new (untrained) items are still
    represented by their title and attributes.
    """

    text: torch.Tensor | None
    attrs: torch.Tensor | None

    def __init__(self, cfg: SASRecConfig):
        super().__init__()
        self.cfg = cfg
        n = cfg.n_items + 1
        self.id_emb = nn.Embedding(n, cfg.d_model, padding_idx=0)
        nn.init.normal_(self.id_emb.weight, std=0.02)
        if not cfg.item_ids:  # kept (zero) so checkpoints, ONNX and warm starts keep one layout
            self.id_emb.weight.data.zero_()
            self.id_emb.weight.requires_grad_(False)
        self.register_buffer("text", torch.zeros(n, cfg.text_dim) if cfg.text_dim else None)
        self.text_proj = nn.Linear(cfg.text_dim, cfg.d_model) if cfg.text_dim else None
        self.register_buffer(
            "attrs", torch.zeros(n, cfg.attrs_per_item, dtype=torch.long) if cfg.n_attrs else None
        )
        self.attr_emb = nn.Embedding(cfg.n_attrs + 1, cfg.d_model, padding_idx=0) if cfg.n_attrs else None
        if self.attr_emb is not None:  # same scale as the IDs, or shared attributes drown them
            nn.init.normal_(self.attr_emb.weight, std=0.02)
            self.attr_emb.weight.data[0] = 0.0
        self.norm = nn.LayerNorm(cfg.d_model)

    def forward(self) -> torch.Tensor:
        w = self.id_emb.weight  # (I+1, D)
        ids = torch.arange(w.shape[0], device=w.device)
        return self._combine(w, self.text, self.attrs, ids)

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        """forward()[ids] (K, D), computing only those rows (each row is encoded on its own)."""
        text = self.text[ids] if self.text is not None else None
        attrs = self.attrs[ids] if self.attrs is not None else None
        return self._combine(self.id_emb.weight[ids], text, attrs, ids)

    def _combine(
        self, w: torch.Tensor, text: torch.Tensor | None, attrs: torch.Tensor | None, ids: torch.Tensor
    ) -> torch.Tensor:
        if self.training and self.cfg.id_dropout > 0:
            keep = torch.rand(w.shape[0], 1, device=w.device) >= self.cfg.id_dropout
            w = w * keep
        if self.text_proj is not None and text is not None:
            w = w + self.text_proj(text)  # (K, D)
        if self.attr_emb is not None and attrs is not None:
            a = self.attr_emb(attrs)  # (K, A, D)
            cnt = (attrs > 0).sum(1, keepdim=True).clamp(min=1)  # (K, 1)
            w = w + a.sum(1) / cnt
        w = self.norm(w)
        return w * (ids > 0).unsqueeze(1)  # the padding row stays zero


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: SASRecConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.gate = nn.Linear(cfg.d_model, cfg.d_model) if cfg.gated else None
        self.drop = nn.Dropout(cfg.dropout)
        self.time_bias = nn.Embedding(cfg.n_time_buckets, cfg.n_heads) if cfg.use_time else None
        if self.time_bias is not None:
            nn.init.zeros_(self.time_bias.weight)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, rel_t: torch.Tensor | None) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = self.qkv(x).split(D, dim=2)
        q = q.view(B, T, self.n_heads, D // self.n_heads).transpose(1, 2)  # (B, H, T, Dh)
        k = k.view(B, T, self.n_heads, D // self.n_heads).transpose(1, 2)
        v = v.view(B, T, self.n_heads, D // self.n_heads).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(D // self.n_heads)  # (B, H, T, T)
        if self.time_bias is not None and rel_t is not None:
            att = att + self.time_bias(rel_t).permute(0, 3, 1, 2)  # (B, T, T, H) -> (B, H, T, T)
        att = att.masked_fill(~mask, torch.finfo(att.dtype).min)
        att = self.drop(F.softmax(att, dim=-1))
        y = (att @ v).transpose(1, 2).reshape(B, T, D)  # (B, T, D)
        if self.gate is not None:
            y = y * torch.sigmoid(self.gate(x))
        return self.drop(self.proj(y))


class Block(nn.Module):
    """Pre-LayerNorm transformer block."""

    def __init__(self, cfg: SASRecConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.d_model, 4 * cfg.d_model),
            nn.GELU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(4 * cfg.d_model, cfg.d_model),
            nn.Dropout(cfg.dropout),
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor, rel_t: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), mask, rel_t)
        return x + self.mlp(self.ln2(x))


class SASRec(nn.Module):
    logq: torch.Tensor
    cooc_idx: torch.Tensor | None
    cooc_val: torch.Tensor | None
    cooc_alpha: torch.Tensor

    def __init__(self, cfg: SASRecConfig):
        super().__init__()
        if cfg.d_model % cfg.n_heads:
            raise ValueError(f"d_model ({cfg.d_model}) must be divisible by n_heads ({cfg.n_heads})")
        self.cfg = cfg
        self.scale = 1.0 / math.sqrt(cfg.d_model)
        self.items = ItemEncoder(cfg)
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.d_model)
        self.gap_emb = nn.Embedding(cfg.n_time_buckets, cfg.d_model) if cfg.use_time else None
        if self.gap_emb is not None:
            nn.init.normal_(self.gap_emb.weight, std=0.02)  # time starts as a small nudge
        self.drop = nn.Dropout(cfg.emb_dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.bias = nn.Parameter(torch.zeros(cfg.n_items + 1)) if cfg.item_bias else None
        self.seen_w = nn.Parameter(torch.zeros(())) if cfg.seen_bias else None
        # log sampling probability per item for sampled softmax (logQ correction)
        self.register_buffer("logq", torch.full((cfg.n_items + 1,), -math.log(max(cfg.n_items, 1))))
        # co-occurrence head: each item's top neighbours (row 0 = padding, no neighbours) from
        # the TRAINING sequences, and its weight; set after training (see set_cooccurrence)
        k = cfg.cooc_neighbors
        self.register_buffer("cooc_idx", torch.zeros(cfg.n_items + 1, k, dtype=torch.long) if k else None)
        self.register_buffer("cooc_val", torch.zeros(cfg.n_items + 1, k) if k else None)
        self.register_buffer("cooc_alpha", torch.zeros(()))
        self.graph_width = max(min(cfg.graph_neighbors, k), 0)  # neighbours the graph term reads (0 = off)
        self.graph_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False) if self.graph_width else None
        if self.graph_proj is not None:  # starts as the plain item table
            nn.init.zeros_(self.graph_proj.weight)

    # --- encoder ---------------------------------------------------------------------
    def encode(self, seq: torch.Tensor, ts: torch.Tensor | None, table: torch.Tensor) -> torch.Tensor:
        """Hidden state at every position (B, T, D) for left-padded `seq` (B, T)."""
        B, T = seq.shape
        pad = seq == 0  # (B, T)
        pos = torch.arange(self.cfg.max_len - T, self.cfg.max_len, device=seq.device)  # (T,)
        x = table[seq]  # (B, T, D); table rows are layer-normed
        if self.training and self.cfg.item_mask > 0:  # hide random history items (augmentation)
            x = x * (torch.rand(B, T, 1, device=seq.device) >= self.cfg.item_mask)
        x = x + self.pos_emb(pos)
        rel_t = None
        if self.cfg.use_time and self.gap_emb is not None:
            if ts is None:
                ts = torch.full(seq.shape, -1.0, device=seq.device)
            known = (ts >= 0) & ~pad  # (B, T)
            prev = torch.cat([ts[:, :1], ts[:, :-1]], dim=1)
            prev_known = torch.cat([torch.zeros_like(known[:, :1]), known[:, :-1]], dim=1)
            x = x + self.gap_emb(time_buckets(ts - prev, known & prev_known, self.cfg.n_time_buckets))
            both = known.unsqueeze(2) & known.unsqueeze(1)  # (B, T, T)
            rel_t = time_buckets(ts.unsqueeze(2) - ts.unsqueeze(1), both, self.cfg.n_time_buckets)
        x = self.drop(x) * (~pad).unsqueeze(-1)
        idx = torch.arange(T, device=seq.device)
        causal = idx.unsqueeze(0) <= idx.unsqueeze(1)  # (T, T): key <= query (no tril/eye: ONNX-friendly)
        mask = causal & ~pad.unsqueeze(1)  # (B, T, T): query t sees non-pad keys <= t
        mask = (mask | (idx.unsqueeze(0) == idx.unsqueeze(1))).unsqueeze(1)  # (B, 1, T, T); self always
        for block in self.blocks:
            x = block(x, mask, rel_t)
        return self.ln_f(x)  # (B, T, D)

    def item_table(self) -> torch.Tensor:
        t = self.items()  # (I+1, D)
        if self.graph_proj is None:
            return t
        idx, val = self._graph_edges(torch.arange(t.shape[0], device=t.device))
        return self._with_graph(t, t[idx], val)

    def _graph_edges(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(K, G) neighbour rows and normalised weights of items `ids` (K,) for the graph term."""
        assert self.cooc_idx is not None and self.cooc_val is not None
        idx, val = self.cooc_idx[ids, : self.graph_width], self.cooc_val[ids, : self.graph_width]
        return idx, val / val.sum(1, keepdim=True).clamp(min=1e-9)

    def _with_graph(self, t: torch.Tensor, nbr: torch.Tensor, val: torch.Tensor) -> torch.Tensor:
        """Item vectors `t` (K, D) plus the projected weighted mean of their neighbours' `nbr` (K, G, D)."""
        assert self.graph_proj is not None
        return t + self.graph_proj((nbr * val.unsqueeze(-1)).sum(1))

    def _prefix(self, seq: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """(N, T) item rows of each labelled position's own prefix seq[row, :col+1]; 0 elsewhere."""
        upto = torch.arange(seq.shape[1], device=seq.device).unsqueeze(0) <= cols.unsqueeze(1)  # (N, T)
        return torch.where(upto, seq[rows], torch.zeros_like(seq[rows]))

    def _add_seen(self, logits: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        """logits (N, I) over catalogue items + seen_w x (times each item occurs in the prefix)."""
        assert self.seen_w is not None
        w = (prefix > 0).to(logits.dtype) * self.seen_w  # (N, T); padding adds nothing
        return logits.scatter_add(1, (prefix - 1).clamp(min=0), w)

    # --- training --------------------------------------------------------------------
    def forward(
        self, seq: torch.Tensor, targets: torch.Tensor | None = None, ts: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """seq, targets: (B, T) item rows (0 = pad / no label); ts: (B, T) days or None.

        With targets: logits (N, I+1 or 1+n_neg) at the N labelled positions and the loss.
        Without: scores over all items (B, I) for the last position, loss None.
        """
        if self.training and ts is not None and self.cfg.time_dropout > 0:
            drop = torch.rand(ts.shape[0], 1, device=ts.device) < self.cfg.time_dropout
            ts = torch.where(drop, torch.full_like(ts, -1.0), ts)
        if targets is not None and self.cfg.loss == "sampled_softmax" and not self.cfg.dense_loss:
            return self._sampled_forward(seq, targets, ts)
        table = self.item_table()  # (I+1, D)
        h = self.encode(seq, ts, table)  # (B, T, D)
        if targets is None:
            return self.score_last(seq, h, table), None
        if self.cfg.dense_loss:  # every position (B*T); unlabelled ones are ignored by the loss
            B, T = seq.shape
            rows = torch.arange(B, device=seq.device).repeat_interleave(T)
            cols = torch.arange(T, device=seq.device).repeat(B)
        else:
            rows, cols = torch.nonzero(targets > 0, as_tuple=True)  # N labelled positions
        hn = h[rows, cols]  # (N, D)
        y = targets[rows, cols]  # (N,)
        tau = self.cfg.temperature
        hn = hn * self.scale  # dot products of two layer-normed vectors, scaled like attention
        if self.cfg.loss == "full_ce":
            # logits over catalogue rows 1..I only (no padding column), bias fused into the matmul
            w = table[1:]  # (I, D)
            logits = torch.addmm(self.bias[1:], hn, w.T) if self.bias is not None else hn @ w.T  # (N, I)
            if self.seen_w is not None:
                logits = self._add_seen(logits, self._prefix(seq, rows, cols))
            if tau != 1.0:
                logits = logits / tau
            if self.training and self.distill_weight() > 0:
                loss = self._distilled_loss(logits, seq, rows, cols, y)
            else:
                loss = F.cross_entropy(
                    logits.float(), y - 1, label_smoothing=self.cfg.label_smoothing, ignore_index=-1
                )  # y - 1 = -1 only at unlabelled positions (dense_loss)
            if self.cfg.cl_weight > 0 and self.training and not self.cfg.dense_loss:
                loss = loss + self.cfg.cl_weight * self._contrastive(seq, ts, table, h)
            return logits, loss
        # sampled softmax with logQ correction: negatives shared by the batch, drawn by popularity
        neg = torch.multinomial(self.logq.exp(), self.cfg.n_negatives, replacement=True)  # (M,)
        return self._sampled_loss(seq, rows, cols, hn, y, neg, table[y], table[neg])

    def distill_weight(self) -> float:
        """`cooc_distill` where it applies (full softmax, a head, not DP-SGD's dense loss), else 0."""
        on = self.cfg.loss == "full_ce" and self.cooc_idx is not None and not self.cfg.dense_loss
        return self.cfg.cooc_distill if on else 0.0

    def cooc_teacher(self, seq: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, steps: int = 8) -> torch.Tensor:
        """(N, I) the co-occurrence head's evidence for each labelled position's own history
        seq[row, :col+1] (its last `steps` items, recency-weighted as in `cooc_scores`), as a
        distribution over the catalogue items not in that history; all zeros where it has none."""
        back = torch.arange(steps, device=seq.device)  # 0 = the position itself, 1 = the item before ...
        at = cols.unsqueeze(1) - back  # (N, S) history columns
        items = torch.where(at >= 0, seq[rows.unsqueeze(1), at.clamp(min=0)], torch.zeros_like(at))  # (N, S)
        out = self._neighbour_evidence(items, back, self.cfg.cooc_half_life)  # (N, I+1)
        # items already in the history are left to the seen bias: their neighbour evidence (an item
        # co-occurs with the one before it) would teach the network to repeat the history
        out = out.scatter(1, self._prefix(seq, rows, cols), 0.0)[:, 1:]  # (N, I)
        return out / out.sum(1, keepdim=True).clamp(min=1e-12)

    def _distilled_loss(
        self, logits: torch.Tensor, seq: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor:
        """Cross-entropy against (1 - w) x the label + w x the co-occurrence teacher (`cooc_distill`
        = w); positions whose history has no neighbours keep the label alone."""
        logp = F.log_softmax(logits.float(), dim=1)  # (N, I)
        ls = self.cfg.label_smoothing
        ce = -(1 - ls) * logp.gather(1, (y - 1).unsqueeze(1)).squeeze(1) - ls * logp.mean(1)  # (N,)
        q = self.cooc_teacher(seq, rows, cols)  # (N, I)
        w = self.cfg.cooc_distill * (q.sum(1) > 0).to(logp.dtype)  # (N,)
        kd = -(q * logp).sum(1)  # (N,)
        return ((1 - w) * ce + w * kd).mean()

    def _contrastive(
        self, seq: torch.Tensor, ts: torch.Tensor | None, table: torch.Tensor, h: torch.Tensor
    ) -> torch.Tensor:
        """InfoNCE between each row's last state `h[:, -1]` and the same history encoded again
        (other dropout draws): the other rows of the batch are the negatives."""
        z1, z2 = h[:, -1], self.encode(seq, ts, table)[:, -1]  # (B, D) each
        logits = (z1 @ z2.T) * self.scale  # (B, B)
        return F.cross_entropy(logits.float(), torch.arange(len(z1), device=z1.device))

    def _sampled_loss(
        self, seq: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, hn: torch.Tensor, y: torch.Tensor,
        neg: torch.Tensor, w_pos: torch.Tensor, w_neg: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sampled softmax with logQ correction over the target (column 0) and the M shared negatives;
        `w_pos` (N, D) and `w_neg` (M, D) are their item vectors."""
        tau = self.cfg.temperature
        pos = (hn * w_pos).sum(-1, keepdim=True)  # (N, 1)
        negs = hn @ w_neg.T  # (N, M); the negatives are shared, so their per-item terms are
        if self.bias is not None:  # gathered once (M,) and broadcast, never as an (N, M) gather
            pos, negs = pos + self.bias[y].unsqueeze(1), negs + self.bias[neg]
        if self.seen_w is not None:
            counts = seen_counts(seq, rows, cols, y, neg).to(negs.dtype)
            pos, negs = pos + self.seen_w * counts[:, :1], negs + self.seen_w * counts[:, 1:]
        pos, negs = pos / tau - self.logq[y].unsqueeze(1), negs / tau - self.logq[neg]
        hit = neg.unsqueeze(0) == y.unsqueeze(1)  # accidental hits are not negatives
        logits = torch.cat([pos, negs.masked_fill(hit, torch.finfo(negs.dtype).min)], 1)  # (N, 1+M)
        zero = torch.zeros(len(y), dtype=torch.long, device=y.device)
        loss = F.cross_entropy(logits.float(), zero, label_smoothing=self.cfg.label_smoothing)
        return logits, loss

    def _sampled_forward(
        self, seq: torch.Tensor, targets: torch.Tensor, ts: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The sampled-softmax step encoding only the item rows it uses: the histories, the targets and
        the negatives (~B*T + M of the I+1 rows), not the whole catalogue. Same loss and gradients as
        encoding the full table (each row is encoded on its own; unused rows get no gradient)."""
        neg = torch.multinomial(self.logq.exp(), self.cfg.n_negatives, replacement=True)  # (M,)
        rows, cols = torch.nonzero(targets > 0, as_tuple=True)  # N labelled positions
        y = targets[rows, cols]  # (N,)
        pad = seq.new_zeros(1)  # row 0 (padding) is always local row 0: encode finds padding by id 0
        used, local = torch.unique(torch.cat([pad, seq.reshape(-1), y, neg]), return_inverse=True)
        n_seq, n_y = seq.numel(), len(y)
        table = self._rows(used)  # (K, D)
        h = self.encode(local[1 : 1 + n_seq].view_as(seq), ts, table)  # (B, T, D)
        hn = h[rows, cols] * self.scale
        w_pos, w_neg = table[local[1 + n_seq : 1 + n_seq + n_y]], table[local[1 + n_seq + n_y :]]
        return self._sampled_loss(seq, rows, cols, hn, y, neg, w_pos, w_neg)

    def _rows(self, used: torch.Tensor) -> torch.Tensor:
        """item_table()[used] (K, D), encoding only those rows and, with the graph term, their neighbours."""
        if self.graph_proj is None:
            return self.items.rows(used)
        idx, val = self._graph_edges(used)  # (K, G)
        ext, inv = torch.unique(torch.cat([used, idx.reshape(-1)]), return_inverse=True)
        t = self.items.rows(ext)
        k = len(used)
        return self._with_graph(t[inv[:k]], t[inv[k:]].view(k, idx.shape[1], -1), val)

    # --- scoring ---------------------------------------------------------------------
    def score_last(self, seq: torch.Tensor, h: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """Scores (B, I) over catalogue items (padding column dropped) after the last position."""
        u = h[:, -1] * self.scale  # (B, D)
        s = u @ table[1:].T  # (B, I)
        if self.bias is not None:
            s = s + self.bias[1:]
        if self.seen_w is not None:
            s = self._add_seen(s, seq)
        s = s / self.cfg.temperature
        if self.cooc_idx is not None:
            s = s + self.cooc_alpha * self.cooc_scores(seq)
        return s

    def cooc_scores(self, seq: torch.Tensor, half_life: float | None = None) -> torch.Tensor:
        """(B, I) item-to-item co-occurrence evidence for left-padded `seq` (B, T), in [0, 1]:
        the sum of each history item's neighbour similarities, weighted by recency (`half_life`,
        default the config's), divided by the row maximum so the head's weight means the same
        for every user."""
        T = seq.shape[1]
        steps = torch.arange(T - 1, -1, -1, device=seq.device)  # (T,)
        half_life = self.cfg.cooc_half_life if half_life is None else half_life
        out = self._neighbour_evidence(seq, steps, half_life)[:, 1:]  # (B, I)
        return out / out.amax(1, keepdim=True).clamp(min=1e-9)

    def _neighbour_evidence(self, items: torch.Tensor, steps: torch.Tensor, half_life: float) -> torch.Tensor:
        """(B, I+1) the sum of each of `items` (B, S)'s neighbour similarities, weighted by
        0.5 ** (`steps` (S,) from the end / `half_life`); padding items add nothing, and padding
        neighbours land in column 0."""
        assert self.cooc_idx is not None and self.cooc_val is not None
        B = items.shape[0]
        w = torch.pow(0.5, steps.to(self.cooc_val.dtype) / half_life) * (items > 0)  # (B, S)
        idx = self.cooc_idx[items].reshape(B, -1)  # (B, S*K) neighbour rows
        val = (self.cooc_val[items] * w.unsqueeze(-1)).reshape(B, -1)  # (B, S*K)
        out = torch.zeros(B, self.cfg.n_items + 1, device=items.device, dtype=val.dtype)
        return out.scatter_add(1, idx, val)

    @torch.no_grad()
    def set_cooccurrence(self, idx: torch.Tensor, val: torch.Tensor) -> None:
        """Install neighbour tables (I+1, K) as item rows (0 = none) and similarities."""
        assert self.cooc_idx is not None and self.cooc_val is not None
        if idx.shape != self.cooc_idx.shape or val.shape != self.cooc_val.shape:
            raise ValueError(f"neighbour tables must be {tuple(self.cooc_idx.shape)}, got {tuple(idx.shape)}")
        self.cooc_idx.copy_(idx)
        self.cooc_val.copy_(val)

    @torch.no_grad()
    def score(self, seq: torch.Tensor, ts: torch.Tensor | None = None) -> torch.Tensor:
        """Eval-mode scores (B, I); the reference the ONNX export is tested against."""
        logits, _ = self(seq, None, ts)
        return logits


def check_objective(cfg: SASRecConfig) -> None:
    """Refuses terms the chosen loss cannot carry, with what to change."""
    if cfg.cl_weight > 0 and cfg.loss != "full_ce":
        raise ConfigError(
            "sasrec: cl_weight needs loss='full_ce' (the contrastive term is not in the sampled loss)"
        )
    if not 0 <= cfg.cooc_distill < 1:
        raise ConfigError(f"sasrec: cooc_distill must be in [0, 1) (0 = off), got {cfg.cooc_distill}")
    if cfg.graph_neighbors < 0:
        raise ConfigError(f"sasrec: graph_neighbors must be >= 0 (0 = off), got {cfg.graph_neighbors}")
    if cfg.graph_neighbors > 0 and cfg.cooc_neighbors <= 0:
        raise ConfigError(
            "sasrec: graph_neighbors reads the co-occurrence head's table; set cooc_neighbors > 0 or graph_neighbors=0"
        )
