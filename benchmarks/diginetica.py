"""DIGINETICA sessions (SR-GNN preprocessing): next-click P@20 / MRR@20 over all items.

Protocol: train on `train_sessions.txt` (anonymous sessions; the last click of a seeded 3%
of training sessions is held out as VALIDATION for early stopping, never the test file);
evaluate every row of `test_prefixes.tsv` (prefix -> next click) with FULL ranking over all
items of the catalogue, pessimistic ties, history not excluded. P@20 = HR@20 x 100 and
MRR@20 x 100, as in SR-GNN. A target unknown to the catalogue counts as a miss. Objective:
sampled softmax with logQ correction. Training is bounded (`--cpu-minutes`, `--minutes`).
The model is trained once per seed (`--seeds 0,1,2`; the validation hold-out stays fixed);
each seed is printed, then mean ± sample sd (ddof=1) over seeds.

    .venv/bin/python benchmarks/diginetica.py [--cpu-minutes 15] [--minutes 20] [--seeds 0,1,2] [--json]

The best figures so far (docs/sasrec.md, "A session head"): `--cpu-minutes 37.5 --minutes 0 --valid-from
recent --set session_neighbors=100 --catch-up` (validation on the latest 3 % of the sessions, then the
model catches up on them).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from curves import describe, mean_share, reached_by
from seeds import fmt, mean_sd, parse_seeds

from soutui.data.sequences import EvalSplit, SequenceData
from soutui.evaluation.protocol import ranking_metrics, target_ranks
from soutui.models.base import Recommender
from soutui.models.sasrec_recommender import SASRecRecommender
from soutui.models.sknn import SessionKNN
from soutui.training.pipeline import parse_overrides
from soutui.training.trainer import LoopTrainer

PUBLISHED = {"SR-GNN": (50.73, 17.59), "GCE-GNN": (54.22, 19.04)}  # P@20, MRR@20
PARAMS: dict[str, Any] = {
    "loss": "sampled_softmax", "n_negatives": 2048, "d_model": 64, "n_layers": 2, "n_heads": 2, "max_len": 20,
    "dropout": 0.2, "emb_dropout": 0.2, "seen_bias": True, "item_bias": True, "use_time": False,
    "batch_size": 512, "lr": 0.002, "valid_users": 5000, "cooc_neighbors": 100,
    "lr_schedule": "cosine",
    # the headline was measured at 1 (the default until 3 Dec 2026); 0.5, the default since, gave the same
    # figures here on seed 0 (docs/sasrec.md, "The logit temperature on Diginetica"). cooc_distill, on by
    # default since then, has no effect with sampled softmax
    "temperature": 1.0,
}  # fmt: skip
VALID_FROM = ("last-click", "prefixes", "recent")
VALIDATION_TEXT = {  # what replaces the docstring's last-click validation in the printed protocol
    "prefixes": "every prefix of a seeded 3% of the training sessions, held out whole, is VALIDATION",
    "recent": "every prefix of the latest 3% of the training sessions (by the file's date order), held out whole, "
    "is VALIDATION",
}


@dataclass
class CatchUp:
    """What `--catch-up` needs: every training session whole, the sessions' rows oldest first, and the
    recent fine-tune (fraction of the newest sessions, epochs, learning rate), None = the heads only."""

    every: SequenceData
    order: np.ndarray
    tune: tuple[float, int, float] | None


def load(
    valid_frac: float = 0.03, seed: int = 0, valid_from: str = "last-click"
) -> tuple[SequenceData, EvalSplit, EvalSplit, SequenceData, np.ndarray]:
    """(training sequences, validation split from training sessions, test split from the prefixes file,
    every training session whole: what `--catch-up` rebuilds the heads from, the session rows in
    date order: what its fine-tune takes the newest from).

    `valid_from="last-click"` (the headline's): the last click of a seeded 3 % of the sessions of
    length >= 3, the rest of each session trained on. `"prefixes"`: a seeded 3 % of the training
    sessions are held out whole and every prefix of each is a validation row (prefix -> next click),
    the shape of the test file, where a quarter of the rows are one-click prefixes. `"recent"`: as
    `"prefixes"`, but the held-out sessions are the latest 3 % of the file (SR-GNN's training file is
    in date order, and the test sessions are the days after it), so validation looks ahead in time
    as the test does.
    """
    from soutui.data.datasets import find_data_dir, load_dataset
    from soutui.data.importers.diginetica import read_test_prefixes

    items, events = load_dataset("diginetica-sessions")
    data = SequenceData.from_events(events, items, event_types=("view",), group="session_id")
    assert data.timestamps is not None
    first = np.array([t[0] for t in data.timestamps])  # the synthetic clock: file order = date order
    data.timestamps = None  # synthetic clock: order only
    rng = np.random.default_rng(seed)
    seqs = list(data.sequences)
    if valid_from not in VALID_FROM:
        raise SystemExit(f"--valid-from must be one of {VALID_FROM}, got {valid_from!r}")
    cand = np.flatnonzero([len(s) >= (3 if valid_from == "last-click" else 2) for s in seqs])
    n_valid = int(len(cand) * valid_frac)
    if valid_from == "recent":
        vsel = np.sort(cand[np.argsort(first[cand], kind="stable")[-n_valid:]])
    else:
        vsel = np.sort(rng.choice(cand, n_valid, replace=False))
    if valid_from == "last-click":
        valid = EvalSplit(vsel, [seqs[u][:-1] for u in vsel], np.array([seqs[u][-1] for u in vsel]), "valid")
        for u in vsel:
            seqs[u] = seqs[u][:-1]
    else:
        rows = [(u, k) for u in vsel for k in range(1, len(seqs[u]))]
        valid = EvalSplit(
            np.array([u for u, _ in rows]), [seqs[u][:k] for u, k in rows],
            np.array([seqs[u][k] for u, k in rows]), "valid",
        )  # fmt: skip
        for u in vsel:  # the held-out sessions are not trained on (emptied: user rows keep their places)
            seqs[u] = seqs[u][:0]
    train = data.with_sequences(seqs, None)
    prefixes, targets = read_test_prefixes(
        find_data_dir(dataset="diginetica-sessions") / "diginetica-sessions" / "test_prefixes.tsv"
    )
    idx = data.item_index
    hist = [np.array([idx[str(x)] for x in p if str(x) in idx], dtype=np.int64) for p in prefixes]
    tgt = np.array([idx.get(str(t), -1) for t in targets], dtype=np.int64)
    test = EvalSplit(np.arange(len(tgt)), hist, tgt, "test")
    return train, valid, test, data, np.argsort(first, kind="stable")


def newest(data: SequenceData, order: np.ndarray, frac: float) -> np.ndarray:
    """The rows of the newest `frac` of `data`'s non-empty sequences (`order`: rows, oldest first; a
    `--limit-train` run has the first rows only)."""
    rows = [int(u) for u in order if u < len(data.sequences) and len(data.sequences[u])]
    return np.array(rows[len(rows) - max(1, int(len(rows) * frac)) :], dtype=np.int64)


def valid_ndcg10(model: Recommender, valid: EvalSplit) -> float:
    """NDCG@10 on every validation row (full ranking, history not excluded)."""
    ranks, _ = target_ranks(model, valid, progress=False)
    return float(ranking_metrics(ranks, (10,))["NDCG@10"])


def catch_up(
    model: SASRecRecommender, train: SequenceData, valid: EvalSplit, cu: CatchUp
) -> tuple[SASRecRecommender, dict[str, Any] | None]:
    """The model caught up on every training session, and what its fine-tune's rehearsal read.

    Without `cu.tune`: the heads rebuilt from every session (`refit_heads`). With it, a rehearsal on
    VALIDATION first: the model fine-tuned on the newest trained sessions (`tune_recent`), its head
    weights chosen again on validation, must beat it there; then the fine-tune is made on the newest
    of every session (the held-out ones included), the heads rebuilt from all at the rehearsal's
    weights. Otherwise the heads only."""
    if cu.tune is None:
        return model.refit_heads(cu.every), None
    frac, epochs, lr = cu.tune
    trial = model.tune_recent(train, newest(train, cu.order, frac), epochs=epochs, lr=lr, valid=valid)
    before, after = valid_ndcg10(model, valid), valid_ndcg10(trial, valid)
    session = None if trial.session_ is None else trial.session_.weight
    record = {"frac": frac, "epochs": epochs, "lr": lr, "rehearsal_valid_ndcg10": [round(before, 5), round(after, 5)],
              "applied": after > before, "head_weights": {"cooc": float(trial._net().cooc_alpha), "session": session}}  # fmt: skip
    if after > before:
        rows = newest(cu.every, cu.order, frac)
        return model.tune_recent(cu.every, rows, epochs=epochs, lr=lr, weights_from=trial), record
    return model.refit_heads(cu.every), record


def protocol(valid_from: str, catch_up: str | None) -> str:
    """The docstring's protocol, with the validation rows and the catch-up this run used."""
    text = __doc__.split("\n\n")[1].replace("\n", " ")
    if valid_from != "last-click":
        text += f" This run: {VALIDATION_TEXT[valid_from]} (not the last click)."
    if catch_up is not None:
        text += (f" After training, the model catches up on every training session (`--catch-up-tune {catch_up}`: "
                 "the heads rebuilt, the network fine-tuned on the newest sessions if a rehearsal on validation "
                 "gains); its wall time counts in model_wall_s, not in train_s.")  # fmt: skip
    return text


def parse_tune(text: str) -> tuple[float, int, float] | None:
    """`FRAC:EPOCHS:LR` (e.g. 0.15:6:0.0006) or `off`."""
    if text == "off":
        return None
    try:
        frac, epochs, lr = text.split(":")
        out = (float(frac), int(epochs), float(lr))
    except ValueError:
        raise SystemExit(f"--catch-up-tune must be FRAC:EPOCHS:LR (e.g. 0.15:6:0.0006) or off, got {text!r}") from None
    if not 0 < out[0] <= 1 or out[1] < 1 or out[2] <= 0:
        raise SystemExit(f"--catch-up-tune: FRAC in (0, 1], EPOCHS >= 1, LR > 0; got {text!r}")
    return out


def run_seed(
    params: dict[str, Any],
    train: SequenceData,
    valid: EvalSplit,
    test: EvalSplit,
    progress: bool,
    save_dir: str | None = None,
    cu: CatchUp | None = None,
) -> dict[str, Any]:
    """Train one seed and measure P@20 / MRR@20 on the test prefixes (and the transformer alone). With
    `cu`, the model catches up on every training session after training and validation (`catch_up`:
    the held-out sessions join the heads' counts, and with a fine-tune the network's too)."""
    model = SASRecRecommender(**params).use_trainer(LoopTrainer())
    t0, c0 = time.perf_counter(), time.process_time()
    model.fit(train, valid)
    train_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    if save_dir:  # the trained model, for later study (e.g. `soutui evaluate --checkpoint`)
        model.save(os.path.join(save_dir, f"seed{params['seed']}"))
    known = test.targets >= 0
    st = model.training_report() or {}  # the validated fit's (a catch-up's fine-tune has its own)
    before = tune = catch_up_cpu = catch_up_s = None
    if cu is not None:
        before = test_figures(model, train, test, progress)
        t0, c0 = time.perf_counter(), time.process_time()
        model, tune = catch_up(model, train, valid, cu)
        catch_up_s, catch_up_cpu = round(time.perf_counter() - t0, 1), round(time.process_time() - c0, 1)
        if save_dir:  # the served model too (the one measured below)
            model.save(os.path.join(save_dir, f"seed{params['seed']}-caught-up"))

    def evaluate_test() -> dict[str, float]:
        return test_figures(model, train, test, progress)

    net = model._net()
    alone = None
    if net.cooc_idx is not None or model.session_ is not None:  # head weight 0 = the transformer alone
        with model.cooc_weight(0.0):
            alone = evaluate_test()
    no_session = None
    if model.session_ is not None and model.session_.weight:  # the same model without its session head
        kept, model.session_.weight = model.session_.weight, 0.0
        no_session = evaluate_test()
        model.session_.weight = kept
    return {
        "seed": params["seed"], **evaluate_test(), "transformer_alone": alone, "without_session_head": no_session,
        "before_catch_up": before, "catch_up_tune": tune, "catch_up_s": catch_up_s, "catch_up_cpu_s": catch_up_cpu,
        "model_wall_s": round(train_s + (catch_up_s or 0.0), 1),  # training + catch-up: the model's whole budget
        "session_head": None if model.session_ is None else model.session_.report(),
        "cooc_weight": float(net.cooc_alpha), "cooc_valid": model.cooc_valid_, "unknown_targets": int((~known).sum()),
        "train_s": round(train_s, 1), "train_cpu_s": round(cpu_s, 1), "epochs": st.get("epoch"),
        "best_epoch": st.get("best_epoch"), "stopped": st.get("stopped"), "valid_ndcg10_best": st.get("best_metric"),
        "history": st.get("history", []), "valid_reached": reached_by(st.get("history", [])),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }  # fmt: skip


def test_figures(model: Recommender, train: SequenceData, test: EvalSplit, progress: bool) -> dict[str, float]:
    """P@20 / MRR@20 (x 100) of `model` on the test prefixes; a target unknown to the catalogue is a miss."""
    known = test.targets >= 0
    ranks = np.full(len(test), train.n_items, dtype=np.int64)
    ranks[known], _ = target_ranks(model, test.take(np.flatnonzero(known)), progress=progress)
    m = ranking_metrics(ranks, (20,))
    # 4 decimals in the record (printed with 2, as published): a comparison at the published precision
    # can be a tie, and the record should say which way it leans
    return {"P@20": round(100 * m["HR@20"], 4), "MRR@20": round(100 * m["MRR@20"], 4)}


def peer_sknn(train: SequenceData, test: EvalSplit, progress: bool) -> dict[str, Any]:
    """Session-kNN (V-SKNN, soutui.models.sknn, its defaults) on the same protocol: deterministic, no training loop."""
    t0 = time.perf_counter()
    model = SessionKNN().fit(train)
    fit_s = time.perf_counter() - t0
    figures = test_figures(model, train, test, progress)
    return {**figures, "params": model.params(), "fit_s": round(fit_s, 1),
            "test_s": round(time.perf_counter() - t0 - fit_s, 1)}  # fmt: skip


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """mean ± sd (ddof=1) over seeds of the headline and the transformer-alone figures."""
    out = {k: mean_sd([r[k] for r in runs]) for k in ("P@20", "MRR@20", "train_s", "model_wall_s")}
    share = mean_share(runs)  # validation NDCG@10 after 10 minutes / its final value
    if share is not None:
        out["valid share @10 min"] = share
    if all(r["transformer_alone"] for r in runs):
        for k in ("P@20", "MRR@20"):
            out[f"transformer_alone {k}"] = mean_sd([r["transformer_alone"][k] for r in runs])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu-minutes", type=float, default=15.0)
    ap.add_argument("--minutes", type=float, default=20.0, help="wall-clock training budget")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="key=value model parameter")
    ap.add_argument(
        "--limit-test", type=int, default=0, help="evaluate only the first N test rows (smoke runs)"
    )
    ap.add_argument(
        "--limit-train", type=int, default=0, help="train on the first N sessions only (smoke runs)"
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--valid-from", choices=VALID_FROM, default="last-click",
        help="validation rows: the last click of random training sessions, every prefix of random held-out "
        "sessions (as the test file), or every prefix of the latest held-out sessions",
    )  # fmt: skip
    ap.add_argument(
        "--catch-up", action="store_true",
        help="after training, rebuild the co-occurrence and session heads from every training session "
        "(the held-out validation sessions too; the chosen weights stay), after the fine-tune below",
    )  # fmt: skip
    ap.add_argument(
        "--catch-up-tune", default="0.15:6:0.0006", metavar="FRAC:EPOCHS:LR",
        help="with --catch-up: fine-tune the network on the newest FRAC of the sessions, EPOCHS at LR, "
        "if a rehearsal on validation (the newest trained sessions, the head weights chosen again) gains; "
        "'off' = the heads only",
    )  # fmt: skip
    ap.add_argument("--seeds", default="0", help="comma list of training seeds (e.g. 0,1,2)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--save-dir", default=None, help="save each seed's trained model under DIR/seed<N> "
                    "(with --catch-up, the caught-up model under DIR/seed<N>-caught-up too)")
    ap.add_argument("--peer-sknn", action="store_true", help="also measure session-kNN (V-SKNN) as a peer")
    ap.add_argument("--peers-only", action="store_true", help="measure the peers only (no SASRec training)")
    ap.add_argument(
        "--out", default=None, help="also append each seed's result (a JSON line) as soon as it is done"
    )
    args = ap.parse_args(argv)
    import torch

    seeds = parse_seeds(args.seeds)
    torch.set_num_threads(args.threads)
    train, valid, test, every, order = load(valid_from=args.valid_from)
    cu = CatchUp(every, order, parse_tune(args.catch_up_tune)) if args.catch_up else None
    if args.limit_train:
        train = train.with_sequences(train.sequences[: args.limit_train], None)
    if args.limit_test:
        test = test.take(np.arange(min(args.limit_test, len(test))))
    params = {**PARAMS, "max_cpu_minutes": args.cpu_minutes, "max_minutes": args.minutes, "progress": not args.json,
              "threads": args.threads, **parse_overrides(args.overrides)}  # fmt: skip
    runs = []
    for seed in [] if args.peers_only else seeds:  # each seed is written out when done (a stopped run keeps them)
        runs.append(run_seed({**params, "seed": seed}, train, valid, test, not args.json, args.save_dir,
                             cu))  # fmt: skip
        if args.out:
            with open(args.out, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(runs[-1], default=str) + "\n")
    peer = peer_sknn(train, test, not args.json) if args.peer_sknn or args.peers_only else None
    smoke = args.limit_train or args.limit_test
    res_summary = summarise(runs) if runs else {}
    res = {
        "protocol": protocol(args.valid_from, args.catch_up_tune if args.catch_up else None)
        + (" SMOKE RUN (limited data)." if smoke else ""),
        "seeds": seeds, "runs": runs, "summary": res_summary, "test_rows": len(test), "items": train.n_items,
        "params": params, "published": PUBLISHED, "valid_from": args.valid_from, "valid_rows": len(valid),
        "catch_up": args.catch_up, "catch_up_tune": args.catch_up_tune if args.catch_up else None,
        "peer_sknn": peer, "goal": goal(res_summary, runs, args.threads),
    }  # fmt: skip
    if args.json:
        json.dump(res, sys.stdout, indent=1, default=str)
        return 0
    print(res["protocol"])
    for r in runs:
        alone = r["transformer_alone"]
        head = f"transformer alone P@20 {alone['P@20']:.2f} MRR@20 {alone['MRR@20']:.2f}; " if alone else ""
        print(f"seed {r['seed']}: {head}with co-occurrence head (weight {r['cooc_weight']:g}) P@20 {r['P@20']:.2f}  "
              f"MRR@20 {r['MRR@20']:.2f}  ({r['epochs']} epochs, train {r['train_s']:.0f} s wall / {r['train_cpu_s']:.0f} s "
              f"CPU, stopped: {r['stopped']}, load {r['load_avg_1m']}); {describe(r['valid_reached'])}")  # fmt: skip
        if r["catch_up_s"] is not None:
            print(f"  catch-up {r['catch_up_s']:.0f} s wall / {r['catch_up_cpu_s']:.0f} s CPU; training + catch-up "
                  f"{r['model_wall_s'] / 60:.1f} wall-minutes")  # fmt: skip
    summ = res["summary"]
    if not runs:
        print(f"session-kNN (V-SKNN, same protocol): P@20 {peer['P@20']:.2f}  MRR@20 {peer['MRR@20']:.2f}" if peer else "")
        return 0
    print(f"soutui SASRec (sampled softmax + logQ + co-occurrence head), mean ± sd over seeds {seeds}: "
          f"P@20 {fmt(summ['P@20'], 2)}  MRR@20 {fmt(summ['MRR@20'], 2)}  ({res['test_rows']} test rows, "
          f"{res['items']} items)")  # fmt: skip
    if "valid share @10 min" in summ:
        print(
            f"validation NDCG@10 after 10 minutes / final, mean ± sd: {fmt(summ['valid share @10 min'], 3)}"
        )
    if "transformer_alone P@20" in summ:
        print(f"transformer alone, mean ± sd: P@20 {fmt(summ['transformer_alone P@20'], 2)}  "
              f"MRR@20 {fmt(summ['transformer_alone MRR@20'], 2)}")  # fmt: skip
    if peer is not None:
        print(f"session-kNN (V-SKNN, same protocol, measured here): P@20 {peer['P@20']:.2f}  MRR@20 {peer['MRR@20']:.2f}")
    for k, (p20, mrr20) in PUBLISHED.items():
        print(f"{k} (published): P@20 {p20:.2f}  MRR@20 {mrr20:.2f}")
    g = res["goal"]
    print(f"goal ({g['goal']}): {'MET' if g['met'] else 'NOT met'} ({g['why']})")
    return 0


def goal(summ: dict[str, Any], runs: list[dict[str, Any]], threads: int) -> dict[str, Any]:
    """Issue 15's goal: the 3-seed mean at or above GCE-GNN's published P@20 / MRR@20 (at their two
    decimals), each seed's model (training + catch-up) within 20 wall-minutes on at most 2 threads."""
    p20, mrr20 = PUBLISHED["GCE-GNN"]
    text = (f"mean of >= 3 seeds P@20 >= {p20} and MRR@20 >= {mrr20}, training + catch-up <= 20 wall-minutes "
            "on <= 2 threads")  # fmt: skip
    if threads > 2:
        return {"goal": text, "met": False, "why": f"{threads} threads"}
    if len(runs) < 3:
        return {"goal": text, "met": False, "why": f"{len(runs)} seed(s)"}
    mean_p, mean_m = round(summ["P@20"]["mean"], 2), round(summ["MRR@20"]["mean"], 2)
    slowest = max(r["model_wall_s"] for r in runs)
    met = mean_p >= p20 and mean_m >= mrr20 and slowest <= 1200
    why = (f"P@20 {summ['P@20']['mean']:.3f}, MRR@20 {summ['MRR@20']['mean']:.3f} (compared at 2 decimals), "
           f"slowest model {slowest / 60:.1f} wall-minutes")  # fmt: skip
    return {"goal": text, "met": met, "why": why}


if __name__ == "__main__":
    sys.exit(main())
