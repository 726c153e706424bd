"""`soutui index build`, `soutui search`, `soutui evaluate-search`: thin wrappers over soutui.search."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from soutui.cli import UserError
from soutui.cli.common import add_store_arg, print_json, print_table
from soutui.config import home_dir

FILTER_KEYS = ("category", "brand", "min_price", "max_price", "in_stock")
METHODS = ["ltr", "hybrid", "bm25", "dense"]
ENCODER_CHOICES = {"minilm": ["minilm"], "use": ["use"], "both": ["minilm", "use"]}


def default_index_dir(dataset: str) -> Path:
    return home_dir() / "indexes" / dataset


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("index", help="build search indexes")
    isub = p.add_subparsers(dest="index_command", metavar="ACTION", required=True)
    _register_build(
        isub.add_parser("build", help="keyword + semantic indexes (and the LTR ranker when labels exist)")
    )
    _register_search(sub.add_parser("search", help="search a built index"))
    _register_evaluate(
        sub.add_parser("evaluate-search", help="graded NDCG of a search method on the by-query test split")
    )


def _register_build(b: argparse.ArgumentParser) -> None:
    b.add_argument("--dataset", required=True, help="dataset name in the store (e.g. homedepot-search)")
    b.add_argument("--out", default=None, help="index dir (default $SOUTUI_HOME/indexes/DATASET)")
    b.add_argument(
        "--encoder", choices=sorted(ENCODER_CHOICES), default="both", help="semantic encoders to index"
    )
    b.add_argument("--no-ltr", action="store_true", help="skip training the learned ranker")
    b.add_argument(
        "--valid-frac",
        type=float,
        default=0.2,
        help="share of the judged training queries held out to choose the serving method (default 0.2)",
    )
    b.add_argument(
        "--fine-tune",
        action="store_true",
        help="fine-tune MiniLM on the training queries' judged pairs and serve it (needs relevance labels)",
    )
    b.add_argument(
        "--fine-tune-minutes",
        type=float,
        default=15.0,
        help="wall-time cap of the fine-tuning, from loading the model to its last validation check (default 15)",
    )
    b.add_argument(
        "--fine-tune-steps",
        type=int,
        default=None,
        help="also stop after this many steps (default: the time cap only)",
    )
    add_store_arg(b)
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=_build)


def _register_search(s: argparse.ArgumentParser) -> None:
    s.add_argument("query")
    s.add_argument(
        "--index", default=None, help="index dir (default: the only/first one under $SOUTUI_HOME/indexes)"
    )
    s.add_argument("-k", type=int, default=10)
    s.add_argument(
        "--user",
        action="append",
        default=[],
        metavar="ITEM_ID",
        help="an item id from the user's history (repeat, oldest first)",
    )
    s.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"filter, KEY one of {', '.join(FILTER_KEYS)} (repeatable)",
    )
    s.add_argument(
        "--sort", default="relevance", choices=["relevance", "price_asc", "price_desc", "popularity"]
    )
    s.add_argument(
        "--method", default=None, choices=METHODS, help="ranking method (default: the one the index chose)"
    )
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_search)


def _register_evaluate(e: argparse.ArgumentParser) -> None:
    e.add_argument("--dataset", default="homedepot-search")
    e.add_argument("--index", default=None, help="index dir (default $SOUTUI_HOME/indexes/DATASET)")
    e.add_argument(
        "--method", default=None, choices=METHODS, help="ranking method (default: the one the index chose)"
    )
    add_store_arg(e)
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=_evaluate)


def parse_filters(pairs: list[str]) -> Any:
    from soutui.search.filters import SearchFilters

    kw: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or key not in FILTER_KEYS:
            raise UserError(f"bad --filter {pair!r}: use KEY=VALUE with KEY one of {', '.join(FILTER_KEYS)}")
        if key in ("min_price", "max_price"):
            try:
                kw[key] = float(value)
            except ValueError:
                raise UserError(f"--filter {key} needs a number, got {value!r}") from None
        elif key == "in_stock":
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise UserError(f"--filter in_stock needs true or false, got {value!r}")
            kw[key] = value.lower() in ("true", "1", "yes")
        else:
            kw[key] = value
    return SearchFilters(**kw)


def _resolve_index(index: str | None) -> Path:
    if index:
        return Path(index)
    root = home_dir() / "indexes"
    found = sorted(p.parent for p in root.glob("*/manifest.json")) if root.is_dir() else []
    if not found:
        raise UserError(
            f"no search index under {root}; build one with `soutui index build --dataset NAME` or pass --index"
        )
    return found[0]


def _build(args: argparse.Namespace) -> int:
    from soutui.data.datasets import load_dataset
    from soutui.search import evaluation
    from soutui.search.engine import SearchConfig, SearchEngine

    items, events = load_dataset(args.dataset, store_url=args.store)
    pop = _popularity(items, events)
    out = Path(args.out) if args.out else default_index_dir(args.dataset)
    has_labels = events is not None and "relevance" in events.columns and events["relevance"].notna().any()
    own, record = _fine_tune(args, items, events, out) if args.fine_tune else (None, None)
    engine = SearchEngine.build(
        items, out, SearchConfig(encoders=ENCODER_CHOICES[args.encoder]), popularity=pop,
        own_encoder=own, fine_tune=record,
    )  # fmt: skip
    report: dict[str, Any] = {
        "index": str(out),
        "items": len(engine.catalog),
        "encoders": sorted(engine.vectors),
        "dense_min_similarity": {e: round(t, 4) for e, t in engine.min_similarity.items()},
    }
    if record is not None:
        report["fine_tune"] = {k: v for k, v in record.items() if k not in ("history", "config")}
    if has_labels:
        if not 0 < args.valid_frac < 1:
            raise UserError(f"--valid-frac must be between 0 and 1, got {args.valid_frac}")
        train, test = evaluation.split(evaluation.qrels_from_events(events))  # test is never read below
        try:
            choice = evaluation.choose_method(
                engine, train, valid_frac=args.valid_frac, ltr=not args.no_ltr,
                log=lambda m: print(m, file=sys.stderr),
            )  # fmt: skip
        except ValueError as e:
            raise UserError(str(e)) from None
        report["method_choice"] = {k: v for k, v in choice.items() if k != "ltr"}
        report["method_choice"]["held_out_test_queries"] = len(test)
        if "ltr" in choice:
            report["ltr"] = choice["ltr"]
    report["search_method"] = engine.default_method
    if not has_labels:
        report["method_choice"] = (
            "no relevance judgments: default ltr, which ranks like hybrid without a ranker"
        )
    print_json(report) if args.json else print(
        f"built search index for {args.dataset} at {out} ({len(engine.catalog)} items); "
        f"serving method {engine.default_method}"
        + (f" (validation NDCG@10 {_valid_summary(report['method_choice'])})" if has_labels else "")
    )
    return 0


def _fine_tune(args: argparse.Namespace, items: Any, events: Any, out: Path) -> tuple[Path, dict[str, Any]]:
    """Fine-tune MiniLM on the fit queries; early stopping on the validation queries that choose the method."""
    from soutui.data.sequences import split_queries
    from soutui.search import evaluation
    from soutui.search.catalog import Catalog
    from soutui.search.finetune import FineTuneConfig, fine_tune

    if events is None or "relevance" not in events.columns or not events["relevance"].notna().any():
        raise UserError(f"--fine-tune needs relevance judgments; dataset {args.dataset!r} has none")
    if "minilm" not in ENCODER_CHOICES[args.encoder]:
        raise UserError("--fine-tune trains the English MiniLM encoder: use --encoder minilm or both")
    if not 0 < args.valid_frac < 1:
        raise UserError(f"--valid-frac must be between 0 and 1, got {args.valid_frac}")
    train, _test = evaluation.split(evaluation.qrels_from_events(events))  # test is never read
    # the fit / validation carve of choose_method (its seed 0 + 1)
    fit_q, val_q = split_queries(list(train), test_frac=args.valid_frac, seed=1)
    cat = Catalog.from_items(items)
    texts = {str(i): t for i, t in zip(cat.item_ids.tolist(), cat.embed_texts(), strict=True) if t}
    try:
        return fine_tune(
            texts, {q: train[q] for q in sorted(fit_q)}, {q: train[q] for q in sorted(val_q)},
            out.parent / f"{out.name}.finetune", FineTuneConfig(minutes=args.fine_tune_minutes, max_steps=args.fine_tune_steps),
            log=lambda m: print(m, file=sys.stderr, flush=True),
        )  # fmt: skip
    except ValueError as e:
        raise UserError(str(e)) from None


def _valid_summary(choice: dict[str, Any]) -> str:
    return ", ".join(f"{m} {f['ndcg@10']:.4f}" for m, f in choice["valid"].items())


def _popularity(items: Any, events: Any) -> np.ndarray | None:
    """Interaction counts per item from behavioural events (search judgements are labels, not behaviour)."""
    if events is None or events.empty:
        return None
    ev = events[events["event_type"].isin(["view", "click", "cart", "purchase"])]
    if ev.empty:
        return None
    counts = ev["item_id"].astype(str).value_counts()
    return items["item_id"].astype(str).map(counts).fillna(0).to_numpy(np.float64)


def _search(args: argparse.Namespace) -> int:
    from soutui.search.engine import SearchEngine

    if args.k < 1:
        raise UserError("-k must be at least 1")
    engine = SearchEngine.load(_resolve_index(args.index))
    hits, facets = engine.search(
        args.query,
        k=args.k,
        filters=parse_filters(args.filter),
        sort=args.sort,
        method=args.method,
        user_history=args.user or None,
    )
    if args.json:
        print_json(
            {
                "query": args.query,
                "method": args.method or engine.default_method,
                "hits": [h.to_dict() for h in hits],
                "facets": facets,
            }
        )
    elif not hits:
        print(f"no products match {args.query!r}: no word matched and nothing was semantically close enough")
    else:
        print_table([h.to_dict() for h in hits], ["item_id", "score", "title", "price", "reason"])
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from soutui.data.datasets import load_dataset
    from soutui.search import evaluation
    from soutui.search.engine import SearchEngine

    _, events = load_dataset(args.dataset, store_url=args.store)
    if events is None or not {"query", "relevance", "item_id"} <= set(events) or events.dropna(subset=["query", "relevance", "item_id"]).empty:  # fmt: skip
        raise UserError(
            f"dataset {args.dataset!r} has no relevance judgments (query, item, grade): nothing to evaluate search on"
        )
    index = Path(args.index) if args.index else default_index_dir(args.dataset)
    if not (index / "manifest.json").exists():
        raise UserError(f"no index at {index}; run `soutui index build --dataset {args.dataset}` first")
    engine = SearchEngine.load(index)
    method = args.method or engine.default_method
    if method == "ltr" and engine.ranker is None:
        raise UserError(f"index {index} has no trained ranker; build it from a dataset with relevance labels")
    _, test = evaluation.split(evaluation.qrels_from_events(events))
    res = evaluation.evaluate(engine, test, method)
    if args.json:
        print_json(res)
    else:
        print_table([{k: v for k, v in res.items() if k != "protocol"}], [k for k in res if k != "protocol"])
        print(f"protocol: {res['protocol']}")
    return 0
