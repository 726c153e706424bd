"""Fine-tune the English MiniLM bi-encoder on a search dataset's judged training queries.

`soutui index build --fine-tune` calls `fine_tune`: in-batch negatives (InfoNCE, as
sentence-transformers' MultipleNegativesRankingLoss, scale 20) over (query, relevant product
text) pairs of the *fit* queries only, each pair weighted by its graded gain; the query's own
judged low-relevance products are its hard negatives (the dataset's judged products were
retrieved by a production search engine for that query, so they are hard and cheaper than a
BM25 pass). Training stops on a wall-time budget or when the validation queries' dense NDCG@10
has not improved for `patience` evaluations; the best state is kept. Validation NDCG here is
measured on a *pool* (the validation queries' judged products plus seeded random
distractors), since re-embedding the whole catalogue at every check would cost more than the
budget; the full-catalogue figures come afterwards from `evaluation.choose_method`.

The result is exported with `features.onnx_encoder` (fp32 and dynamic int8, pooling and
normalisation inside the graph) into one directory with the tokenizer, which
`SearchEngine.build(own_encoder=...)` copies into the index: catalogue vectors and served
queries are then encoded by the fine-tuned graphs (the served path is the measured path).
The budget is a cap on wall time from loading the model to the last check: a step starts only
when it and a validation check after it fit (timed by the slowest so far). Training is
resumable: a checkpoint is written at every evaluation; a finished run is reused when the same
data and settings (budget included) are asked for again or when it stopped early, resumed when a
larger budget is asked for, and started afresh for a smaller one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from soutui.evaluation import metrics

Qrels = dict[str, dict[str, float]]
ENCODER_FILES = ("minilm.onnx", "minilm.int8.onnx", "tokenizer.json")


@dataclass
class FineTuneConfig:
    minutes: float = 15.0  # wall-time budget for training, validation included
    batch_size: int = 32
    lr: float = 3e-5
    warmup_steps: int = 20
    scale: float = 20.0  # cosine -> logit, as MultipleNegativesRankingLoss
    min_gain: float = 1.0  # a pair is positive when relevance - 1 >= this (Home Depot: relevance >= 2)
    hard_max_gain: float = 0.5  # judged products below this gain are the query's hard negatives
    max_query_tokens: int = 32
    max_item_tokens: int = 64
    eval_every: int = 50  # steps between validation checks
    patience: int = 3
    valid_queries: int = 300  # at most this many validation queries in the pool check
    distractors: int = 2000  # random other products in the validation pool
    max_steps: int | None = None
    seed: int = 0
    threads: int = 1

    def __post_init__(self) -> None:
        if self.minutes <= 0 or self.batch_size < 2 or self.eval_every < 1:
            raise ValueError("fine-tune needs minutes > 0, batch_size >= 2 and eval_every >= 1")


@dataclass
class Pairs:
    queries: list[str]
    items: list[str]  # positive product text
    item_ids: list[str]
    weights: np.ndarray
    hard: list[str | None]  # a hard negative's text per pair, if the query has one


def training_pairs(qrels: Qrels, texts: dict[str, str], config: FineTuneConfig, epoch: int) -> Pairs:
    """One pair per query with a positive (a seeded random positive each epoch), shuffled."""
    rng = np.random.default_rng(config.seed * 1000 + epoch)
    rows: list[tuple[str, str, float, str | None]] = []
    for q in sorted(qrels):
        rels = qrels[q]
        pos = sorted(i for i, g in rels.items() if g >= config.min_gain and i in texts)
        if not pos:
            continue
        neg = sorted(i for i, g in rels.items() if g < config.hard_max_gain and i in texts)
        p = pos[int(rng.integers(len(pos)))]
        n = neg[int(rng.integers(len(neg)))] if neg else None
        rows.append((q, p, rels[p], n))
    order = rng.permutation(len(rows))
    rows = [rows[i] for i in order]
    top = max((g for _, _, g, _ in rows), default=1.0)
    return Pairs(
        [r[0] for r in rows],
        [texts[r[1]] for r in rows],
        [r[1] for r in rows],
        np.array([r[2] / top for r in rows], np.float32),
        [texts[r[3]] if r[3] else None for r in rows],
    )


class Encoder:
    """MiniLM (Hugging Face) with mean pooling and L2 normalisation, as the exported ONNX graph."""

    def __init__(self, source: Path) -> None:
        import torch
        from tokenizers import Tokenizer
        from transformers import AutoModel

        self.torch = torch
        self.bert = AutoModel.from_pretrained(str(source))
        self.tok = Tokenizer.from_file(str(source / "tokenizer.json"))
        self.tok.enable_padding(pad_id=0, pad_token="[PAD]")

    def __call__(self, texts: list[str], max_tokens: int) -> Any:
        torch = self.torch
        self.tok.enable_truncation(max_length=max_tokens)
        enc = self.tok.encode_batch(texts)
        ids = torch.tensor([e.ids for e in enc], dtype=torch.long)
        mask = torch.tensor([e.attention_mask for e in enc], dtype=torch.long)
        hidden = self.bert(input_ids=ids, attention_mask=mask)[0]
        m = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    def encode(self, texts: list[str], max_tokens: int = 256, batch: int = 64) -> np.ndarray:
        self.bert.eval()
        out = []
        with self.torch.no_grad():
            for s in range(0, len(texts), batch):
                out.append(self(texts[s : s + batch], max_tokens).numpy())
        return np.concatenate(out) if out else np.zeros((0, 384), np.float32)


def batch_loss(enc: Encoder, pairs: Pairs, idx: np.ndarray, config: FineTuneConfig) -> tuple[Any, float]:
    """Weighted in-batch InfoNCE over [positives; hard negatives]; returns (loss, in-batch accuracy).

    A column holding the same product as a row's positive is masked for that row (not a negative)."""
    torch = enc.torch
    q = enc([pairs.queries[i] for i in idx], config.max_query_tokens)
    hard = [pairs.hard[i] for i in idx if pairs.hard[i] is not None]
    docs = enc([pairs.items[i] for i in idx] + hard, config.max_item_tokens)  # type: ignore[operator]
    logits = config.scale * q @ docs.T  # (B, B + H)
    ids = [pairs.item_ids[i] for i in idx]
    same = torch.tensor([[a == b and r != c for c, b in enumerate(ids)] for r, a in enumerate(ids)])
    pad = torch.zeros((len(idx), len(hard)), dtype=torch.bool)
    logits = logits.masked_fill(torch.cat([same, pad], 1), -1e4)
    target = torch.arange(len(idx))
    w = torch.tensor(pairs.weights[idx])
    loss = (torch.nn.functional.cross_entropy(logits, target, reduction="none") * w).sum() / w.sum()
    acc = float((logits.argmax(1) == target).float().mean())
    return loss, acc


def in_batch_accuracy(enc: Encoder, pairs: Pairs, config: FineTuneConfig) -> float:
    """Mean in-batch accuracy of the loss over all of `pairs` (no gradient)."""
    enc.bert.eval()
    accs = []
    with enc.torch.no_grad():
        for s in range(0, len(pairs.queries) - 1, config.batch_size):
            idx = np.arange(s, min(s + config.batch_size, len(pairs.queries)))
            if len(idx) >= 2:
                accs.append(batch_loss(enc, pairs, idx, config)[1])
    return float(np.mean(accs)) if accs else 0.0


@dataclass
class ValidPool:
    queries: Qrels
    item_ids: list[str]
    texts: list[str]

    @classmethod
    def make(cls, valid: Qrels, texts: dict[str, str], config: FineTuneConfig) -> ValidPool:
        rng = np.random.default_rng(config.seed + 7)
        qs = sorted(valid)
        if len(qs) > config.valid_queries:
            qs = sorted(qs[i] for i in rng.choice(len(qs), config.valid_queries, replace=False))
        judged = sorted({i for q in qs for i in valid[q] if i in texts})
        others = sorted(set(texts) - set(judged))
        n = min(config.distractors, len(others))
        extra = [others[i] for i in sorted(rng.choice(len(others), n, replace=False))] if n else []
        ids = judged + extra
        return cls({q: valid[q] for q in qs}, ids, [texts[i] for i in ids])

    def ndcg(self, enc: Encoder, config: FineTuneConfig) -> float:
        qs = list(self.queries)
        qv = enc.encode(qs, config.max_query_tokens)
        iv = enc.encode(self.texts, config.max_item_tokens)
        top = np.argsort(-(qv @ iv.T), axis=1, kind="stable")[:, :10]
        ranked = [[self.item_ids[j] for j in row] for row in top]
        return float(np.mean([metrics.ndcg_at_k(r, self.queries[q], 10) for q, r in zip(qs, ranked, strict=True)]))


def fingerprint(fit: Qrels, valid: Qrels, texts: dict[str, str], config: FineTuneConfig) -> str:
    cfg = {k: v for k, v in asdict(config).items() if k not in ("minutes", "max_steps", "threads")}
    h = hashlib.sha256(json.dumps([sorted(fit.items()), sorted(valid.items()), cfg], sort_keys=True).encode())
    for i in sorted(texts):
        h.update(f"{i}\x00{texts[i]}\x00".encode())
    return h.hexdigest()[:16]


def fine_tune(
    texts: dict[str, str],
    fit: Qrels,
    valid: Qrels,
    work_dir: Path,
    config: FineTuneConfig | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Fine-tune on `fit`, early-stop on `valid`; export to `work_dir/encoder`. Returns (dir, record).

    `texts` maps product id -> the text the index embeds. `valid` must be disjoint from `fit`;
    neither may hold a test query (the caller passes only training queries)."""
    import torch

    from soutui.features.onnx_encoder import export_onnx, model_dir, quantize

    config = config or FineTuneConfig()
    say = log or (lambda _m: None)
    if set(fit) & set(valid):
        raise ValueError("fine-tuning and validation queries overlap")
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    work_dir.mkdir(parents=True, exist_ok=True)
    key = fingerprint(fit, valid, texts, config)
    # the queries this run may read, for audit: fit trains, valid early-stops; nothing else
    (work_dir / "queries.json").write_text(json.dumps({"fit": sorted(fit), "valid": sorted(valid)}))
    done = work_dir / "record.json"
    if done.exists() and json.loads(done.read_text()).get("fingerprint") == key:
        finished = json.loads(done.read_text())
        if _complete(work_dir / "encoder") and reusable(finished, config):
            say(f"fine-tune: reusing the finished run in {work_dir}")
            return work_dir / "encoder", finished
        if not _extends(finished, config):  # a smaller budget than the run on disk: start again
            say("fine-tune: the finished run used a larger budget than asked for; starting afresh")
            (work_dir / "checkpoint.pt").unlink(missing_ok=True)
        done.unlink()
    record = _train(texts, fit, valid, work_dir, config, key, say)
    best = work_dir / "best"
    enc_dir = work_dir / "encoder"
    shutil.rmtree(enc_dir, ignore_errors=True)
    enc_dir.mkdir(parents=True)
    say("fine-tune: exporting ONNX fp32 + int8")
    export_onnx(enc_dir / "minilm.onnx", source=best)
    quantize(enc_dir / "minilm.onnx", enc_dir / "minilm.int8.onnx")
    shutil.copyfile(model_dir() / "tokenizer.json", enc_dir / "tokenizer.json")
    done.write_text(json.dumps(record, indent=2))
    return enc_dir, record


def _complete(enc_dir: Path) -> bool:
    return all((enc_dir / f).is_file() for f in ENCODER_FILES)


def reusable(record: dict[str, Any], config: FineTuneConfig) -> bool:
    """A finished run answers a new request when it stopped early (more budget would change nothing)
    or ran under the same budget; otherwise the request trains on (larger) or starts again (smaller)."""
    if record.get("stopped_by") == "early stopping":
        return True
    ran = record.get("config", {})
    return bool(ran.get("minutes") == config.minutes and ran.get("max_steps") == config.max_steps)


def _extends(record: dict[str, Any], config: FineTuneConfig) -> bool:
    """Whether `config`'s budget is at least the finished run's, so training can resume from its checkpoint."""
    ran = record.get("config", {})
    more_time = config.minutes >= float(ran.get("minutes", 0.0))
    ran_steps = ran.get("max_steps")
    more_steps = config.max_steps is None or (ran_steps is not None and config.max_steps >= ran_steps)
    return more_time and more_steps


def fits(elapsed: float, step_s: float, check_s: float, budget_s: float) -> bool:
    """Whether one more step and the validation check after it end within the wall-time budget."""
    return elapsed + step_s + check_s <= budget_s


def _start(
    texts: dict[str, str], valid: Qrels, work: Path, config: FineTuneConfig, key: str, say: Callable[[str], None]
) -> tuple[Encoder, Any, ValidPool, dict[str, Any]]:
    """The model, optimiser, validation pool and loop state: resumed from a matching checkpoint, else fresh."""
    import torch

    from soutui.features.onnx_encoder import model_dir

    ckpt_path, best = work / "checkpoint.pt", work / "best"
    ck = torch.load(ckpt_path, weights_only=False) if ckpt_path.exists() else None
    if ck is None or ck["fingerprint"] != key:  # a fresh start: the stock model is the best so far
        ck = None
        enc = Encoder(model_dir())
        _save_model(enc, best)
    else:
        enc = Encoder(best)
        enc.bert.load_state_dict(ck["model"])
    opt = torch.optim.AdamW(enc.bert.parameters(), lr=config.lr, weight_decay=0.01)
    pool = ValidPool.make(valid, texts, config)
    st: dict[str, Any] = {"step": 0, "epoch": 0, "pos": 0, "elapsed": 0.0, "check_s": 0.0, "history": [], "bad": 0}
    if ck is not None:
        opt.load_state_dict(ck["opt"])
        st = {"check_s": 0.0, **ck["state"]}
        say(f"fine-tune: resuming at step {st['step']} ({st['elapsed'] / 60:.1f} min done)")
    else:
        t_check = time.time()
        before = pool.ndcg(enc, config)
        st["check_s"] = time.time() - t_check
        st["history"].append({"step": 0, "valid_pool_ndcg@10": round(before, 4)})
        st["best"] = before
        say(f"fine-tune: validation pool NDCG@10 before {before:.4f} "
            f"({len(pool.queries)} queries, {len(pool.item_ids)} products)")  # fmt: skip
    return enc, opt, pool, st


def _train(
    texts: dict[str, str], fit: Qrels, valid: Qrels, work: Path, config: FineTuneConfig, key: str, say: Callable[[str], None]
) -> dict[str, Any]:
    import torch

    pairs = training_pairs(fit, texts, config, 0)
    if len(pairs.queries) < 2:
        raise ValueError("fewer than 2 fit queries with a relevant product: nothing to fine-tune on")
    begin = time.time()
    enc, opt, pool, st = _start(texts, valid, work, config, key, say)
    t0 = begin - st["elapsed"]  # the budget counts everything from loading the model on, checks included
    budget, step_s = config.minutes * 60, 0.0  # step_s: the slowest step so far
    pairs = training_pairs(fit, texts, config, st["epoch"])
    stop = "budget"
    while fits(time.time() - t0, step_s, st["check_s"], budget) and (
        config.max_steps is None or st["step"] < config.max_steps
    ):
        t_step = time.time()
        if st["pos"] + 2 > len(pairs.queries):
            st["epoch"], st["pos"] = st["epoch"] + 1, 0
            pairs = training_pairs(fit, texts, config, st["epoch"])
        idx = np.arange(st["pos"], min(st["pos"] + config.batch_size, len(pairs.queries)))
        enc.bert.train()
        for g in opt.param_groups:
            g["lr"] = config.lr * min(1.0, (st["step"] + 1) / max(1, config.warmup_steps))
        loss, acc = batch_loss(enc, pairs, idx, config)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(enc.bert.parameters(), 1.0)
        opt.step()
        st["step"], st["pos"] = st["step"] + 1, st["pos"] + len(idx)
        step_s = max(step_s, time.time() - t_step)
        if st["step"] % config.eval_every == 0 or st["step"] == config.max_steps:
            if _evaluate(enc, opt, pool, config, st, t0, key, work, loss.item(), acc, say):
                stop = "early stopping"
                break
    else:
        stop = "max steps" if config.max_steps is not None and st["step"] >= config.max_steps else "budget"
    if st["history"][-1]["step"] != st["step"] and fits(time.time() - t0, 0.0, st["check_s"], budget):
        _evaluate(enc, opt, pool, config, st, t0, key, work, None, None, say)
    return {
        "fingerprint": key,
        "steps": st["step"],
        "epochs": round(st["epoch"] + st["pos"] / max(1, len(pairs.queries)), 3),
        "minutes": round((time.time() - t0) / 60, 2),
        "budget_minutes": config.minutes,
        "stopped_by": stop,
        "unchecked_steps": st["step"] - st["history"][-1]["step"],  # trained after the last check: not kept
        "fit_queries": len(fit),
        "pairs_per_epoch": len(pairs.queries),
        "valid_pool": {"queries": len(pool.queries), "products": len(pool.item_ids)},
        "valid_pool_ndcg@10_before": st["history"][0]["valid_pool_ndcg@10"],
        "valid_pool_ndcg@10_after": round(st["best"], 4),
        "best_step": max(st["history"], key=lambda h: h["valid_pool_ndcg@10"])["step"],
        "history": st["history"],
        "config": asdict(config),
    }


def _evaluate(
    enc: Encoder, opt: Any, pool: ValidPool, config: FineTuneConfig, st: dict[str, Any], t0: float,
    key: str, work: Path, loss: float | None, acc: float | None, say: Callable[[str], None],
) -> bool:  # fmt: skip
    """Validation check: keep the best model, checkpoint, and say whether patience ran out."""
    import torch

    t_check = time.time()
    ndcg = pool.ndcg(enc, config)
    st["check_s"] = max(st["check_s"], time.time() - t_check)
    st["elapsed"] = time.time() - t0
    st["history"].append(
        {"step": st["step"], "loss": None if loss is None else round(loss, 4),
         "batch_acc": None if acc is None else round(acc, 3), "valid_pool_ndcg@10": round(ndcg, 4),
         "minutes": round(st["elapsed"] / 60, 2)}
    )  # fmt: skip
    if ndcg > st["best"]:
        st["best"], st["bad"] = ndcg, 0
        _save_model(enc, work / "best")
    else:
        st["bad"] += 1
    torch.save({"fingerprint": key, "model": enc.bert.state_dict(), "opt": opt.state_dict(), "state": st}, work / "checkpoint.pt")
    last = f"loss {loss:.4f} batch acc {acc:.3f} " if loss is not None and acc is not None else ""
    say(f"fine-tune: step {st['step']} {last}valid pool NDCG@10 {ndcg:.4f} (best {st['best']:.4f}) "
        f"{st['elapsed'] / 60:.1f} min")  # fmt: skip
    return bool(st["bad"] >= config.patience)


def _save_model(enc: Encoder, out: Path) -> None:
    from soutui.features.onnx_encoder import model_dir

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    enc.bert.save_pretrained(str(tmp))
    shutil.copyfile(model_dir() / "tokenizer.json", tmp / "tokenizer.json")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
