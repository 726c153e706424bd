"""`soutui data ...`: import, list, stats, quarantine export and fetch of datasets."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from soutui.cli.common import add_store_arg, print_json, print_table
from soutui.data.datasets import DATASETS
from soutui.data.importers import IMPORTERS, build_dataset
from soutui.data.importers.base import write_result
from soutui.data.importers.generic import GenericOptions, parse_mapping
from soutui.data.importers.generic import build as build_generic
from soutui.data.report import dataset_stats, format_report
from soutui.data.schema import EVENT_COLUMNS, EVENT_TYPES, ITEM_COLUMNS
from soutui.data.store import open_store


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("data", help="import, inspect and fetch datasets")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    imp = dsub.add_parser("import", help="import a dataset into the store")
    isub = imp.add_subparsers(dest="source", metavar="SOURCE", required=True)
    for source in IMPORTERS:
        sp = isub.add_parser(source, help=DATASETS[source].description)
        sp.add_argument(
            "--data-dir",
            default=None,
            help="folder holding the dataset folders (default: $SOUTUI_DATA_DIR, ../shared/data, then the fetch cache)",
        )
        sp.add_argument("--name", default=None, help=f"dataset name in the store (default {source})")
        add_store_arg(sp)
        sp.add_argument("--json", action="store_true", help="print the report as JSON")
        sp.set_defaults(func=_import_builtin)
    _register_generic(isub)

    ls = dsub.add_parser("list", help="datasets in the store with their sizes")
    add_store_arg(ls)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=_list)

    st = dsub.add_parser("stats", help="statistics of one dataset")
    st.add_argument("name")
    add_store_arg(st)
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=_stats)

    qu = dsub.add_parser("quarantine", help="export the rows an import refused (JSON Lines)")
    qu.add_argument("name")
    qu.add_argument("--out", default=None, help="file to write (default: stdout)")
    add_store_arg(qu)
    qu.set_defaults(func=_quarantine)

    fe = dsub.add_parser("fetch", help="download a public dataset into the cache")
    fe.add_argument("dataset", choices=sorted(DATASETS))
    fe.add_argument(
        "--base-url", default=None, help="mirror laid out as <base>/<dataset>/<file> ($SOUTUI_DATA_URL)"
    )
    fe.add_argument("--cache", default=None, help="cache dir (default $SOUTUI_CACHE/datasets)")
    fe.add_argument("--json", action="store_true")
    fe.set_defaults(func=_fetch)


def _register_generic(isub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    g = isub.add_parser("generic", help="your own CSV / TSV / JSONL / Parquet files")
    g.add_argument("--events", required=True, help="events file")
    g.add_argument("--items", default=None, help="optional items (catalogue) file")
    g.add_argument("--name", required=True, help="dataset name in the store")
    g.add_argument(
        "--map",
        default="",
        help=f"event columns, e.g. user_id=customer,item_id=sku,ts=time ({', '.join(EVENT_COLUMNS)})",
    )
    g.add_argument(
        "--item-map",
        default="",
        help=f"item columns, e.g. item_id=sku,title=name ({', '.join(ITEM_COLUMNS)})",
    )
    g.add_argument(
        "--event-type",
        default=None,
        choices=EVENT_TYPES,
        help="type of every event when the file has no type column",
    )
    g.add_argument(
        "--event-type-map", default="", help="source value -> canonical type, e.g. pv=view,buy=purchase"
    )
    g.add_argument(
        "--no-pseudonymize", action="store_true", help="keep user ids as they are (default: HMAC pseudonyms)"
    )
    g.add_argument(
        "--pseudonym-key-file", default=None, help="file with the secret key (default $SOUTUI_PSEUDONYM_KEY)"
    )
    g.add_argument(
        "--no-pii-mask", action="store_true", help="do not mask e-mails / phones / ID numbers in queries"
    )
    g.add_argument(
        "--mask-item-text", action="store_true", help="also mask PII in item titles and descriptions"
    )
    add_store_arg(g)
    g.add_argument("--json", action="store_true")
    g.set_defaults(func=_import_generic)


def _print_report(report: dict[str, object], as_json: bool) -> None:
    if as_json:
        print_json(report)
    else:
        print(format_report(report))


def _import_builtin(args: argparse.Namespace) -> int:
    result = build_dataset(args.source, args.data_dir, args.name)
    report = write_result(result, args.store)
    _print_report(report.to_dict(), args.json)
    return 0


def _import_generic(args: argparse.Namespace) -> int:
    opts = GenericOptions(
        events=args.events,
        name=args.name,
        items=args.items,
        mapping=parse_mapping(args.map, tuple(EVENT_COLUMNS), "--map"),
        item_mapping=parse_mapping(args.item_map, tuple(ITEM_COLUMNS), "--item-map"),
        event_type=args.event_type,
        event_type_map=_free_mapping(args.event_type_map),
        pseudonymize=not args.no_pseudonymize,
        pseudonym_key_file=args.pseudonym_key_file,
        mask_pii=not args.no_pii_mask,
        mask_item_text=args.mask_item_text,
    )
    report = write_result(build_generic(opts), args.store)
    _print_report(report.to_dict(), args.json)
    return 0


def _free_mapping(text: str) -> dict[str, str]:
    pairs = [p.split("=", 1) for p in text.split(",") if p.strip()]
    bad = [p[0] for p in pairs if len(p) != 2]
    if bad:
        raise ValueError(f"--event-type-map: {bad} are not VALUE=TYPE")
    return {k.strip(): v.strip() for k, v in pairs}


def _list(args: argparse.Namespace) -> int:
    store = open_store(args.store)
    try:
        rows = [dataset_stats(store, name) for name in store.datasets()]
    finally:
        store.close()
    if args.json:
        print_json(rows)
    elif not rows:
        print("no datasets in the store; import one with `soutui data import amazon-beauty`")
    else:
        print_table(rows, ["dataset", "kind", "items", "events", "users", "sessions", "quarantined"])
    return 0


def _stats(args: argparse.Namespace) -> int:
    store = open_store(args.store)
    try:
        stats = dataset_stats(store, args.name)
    finally:
        store.close()
    if args.json:
        print_json(stats)
    else:
        for k, v in stats.items():
            print(f"{k:<14} {v}")
    return 0


def _quarantine(args: argparse.Namespace) -> int:
    store = open_store(args.store)
    try:
        q = store.read(args.name, "quarantine")
    finally:
        store.close()
    out = open(Path(args.out), "w", encoding="utf-8") if args.out else sys.stdout  # noqa: SIM115
    try:
        for rec in q.to_dict("records"):
            rec["data"] = json.loads(rec["data"])
            out.write(json.dumps(rec, ensure_ascii=False) + "\n")
    except BrokenPipeError:  # `| head` closed the pipe: not an error
        sys.stderr.close()
    finally:
        if args.out:
            out.close()
            print(f"wrote {len(q)} quarantined row(s) to {args.out}", file=sys.stderr)
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from soutui.data.fetch import fetch_dataset

    result = fetch_dataset(args.dataset, args.base_url, args.cache, progress=not args.json)
    if args.json:
        print_json(result)
    else:
        print(
            f"{args.dataset}: fetched {result['fetched'] or 'nothing'}, already present {result['present'] or 'none'} in {result['dir']}"
        )
        if result["skipped"]:
            print(f"  skipped (no public URL, optional): {result['skipped']}")
        print(f"import it with: soutui data import {args.dataset} --data-dir {result['dir']}")
    return 0
