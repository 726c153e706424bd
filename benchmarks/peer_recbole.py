"""External peer run: RecBole 1.2.1's SASRec on Amazon Beauty, scored by soutui's split and metric code.

RecBole trains on atomic files written from soutui's own sequences (timestamps = position in
the user's sequence), so its leave-one-out ('LS' valid_and_test, order TO) is exactly soutui's
`leave_one_out` split; this is checked example by example before training. The trained model
is then wrapped as a `score(histories)` scorer and measured by
`soutui.evaluation.protocol.evaluate_full_ranking`: full ranking over all 12,101 items,
pessimistic ties, history items kept and excluded. RecBole's own test figures are printed
beside ours as a sanity check (RecBole does NOT exclude history for sequential models).

Protocol: RecBole's standard SASRec (hidden 64, inner 256, 2 layers, 2 heads, dropout 0.5/0.5,
max_seq_length 50, Adam lr 1e-3, batch 256), full-softmax CE (no negative sampling), every
prefix of a training sequence is one example (RecBole's augmentation), early stopping on its
validation NDCG@10 (full ranking, stopping_step 10) with the best-validation weights kept,
CPU with `--threads` threads, and a wall-clock budget of `--minutes`, checked after each
epoch's validation as soutui's training loop does. Runs in its own venv:

    bash benchmarks/peers/setup_recbole.sh
    SOUTUI_HOME=... .venv-peers/bin/python benchmarks/peer_recbole.py [--minutes 20] [--threads 2] [--json]
"""

from __future__ import annotations

import os

# --- RecBole 1.2.1 on today's stack: fixes applied BEFORE recbole is imported -----------------
import numpy as np

for _old, _new in (
    ("float_", "float64"),
    ("complex_", "complex128"),
    ("unicode_", "str_"),
    ("bool8", "bool_"),
):
    if not hasattr(np, _old):  # numpy 2 removed these; RecBole's Config touches them at start
        setattr(np, _old, getattr(np, _new))
os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # its checkpoints pickle a Config

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402

from soutui.data.sequences import EvalSplit, LeaveOneOut  # noqa: E402
from soutui.evaluation.protocol import RankingProtocol, evaluate_full_ranking  # noqa: E402

PEER = "RecBole 1.2.1 SASRec (full-softmax CE)"
DATASET = "beauty"
MODEL_CONFIG: dict[str, Any] = {  # RecBole's properties/model/SASRec.yaml, spelled out
    "n_layers": 2,
    "n_heads": 2,
    "hidden_size": 64,
    "inner_size": 256,
    "hidden_dropout_prob": 0.5,
    "attn_dropout_prob": 0.5,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-12,
    "initializer_range": 0.02,
    "loss_type": "CE",
    "MAX_ITEM_LIST_LENGTH": 50,
}


def import_recbole() -> dict[str, Any]:
    """Import RecBole and undo what it does to the process at import time."""
    import scipy.sparse as sp
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.data.interaction import Interaction
    from recbole.model.sequential_recommender import SASRec  # also imports sine.py
    from recbole.trainer import Trainer
    from recbole.utils import init_logger, init_seed

    # sine.py switches anomaly detection on for the whole process, halving training speed
    torch.autograd.set_detect_anomaly(False)
    assert not torch.is_anomaly_enabled()
    if not hasattr(sp.dok_matrix, "_update"):  # scipy 1.17 removed it; only graph models call it

        def _update(self: Any, data: dict[Any, Any]) -> None:
            for key, value in data.items():
                self[key] = value

        sp.dok_matrix._update = _update
    return {
        "Config": Config,
        "create_dataset": create_dataset,
        "data_preparation": data_preparation,
        "Interaction": Interaction,
        "SASRec": SASRec,
        "Trainer": Trainer,
        "init_logger": init_logger,
        "init_seed": init_seed,
    }


class BudgetSpent(Exception):
    """Raised before an epoch once the wall-clock budget is used up."""


def budget_trainer(trainer_cls: type, seconds: float) -> type:
    """RecBole's Trainer with a wall-clock budget: no new epoch starts after `seconds`.

    The check sits where soutui's loop checks its budget (after an epoch and its validation);
    RecBole keeps the best-validation weights in its checkpoint file on every improvement.
    """

    class BudgetTrainer(trainer_cls):  # type: ignore[misc, valid-type]
        def __init__(self, config: Any, model: Any) -> None:
            super().__init__(config, model)
            self.t0 = time.perf_counter()
            self.epochs_done = 0
            self.epoch_seconds: list[float] = []
            self.stopped = "epochs"

        def _train_epoch(self, *args: Any, **kwargs: Any) -> Any:
            if self.epochs_done and time.perf_counter() - self.t0 > seconds:
                self.stopped = "time"
                raise BudgetSpent
            t = time.perf_counter()
            loss = super()._train_epoch(*args, **kwargs)
            self.epoch_seconds.append(time.perf_counter() - t)
            self.epochs_done += 1
            return loss

    return BudgetTrainer


def write_atomic(sequences: list[np.ndarray], users: np.ndarray, root: Path) -> Path:
    """`beauty.inter` with tokens = soutui indices and timestamp = position in the sequence."""
    d = root / DATASET
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{DATASET}.inter"
    with path.open("w") as f:
        f.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for u in users:
            for pos, item in enumerate(sequences[u]):
                f.write(f"{u}\t{item}\t{pos}\n")
    return path


def subset_split(split: EvalSplit, keep: np.ndarray) -> EvalSplit:
    """The rows of `split` whose user is in `keep` (smoke runs on a subset of users)."""
    return split.take(np.flatnonzero(np.isin(split.users, keep)))


class Tokens:
    """Maps between RecBole's internal ids and soutui's user / item indices (RecBole tokens)."""

    def __init__(self, dataset: Any, n_items: int) -> None:
        self.item = np.array([int(t) if t != "[PAD]" else -1 for t in dataset.field2id_token["item_id"]])
        self.user = np.array([int(t) if t != "[PAD]" else -1 for t in dataset.field2id_token["user_id"]])
        self.item_to_rb = np.zeros(n_items, dtype=np.int64)  # 0 = RecBole's padding id
        known = self.item >= 0
        self.item_to_rb[self.item[known]] = np.flatnonzero(known)
        self.has_item = np.zeros(n_items, dtype=bool)
        self.has_item[self.item[known]] = True


def check_same_split(
    split: LeaveOneOut, users: np.ndarray, train: Any, valid: Any, test: Any, tok: Tokens
) -> dict[str, int]:
    """Every RecBole example must be one of soutui's: same user, target and last 50 history items."""
    max_len = MODEL_CONFIG["MAX_ITEM_LIST_LENGTH"]

    def examples(ds: Any) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        inter = ds.inter_feat
        u = tok.user[inter["user_id"].numpy()]
        t = tok.item[inter["item_id"].numpy()]
        seqs, lens = inter["item_id_list"].numpy(), inter["item_length"].numpy()
        return u, t, [tok.item[s[:n]] for s, n in zip(seqs, lens, strict=True)]

    tr_u, tr_t, _ = examples(train)
    train_seqs = [split.train.sequences[u] for u in users]
    want_targets = np.sort(np.concatenate([s[1:] for s in train_seqs]))
    assert len(tr_t) == sum(max(len(s) - 1, 0) for s in train_seqs), "RecBole's training examples differ"
    assert np.array_equal(np.sort(tr_t), want_targets), (
        "RecBole's training targets differ from soutui's train split"
    )
    for name, ds, ours in (("valid", valid, split.valid), ("test", test, split.test)):
        ours = subset_split(ours, users)
        u, t, h = examples(ds)
        order = np.argsort(u, kind="stable")
        mine = np.argsort(ours.users, kind="stable")
        assert np.array_equal(u[order], ours.users[mine]), f"RecBole's {name} users differ from soutui's"
        assert np.array_equal(t[order], ours.targets[mine]), f"RecBole's {name} targets differ from soutui's"
        for i, j in zip(order, mine, strict=True):
            assert np.array_equal(h[i], ours.histories[j][-max_len:]), (
                f"RecBole's {name} history differs (user {u[i]})"
            )
    return {
        "train_examples": int(len(tr_t)),
        "train_interactions": int(sum(len(s) for s in train_seqs)),
        "valid_users": int(len(valid.inter_feat)),
        "test_users": int(len(test.inter_feat)),
    }


class RecBoleScorer:
    """A trained RecBole sequential model behind soutui's `score(histories, timestamps=None)` contract
    (RecBole's SASRec reads no event times, so timestamps are ignored)."""

    def __init__(self, model: Any, interaction_cls: type, tok: Tokens, n_items: int) -> None:
        self.model, self.interaction_cls, self.tok, self.n_items = model, interaction_cls, tok, n_items
        self.max_len = MODEL_CONFIG["MAX_ITEM_LIST_LENGTH"]

    @torch.no_grad()
    def score(self, histories: list[np.ndarray], timestamps: Any = None) -> np.ndarray:
        seq = np.zeros((len(histories), self.max_len), dtype=np.int64)  # RecBole pads on the right
        lens = np.zeros(len(histories), dtype=np.int64)
        for row, h in enumerate(histories):
            ids = self.tok.item_to_rb[np.asarray(h, dtype=np.int64)[-self.max_len :]]
            ids = ids[ids > 0]
            seq[row, : len(ids)], lens[row] = ids, max(len(ids), 1)
        inter = self.interaction_cls(
            {"item_id_list": torch.from_numpy(seq), "item_length": torch.from_numpy(lens)}
        )
        self.model.eval()
        rb = self.model.full_sort_predict(inter).numpy()  # (B, RecBole items incl. padding 0)
        out = rb[:, self.tok.item_to_rb].astype(np.float32)
        out[:, ~self.tok.has_item] = -np.inf  # only in a --limit-users smoke run
        return out


def recbole_config(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    return {
        **MODEL_CONFIG,
        "data_path": str(work),
        "checkpoint_dir": str(work / "saved"),
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "TIME_FIELD": "timestamp",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "train_neg_sample_args": None,
        "learner": "adam",
        "learning_rate": 0.001,
        "weight_decay": 0.0,
        "train_batch_size": args.batch_size,
        "epochs": args.max_epochs,
        "eval_step": 1,
        "stopping_step": 10,
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
        "metrics": ["Hit", "NDCG", "MRR", "Recall"],
        "topk": [10, 20],
        "valid_metric": "NDCG@10",
        "eval_batch_size": 2048,
        "use_gpu": False,
        "device": "cpu",
        "seed": args.seed,
        "reproducibility": True,
        "show_progress": False,
        "save_dataset": False,
        "save_dataloaders": False,
        "log_wandb": False,
        "worker": 0,
    }


def our_metrics(scorer: RecBoleScorer, split: EvalSplit, n_items: int) -> dict[str, dict[str, float]]:
    pick = ("NDCG@10", "HR@10", "NDCG@20", "HR@20", "MRR@10", "Coverage@20", "users")
    out = {}
    for tag, excl in (("kept", False), ("excluded", True)):
        m = evaluate_full_ranking(scorer, split, n_items, (10, 20), exclude_history=excl)  # type: ignore[arg-type]
        out[tag] = {k: m[k] for k in pick}
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    from soutui.training.pipeline import prepare

    t_load = time.perf_counter()
    p = prepare(args.dataset, encoder="none", progress=False)
    n_items, split = p.data.n_items, p.split
    users = (
        np.arange(p.data.n_users)
        if args.limit_users <= 0
        else np.arange(min(args.limit_users, p.data.n_users))
    )
    rb = import_recbole()
    torch.set_num_threads(args.threads)
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="soutui-recbole-"))
    write_atomic(p.data.sequences, users, work)
    cwd = os.getcwd()
    os.chdir(work)  # RecBole writes ./log and ./log_tensorboard into the working directory
    config = rb["Config"](model="SASRec", dataset=DATASET, config_dict=recbole_config(args, work))
    rb["init_seed"](config["seed"], config["reproducibility"])
    rb["init_logger"](config)
    dataset = rb["create_dataset"](config)
    train_data, valid_data, test_data = rb["data_preparation"](config, dataset)
    tok = Tokens(dataset, n_items)
    counts = check_same_split(split, users, train_data.dataset, valid_data.dataset, test_data.dataset, tok)
    load_s = time.perf_counter() - t_load
    print(
        f"split check passed: {counts} (RecBole example = one prefix of a training sequence)", file=sys.stderr
    )

    rb["init_seed"](config["seed"], config["reproducibility"])
    model = rb["SASRec"](config, train_data.dataset).to("cpu")
    torch.set_num_threads(args.threads)
    trainer = budget_trainer(rb["Trainer"], args.minutes * 60)(config, model)
    t0, c0 = time.perf_counter(), time.process_time()
    trainer.t0 = t0
    try:
        trainer.fit(train_data, valid_data, verbose=not args.quiet, saved=True, show_progress=False)
    except BudgetSpent:
        pass
    train_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    # RecBole's own test figure, from its best-validation checkpoint (history NOT excluded)
    rb_test = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    rb_test = {k: round(float(v), 6) for k, v in rb_test.items()}
    best_epoch = int(torch.load(trainer.saved_model_file, map_location="cpu")["epoch"]) + 1

    scorer = RecBoleScorer(trainer.model, rb["Interaction"], tok, n_items)
    t_eval = time.perf_counter()
    valid = our_metrics(scorer, subset_split(split.valid, users), n_items)
    test = our_metrics(scorer, subset_split(split.test, users), n_items)
    epochs = trainer.epochs_done
    os.chdir(cwd)
    if not args.work_dir:  # a temp dir of our own: atomic file, checkpoints, RecBole's logs
        shutil.rmtree(work, ignore_errors=True)
    return {
        "model": PEER,
        "dataset": args.dataset,
        "protocol": RankingProtocol().describe().replace("; history items NOT excluded", "")
        + "; history items kept and excluded; early stopping on validation NDCG@10 only",
        "config": {
            k: v
            for k, v in recbole_config(args, work).items()
            if k in MODEL_CONFIG
            or k in ("learning_rate", "train_batch_size", "stopping_step", "train_neg_sample_args", "seed")
        },
        "split_check": counts,
        "n_items": n_items,
        "valid": valid,
        "test": test,
        "recbole_own_test": {k: rb_test.get(k.lower()) for k in ("NDCG@10", "Hit@10", "NDCG@20", "Hit@20")},
        "recbole_best_valid_ndcg10": round(float(trainer.best_valid_score), 6),
        "train_s": round(train_s, 1),
        "train_cpu_s": round(cpu_s, 1),
        "train_epoch_s": round(sum(trainer.epoch_seconds), 1),
        "epochs": epochs,
        "best_epoch": best_epoch,
        "stopped": "time"
        if trainer.stopped == "time"
        else "epochs"
        if epochs >= args.max_epochs
        else "patience",
        "interactions_per_s": round(counts["train_interactions"] * max(epochs, 1) / max(train_s, 1e-9), 1),
        "examples_per_s_pure_train": round(
            counts["train_examples"] * max(epochs, 1) / max(sum(trainer.epoch_seconds), 1e-9), 1
        ),
        "threads": args.threads,
        "minutes_budget": args.minutes,
        "load_s": round(load_s, 1),
        "eval_s": round(time.perf_counter() - t_eval, 1),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "limit_users": args.limit_users,
    }


def print_table(r: dict[str, Any]) -> None:
    print(f"{r['model']} on {r['dataset']} ({r['n_items']} items), measured by soutui.evaluation.protocol")
    print(f"protocol: {r['protocol']}")
    print(f"config: {r['config']}")
    print(f"split check: {r['split_check']}")
    head = f"{'split':<6} {'history':<9} {'NDCG@10':>8} {'HR@10':>8} {'NDCG@20':>8} {'HR@20':>8} {'users':>6}"
    print(head)
    for s in ("valid", "test"):
        for tag in ("kept", "excluded"):
            m = r[s][tag]
            print(f"{s:<6} {tag:<9} {m['NDCG@10']:>8.4f} {m['HR@10']:>8.4f} {m['NDCG@20']:>8.4f} {m['HR@20']:>8.4f} {m['users']:>6}")  # fmt: skip
    own = r["recbole_own_test"]
    print(f"RecBole's own evaluator, test (history kept, as RecBole does for sequential models): "
          f"NDCG@10 {own['NDCG@10']:.4f} HR@10 {own['Hit@10']:.4f} | ours kept: "
          f"NDCG@10 {r['test']['kept']['NDCG@10']:.4f} HR@10 {r['test']['kept']['HR@10']:.4f}")  # fmt: skip
    print(f"RecBole's own evaluator, best validation NDCG@10 {r['recbole_best_valid_ndcg10']:.4f} | "
          f"ours, validation kept: {r['valid']['kept']['NDCG@10']:.4f}")  # fmt: skip
    print(f"train {r['train_s']:.0f} s wall ({r['train_cpu_s']:.0f} s CPU, {r['train_epoch_s']:.0f} s in training "
          f"epochs), {r['epochs']} epochs (best {r['best_epoch']}, stopped: {r['stopped']}), "
          f"{r['interactions_per_s']:.0f} interactions/s (train interactions x epochs / train s), "
          f"{r['threads']} threads, load {r['load_avg_1m']}")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="amazon-beauty")
    ap.add_argument("--minutes", type=float, default=20.0, help="wall-clock training budget")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--max-epochs", type=int, default=300, help="RecBole's default epoch cap")
    ap.add_argument("--seed", type=int, default=2020)
    ap.add_argument("--limit-users", type=int, default=0, help="smoke run on the first N users")
    ap.add_argument("--work-dir", default="", help="where RecBole's files go (default: a temp dir)")
    ap.add_argument("--quiet", action="store_true", help="no per-epoch RecBole log lines")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--out", default="", help="append the JSON line to this file")
    args = ap.parse_args(argv)
    out = os.path.abspath(args.out) if args.out else ""
    r = run(args)
    line = json.dumps(r, ensure_ascii=False)
    if out:
        with open(out, "a") as f:
            f.write(line + "\n")
    if args.json:
        print(line)
    else:
        print_table(r)


if __name__ == "__main__":
    main()
