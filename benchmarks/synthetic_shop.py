"""A synthetic shop for scale tests: N items, M events, written as files the generic importer reads.

For scale, not quality: figures measured on it say how long and how much memory, never how
well a model ranks. Items fall into categories of ~1,000; item popularity is Zipf (exponent
`--zipf`) over a random permutation of the catalogue; users browse in sessions (geometric
length, mean `--session-len`), each session mostly inside one category (probability
`--stay`), otherwise anywhere by global popularity; events are views with carts and
purchases mixed in; timestamps grow per user (minutes inside a session, days between them);
titles are made of a few words, the brand and the item number.

    .venv/bin/python benchmarks/synthetic_shop.py --items 1000000 --events 10000000 --out /tmp/shop
    soutui data import generic --events /tmp/shop/events.parquet --items /tmp/shop/items.parquet --name synth
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

WORDS = np.array("soft gentle daily rich light pure fresh deep smooth silk rose aloe mint shea argan".split())
NOUNS = np.array("cream serum lotion mask oil balm gel cleanser toner shampoo soap scrub mist polish".split())
CATEGORY_SIZE = 1000


def zipf_sampler(n: int, exponent: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(cumulative probabilities over ranks, rank -> item permutation)."""
    w = 1.0 / np.arange(1, n + 1) ** exponent
    return np.cumsum(w / w.sum()), rng.permutation(n)


def draw(cdf: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    return np.minimum(np.searchsorted(cdf, rng.random(size)), len(cdf) - 1)


def items_table(n_items: int, rng: np.random.Generator) -> pa.Table:
    ids = np.arange(n_items).astype(str)
    cat = np.arange(n_items) // CATEGORY_SIZE
    brand = pd.Series(rng.integers(0, 500, n_items).astype(str))
    words = pd.Series(WORDS[rng.integers(len(WORDS), size=n_items)])
    title = words + " " + NOUNS[cat % len(NOUNS)] + " brand" + brand + " " + ids
    return pa.table({
        "item_id": pa.array(ids),
        "title": pa.array(title),
        "category": pa.array(np.char.add("c", cat.astype(str))),
        "brand": pa.array("brand" + brand),
        "price": pa.array(np.round(rng.lognormal(3.0, 0.8, n_items), 2)),
    })  # fmt: skip


def events_chunk(
    n_events: int, first_user: int, n_users: int, cdf: np.ndarray, perm: np.ndarray, args: argparse.Namespace,
    rng: np.random.Generator,
) -> pa.Table:  # fmt: skip
    """`n_events` events of users first_user .. first_user + n_users - 1, in sessions."""
    n_items = len(perm)
    lengths = rng.geometric(1.0 / args.session_len, size=n_events // max(int(args.session_len), 1) + 16)
    lengths = lengths[: np.searchsorted(np.cumsum(lengths), n_events) + 1]
    lengths[-1] -= lengths.sum() - n_events  # exactly n_events
    n_sessions = len(lengths)
    session = np.repeat(np.arange(n_sessions), lengths)
    anchor = perm[draw(cdf, n_sessions, rng)]  # each session's main item -> its category
    start = (anchor // CATEGORY_SIZE) * CATEGORY_SIZE
    in_cat = start[session] + perm[draw(cdf, n_events, rng)] % CATEGORY_SIZE  # popular-in-category, roughly
    anywhere = perm[draw(cdf, n_events, rng)]
    item = np.minimum(np.where(rng.random(n_events) < args.stay, in_cat, anywhere), n_items - 1)
    user = first_user + np.sort(rng.integers(0, n_users, n_sessions))[session]  # sessions grouped by user
    t_session = 1_700_000_000 + np.cumsum(rng.exponential(3 * 86400, n_sessions)).astype(np.int64) % (
        365 * 86400
    )
    offset = np.arange(n_events) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    ts = t_session[session] + offset * 60
    kind = np.array(["view", "cart", "purchase"])[np.searchsorted([0.87, 0.97], rng.random(n_events))]
    return pa.table({
        "user_id": pa.array(np.char.add("u", user.astype(str))),
        "session_id": pa.array(np.char.add("s", (session + first_user * 100).astype(str))),
        "item_id": pa.array(item.astype(str)),
        "event_type": pa.array(kind),
        "ts": pa.array(ts),
    })  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--users", type=int, default=0, help="0 = events / 20")
    ap.add_argument("--zipf", type=float, default=1.05, help="popularity exponent")
    ap.add_argument("--session-len", type=float, default=5.0)
    ap.add_argument("--stay", type=float, default=0.7, help="share of a session's events in its category")
    ap.add_argument("--chunk", type=int, default=2_000_000, help="events generated and written at a time")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    t0 = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(items_table(args.items, rng), out / "items.parquet")
    cdf, perm = zipf_sampler(args.items, args.zipf, rng)
    n_users = args.users or max(1, args.events // 20)
    chunks = max(1, -(-args.events // args.chunk))
    writer = None
    for c in range(chunks):  # each chunk holds its own users, so a user's events stay in order
        n = min(args.chunk, args.events - c * args.chunk)
        table = events_chunk(n, c * (n_users // chunks), n_users // chunks, cdf, perm, args, rng)
        writer = writer or pq.ParquetWriter(out / "events.parquet", table.schema)
        writer.write_table(table)
        print(f"events {min(args.events, (c + 1) * args.chunk):,}/{args.events:,}", file=sys.stderr)
    if writer is not None:
        writer.close()
    info = {"items": args.items, "events": args.events, "users": n_users, "seconds": round(time.perf_counter() - t0, 1),
            "files": [str(out / "items.parquet"), str(out / "events.parquet")]}  # fmt: skip
    (out / "shop.json").write_text(json.dumps(info, indent=1))
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
