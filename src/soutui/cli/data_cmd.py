"""`soutui data ...`: import, list, stats, quarantine export, forget and fetch of datasets.

Commands that only read open the store read-only, so they can run beside each other.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from soutui.cli.common import add_store_arg, print_json, print_table
from soutui.config import ConfigError
from soutui.data.datasets import DATASETS
from soutui.data.importers import IMPORTERS, build_dataset
from soutui.data.importers.base import ImportResult, write_result
from soutui.data.importers.generic import CHUNK_ROWS, GenericOptions, parse_mapping
from soutui.data.importers.generic import stage as stage_generic
from soutui.data.privacy import load_key, pseudonym
from soutui.data.report import dataset_stats, format_report
from soutui.data.schema import EVENT_COLUMNS, EVENT_TYPES, ITEM_COLUMNS
from soutui.data.store import ImportRefused, default_store_url, open_store


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
        _add_replace(sp)
        sp.set_defaults(func=_import_builtin)
    _register_generic(isub)
    _register_benchmark_files(isub)

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

    fo = dsub.add_parser("forget", help="delete one user from a dataset now (the right to be forgotten)")
    fo.add_argument("--dataset", required=True, help="dataset name in the store")
    fo.add_argument("--user", required=True, help="the shop's own user id (mapped with the dataset's key)")
    fo.add_argument(
        "--pseudonym-key-file", default=None, help="file with the secret key (default $SOUTUI_PSEUDONYM_KEY)"
    )
    add_store_arg(fo)
    fo.add_argument("--json", action="store_true")
    fo.set_defaults(func=_forget)

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
    g.add_argument(
        "--encoding", default="utf-8", help="text encoding of CSV/TSV/JSONL files, e.g. gbk (default utf-8)"
    )
    g.add_argument(
        "--chunk-rows", type=int, default=CHUNK_ROWS,
        help=f"events read and cleaned at a time; memory grows with it, not with the file (default {CHUNK_ROWS:,})",
    )  # fmt: skip
    add_store_arg(g)
    g.add_argument("--json", action="store_true")
    _add_replace(g)
    g.set_defaults(func=_import_generic)


def _register_benchmark_files(isub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    r = isub.add_parser("recbole", help="RecBole atomic files (.inter, optional .item)")
    r.add_argument(
        "--inter", required=True, help="the .inter file (user_id:token item_id:token timestamp:float ...)"
    )
    r.add_argument("--item", default=None, help="optional .item file (item_id:token title:token_seq ...)")
    r.add_argument(
        "--event-type", default="purchase", choices=EVENT_TYPES[:4], help="type of every interaction"
    )
    s = isub.add_parser("s3rec", help="S3-Rec / SASRec sequence file: one `user item item ...` line per user")
    s.add_argument("--file", required=True, help="the sequence file (e.g. Beauty.txt)")
    for p in (r, s):
        p.add_argument("--name", required=True, help="dataset name in the store")
        p.add_argument("--encoding", default="utf-8", help="text encoding (default utf-8)")
        add_store_arg(p)
        p.add_argument("--json", action="store_true", help="print the report as JSON")
        _add_replace(p)
    r.set_defaults(func=_import_recbole)
    s.set_defaults(func=_import_s3rec)


def _import_recbole(args: argparse.Namespace) -> int:
    from soutui.data.importers import recbole

    return _write(recbole.build(args.inter, args.name, args.item, args.event_type, args.encoding), args)


def _import_s3rec(args: argparse.Namespace) -> int:
    from soutui.data.importers import s3rec

    return _write(s3rec.build(args.file, args.name, args.encoding), args)


def _add_replace(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--replace",
        action="store_true",
        help="replace the stored dataset even if the import keeps no rows or drops more than half its events",
    )


def _print_report(report: dict[str, object], as_json: bool) -> None:
    if as_json:
        print_json(report)
    else:
        print(format_report(report))


def _write(result: ImportResult, args: argparse.Namespace) -> int:
    try:
        report = write_result(result, args.store, replace=args.replace)
    except ImportRefused as exc:
        r = result.report
        why = ", ".join(f"{k} {v:,}" for k, v in sorted(r.quarantined.items())) or "none"
        raise ImportRefused(f"{exc} (quarantined: {why}; see the report with --json)") from exc
    _print_report(report.to_dict(), args.json)
    return 0


def _import_builtin(args: argparse.Namespace) -> int:
    return _write(build_dataset(args.source, args.data_dir, args.name), args)


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
        encoding=args.encoding,
    )
    if args.chunk_rows < 1:
        raise ConfigError(f"--chunk-rows must be at least 1, not {args.chunk_rows}")
    return _write(stage_generic(opts, args.chunk_rows), args)


def _free_mapping(text: str) -> dict[str, str]:
    pairs = [p.split("=", 1) for p in text.split(",") if p.strip()]
    bad = [p[0] for p in pairs if len(p) != 2]
    if bad:
        raise ConfigError(f"--event-type-map: {bad} are not VALUE=TYPE")
    return {k.strip(): v.strip() for k, v in pairs}


def _list(args: argparse.Namespace) -> int:
    url = args.store or default_store_url()
    if (
        url.startswith("duckdb://")
        and url != "duckdb://:memory:"
        and not Path(url[len("duckdb://") :]).exists()
    ):
        rows = []
    else:
        rows = _all_stats(url)
    if args.json:
        print_json(rows)
    elif not rows:
        print("no datasets in the store; import one with `soutui data import amazon-beauty`")
    else:
        print_table(rows, ["dataset", "kind", "items", "events", "users", "sessions", "quarantined"])
    return 0


def _all_stats(url: str) -> list[dict[str, object]]:
    store = open_store(url, read_only=True)
    try:
        return [dataset_stats(store, name) for name in store.datasets()]
    finally:
        store.close()


def _stats(args: argparse.Namespace) -> int:
    store = open_store(args.store, read_only=True)
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
    store = open_store(args.store, read_only=True)
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


def _forget(args: argparse.Namespace) -> int:
    """Map the raw id with the dataset's key, delete the user now, say what waits for a retrain."""
    store = open_store(args.store)
    try:
        name = args.dataset
        stored_as = args.user.strip()
        if store.meta(name).get("pseudonymised") == "true":
            stored_as = pseudonym(stored_as, load_key(args.pseudonym_key_file))
        counts = store.forget_user(name, stored_as, also=(args.user.strip(),))
    finally:
        store.close()
    result = {"dataset": name, "deleted": counts, "pending_rebuild": True}
    if args.json:
        print_json(result)
    else:
        print(
            f"forgot one user of {name}: deleted {counts['events']:,} event(s), {counts['quarantine']:,} "
            f"quarantined row(s) and {counts['users']:,} user row(s) from the store; an audit row keeps a salted "
            "hash, never the id. Models and indexes built before still hold the user until the next "
            f"`soutui train --dataset {name}` (recorded as pending); see docs/privacy.md"
        )
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
