"""Beauty replayed in time order: SASRec retrained with warm start vs never retrained vs retrained from scratch.

Protocol (issue 11 §1):
- The first `--time-frac` (0.8) of Beauty's time span is the past: one SASRec is trained on it
  (the fit `soutui retrain` uses: every event but each user's last, early-stopped on those last ones).
- The rest is fed in as live events, one simulated week at a time. Each week is scored before
  any model sees it: every event of the week is a target whose history is all of the user's
  earlier events (the gate's protocol, soutui.training.retrain.window_ranks): full ranking over
  each model's own catalogue, pessimistic ties, history not excluded; a target outside a model's
  catalogue (an item first bought after that model was trained) counts as a miss.
- After each week, models are retrained on everything so far (`--arms`): `warm` starts from the
  previous warm model (weights kept by item id, new items content-initialised from title +
  attributes) and runs the fit recipe (each user's last event only validates), `scratch` runs it
  from nothing, and `refit` is what `soutui retrain` publishes by default: the recipe warm-started
  from the previous refit model chooses the epoch count, then `Recommender.refit` trains that many
  epochs on every event, each user's last included (soutui.training.retrain.final_fit; two fits a
  week). `never` is the first model, never retrained.
- The catalogue at a time is the items bought before it (Beauty's item table has no listing dates),
  so every week brings new items.
- Every fit gets the same wall-clock budget (`--minutes-per-retrain`, the model's max_minutes).
- `paired_ndcg10`: every pair of arms over every replayed target, with a 95 % interval and a
  paired t-test p-value (soutui.training.retrain.paired_difference).

The full protocol (every week to the end of the data, a full budget per fit) takes many hours;
`--max-weeks` and `--minutes-per-retrain` cut it down, and the output says which was run.

    .venv/bin/python benchmarks/retrain_replay.py --minutes-per-retrain 1 --max-weeks 3 --json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from typing import Any

import numpy as np
import pandas as pd

from soutui.data.datasets import load_dataset
from soutui.data.sequences import SequenceData
from soutui.features.content import ItemContent, titles_for
from soutui.features.embeddings import embed_texts
from soutui.models.base import Recommender
from soutui.training.pipeline import parse_overrides
from soutui.training.retrain import (
    PROTOCOL,
    final_fit,
    fit_recipe,
    metrics_of,
    paired_difference,
    split_at,
    window_ranks,
)
from soutui.training.trainer import LoopTrainer

DAY = 86400


class Catalogue:
    """Beauty's items and title vectors; content for any vocabulary (a list of item ids)."""

    def __init__(self, items: pd.DataFrame, encoder: str) -> None:
        self.items = items
        ids = items["item_id"].astype(str).tolist()
        self.row = {x: i for i, x in enumerate(ids)}
        titles = titles_for(items, ids)
        self.text = (
            None if titles is None or encoder == "none" else embed_texts(titles, encoder, progress=False)
        )

    def content(self, vocab: np.ndarray) -> ItemContent:
        text = None
        if self.text is not None:
            rows = [self.row.get(str(x), -1) for x in vocab]
            text = np.stack(
                [self.text[r] if r >= 0 else np.zeros(self.text.shape[1], np.float32) for r in rows]
            )
        return ItemContent.from_items(self.items, vocab, text=text)


def upto(events: pd.DataFrame, t: int) -> SequenceData:
    """Every event before `t`, over the items bought before `t`."""
    return SequenceData.from_events(events[events["ts"] < t])


Fitted = tuple[Recommender, list[str]]  # a model and its item vocabulary (ids in index order)


def fit(
    data: SequenceData, cat: Catalogue, params: dict[str, Any], previous: Fitted | None, refit: bool = False
) -> tuple[Fitted, float]:
    """The fit recipe on `data` (warm from `previous` if given); with `refit`, then what a retrain
    publishes: that recipe refitted on every event for the epoch count it chose."""
    t0 = time.perf_counter()
    prev = previous[0] if previous is not None else None
    content = cat.content(data.item_ids)
    model = fit_recipe("sasrec", params, data, content, prev, LoopTrainer(progress=False))
    if refit:
        model, _ = final_fit(model, "sasrec", params, data, content, prev)
    return (model, [str(x) for x in data.item_ids]), time.perf_counter() - t0


RETRAINED = ("warm", "scratch", "refit")


def retrain_arms(
    models: dict[str, Fitted], row: dict[str, Any], data: SequenceData, cat: Catalogue, params: dict[str, Any]
) -> None:
    """Retrain every arm but `never` on `data` (everything up to the end of this week)."""
    for name in (n for n in RETRAINED if n in models):
        previous = None if name == "scratch" else models[name]
        models[name], row[f"{name}_fit_s"] = fit(data, cat, params, previous, refit=name == "refit")
        row[f"{name}_epochs"] = (models[name][0].training_report() or {}).get("epoch")
    log("retrains: " + ", ".join(f"{n} {row[f'{n}_fit_s']:.0f}s" for n in RETRAINED if n in models))


def replay(args: argparse.Namespace) -> dict[str, Any]:
    items, events = load_dataset("amazon-beauty", progress=False)
    events = events[events["ts"].fillna(0) > 0].sort_values("ts", kind="stable")
    lo, hi = int(events["ts"].min()), int(events["ts"].max())
    start = int(lo + args.time_frac * (hi - lo))
    weeks = int(np.ceil((hi + 1 - start) / (args.week_days * DAY)))
    weeks = min(weeks, args.max_weeks) if args.max_weeks else weeks
    cat = Catalogue(items, args.encoder)
    params = {"max_minutes": args.minutes_per_retrain, "threads": args.threads, "progress": False,
              "valid_users": args.valid_users, "seed": args.seed, **parse_overrides(args.overrides)}  # fmt: skip
    log(f"time span {_day(lo)}..{_day(hi)}; past until {_day(start)}; {weeks} week(s) replayed")
    first, first_s = fit(upto(events, start), cat, params, None)
    log(f"initial fit on {int((events['ts'] < start).sum())} events: {first_s:.0f}s")
    models = {"never": first, **{name: first for name in args.arms}}
    rows: list[dict[str, Any]] = []
    ranks: dict[str, list[np.ndarray]] = {name: [] for name in models}  # per-target ranks, every week
    for w in range(weeks):
        t, t_end = start + w * args.week_days * DAY, start + (w + 1) * args.week_days * DAY
        data = upto(events, t_end)
        window = split_at(data, t, args.max_targets, args.seed)
        row: dict[str, Any] = {
            "week": w + 1,
            "from": _day(t),
            "events": window.events,
            "targets": len(window.targets),
        }
        for name, (model, ids) in models.items():
            r = window_ranks(model, ids, data, window)
            ranks[name].append(r)
            row[name] = metrics_of(r, len(ids)) if len(window.targets) else None
        rows.append(row)
        log(json.dumps({k: (v["NDCG@10"] if isinstance(v, dict) else v) for k, v in row.items()}))
        if w + 1 < weeks:  # retrain on everything up to the end of this week
            retrain_arms(models, row, data, cat, params)
    out = summarise(args, rows, first_s, weeks, list(models))
    pooled = {n: np.concatenate(r) if r else np.zeros(0, np.int64) for n, r in ranks.items()}
    # paired over the same targets of every replayed week (week 1 included, where all arms are one model)
    names = list(models)
    out["paired_ndcg10"] = {f"{a} - {b}": paired_difference(pooled[a], pooled[b])
                            for i, b in enumerate(names) for a in names[i + 1 :]}  # fmt: skip
    return out


def summarise(
    args: argparse.Namespace, rows: list[dict[str, Any]], first_s: float, weeks: int, arms: list[str]
) -> dict[str, Any]:
    scored = [r for r in rows if r["never"] is not None]
    mean = {n: round(float(np.mean([r[n]["NDCG@10"] for r in scored])), 5) if scored else None for n in arms}
    hr = {n: round(float(np.mean([r[n]["HR@10"] for r in scored])), 5) if scored else None for n in arms}
    fits = {n: [r[f"{n}_fit_s"] for r in rows if f"{n}_fit_s" in r] for n in arms if n != "never"}
    return {
        "benchmark": "retrain_replay",
        "dataset": "amazon-beauty",
        "protocol": PROTOCOL,
        "reduced": bool(args.max_weeks) or args.minutes_per_retrain < 5,
        "settings": {k: v for k, v in vars(args).items() if k not in ("json",)},
        "weeks_replayed": weeks,
        "initial_fit_s": round(first_s, 1),
        "mean_ndcg10_over_weeks": mean,
        "mean_hr10_over_weeks": hr,
        "mean_retrain_wall_s": {n: round(float(np.mean(v)), 1) if v else None for n, v in fits.items()},
        "weeks": rows,
        "load_avg": list(os.getloadavg()),
        "cpu_count": os.cpu_count(),
    }


def _day(ts: int) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).date().isoformat()


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes-per-retrain", type=float, default=5.0, help="wall-clock budget of every fit")
    p.add_argument("--max-weeks", type=int, default=0, help="replay at most this many weeks (0 = to the end)")
    p.add_argument("--time-frac", type=float, default=0.8, help="share of the time span that is the past")
    p.add_argument("--week-days", type=float, default=7.0)
    p.add_argument(
        "--max-targets", type=int, default=0, help="score at most this many events per week (0 = all)"
    )
    p.add_argument("--valid-users", type=int, default=2000, help="users early stopping reads (seeded sample)")
    p.add_argument("--encoder", default="minilm", help="title encoder (none = attributes only)")
    p.add_argument("--arms", type=lambda v: [a for a in v.split(",") if a], default=list(RETRAINED),
                   help=f"retrained arms beside `never`, comma-separated, from {','.join(RETRAINED)}")  # fmt: skip
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if not set(args.arms) <= set(RETRAINED):
        p.error(f"--arms: choose from {', '.join(RETRAINED)}, got {','.join(args.arms)}")
    out = replay(args)
    if args.json:
        print(json.dumps(out, indent=1, default=str))
    else:
        print(f"mean NDCG@10 over {out['weeks_replayed']} week(s): {out['mean_ndcg10_over_weeks']}")
        print(f"mean retrain wall s: {out['mean_retrain_wall_s']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
