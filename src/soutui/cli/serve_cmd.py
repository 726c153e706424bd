"""`soutui serve` (the API + storefront) and `soutui bundle build` (assemble a serving bundle)."""

from __future__ import annotations

import argparse
import dataclasses
import gc
import importlib.util
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from soutui.cli.common import add_store_arg, print_json
from soutui.config import from_dict, load_toml

if TYPE_CHECKING:
    from soutui.serving.settings import ServeSettings


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("serve", help="serve the API, storefront (/) and dashboard (/admin)")
    p.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default 8000)")
    p.add_argument("--bundle", default=None, help="bundle dir (default: newest under $SOUTUI_HOME/bundles)")
    p.add_argument("--config", default=None, help="TOML file: a [serve] table or flat keys (all keys: soutui/defaults.toml)")
    p.add_argument("--insecure-dev", action="store_true", help="enable write endpoints without an API key")
    p.add_argument("--demo", action="store_true", help="demo mode: read + admin endpoints open without a key")
    p.add_argument("--watch", type=float, default=None, metavar="SECONDS", help="poll for newer bundles")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="worker processes sharing live state (N > 1 needs --store postgresql://...)")
    add_store_arg(p)
    p.set_defaults(func=serve)

    b = sub.add_parser("bundle", help="serving bundles")
    bsub = b.add_subparsers(dest="bundle_command", metavar="ACTION", required=True)
    bb = bsub.add_parser("build", help="fit light baselines, evaluate, add SASRec/search, write a bundle")
    bb.add_argument("--dataset", required=True, help="dataset name, e.g. amazon-beauty")
    bb.add_argument("--sasrec", default=None, metavar="CHECKPOINT", help="saved SASRec model dir to include (ONNX)")
    bb.add_argument("--out", default=None, help="bundles dir (default $SOUTUI_HOME/bundles)")
    bb.add_argument("--no-search", action="store_true", help="skip the search index")
    bb.add_argument("--refit", action="store_true",
                    help="serve the SASRec checkpoint's recipe retrained on all interactions (its epochs and "
                         "validation choices kept); the bundle's figures stay the checkpoint's")
    bb.add_argument("--dp-counts-epsilon", type=float, default=1.0, metavar="E",
                    help="DP SASRec checkpoint: epsilon of the private popularity release (composed with DP-SGD's)")
    bb.add_argument("--dp-counts-items", type=int, default=20, metavar="K",
                    help="DP SASRec checkpoint: distinct items a user may add to the private counts")
    bb.add_argument("--json", action="store_true", help="print the manifest as JSON")
    add_store_arg(bb)
    bb.set_defaults(func=bundle_build)

    bv = bsub.add_parser("verify", help="check a bundle's manifest and checksums")
    bv.add_argument("path")
    bv.set_defaults(func=bundle_verify)


def settings_from_args(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from soutui.serving.settings import ServeSettings

    s = load_toml(ServeSettings, args.config, table="serve") if args.config else from_dict(ServeSettings, {})
    overrides = {
        "host": args.host, "port": args.port, "bundle": args.bundle, "store": args.store,
        "watch_interval_s": args.watch, "insecure_dev": True if args.insecure_dev else None,
        "demo": True if args.demo else None, "workers": args.workers,
    }
    return dataclasses.replace(s, **{k: v for k, v in overrides.items() if v is not None})


def serve(args: argparse.Namespace) -> int:
    import os

    # one request = one thread of work: OpenMP/BLAS pools (faiss, numpy) only add contention
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    import uvicorn

    from soutui.serving.app import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = settings_from_args(args)
    if settings.workers > 1:
        return _serve_workers(settings)
    app = create_app(settings)  # a BundleError is a UserError: main prints it as one line
    svc = app.state.service
    if not settings.writes_enabled:
        print("soutui: write endpoints (events, reload) are DISABLED: set SOUTUI_API_KEY or pass --insecure-dev")
    if settings.demo:
        print("soutui: DEMO mode: read and admin endpoints are open without a key")
    elif not (settings.read_key or settings.api_key):
        print("soutui: read endpoints are DISABLED: set SOUTUI_READ_KEY (or SOUTUI_API_KEY), or pass --demo")
    print(f"soutui: serving bundle {svc.bundle.version} ({svc.store_status})")
    for reason in svc.skipped_bundles:
        print(f"soutui: skipped a newer bundle: {reason}")
    print(f"soutui: storefront  http://{settings.host}:{settings.port}/")
    print(f"soutui: dashboard   http://{settings.host}:{settings.port}/admin   API docs: /docs")
    # The loaded bundle + histories are ~0.4M long-lived objects; a full cyclic GC over them
    # takes ~200 ms and lands on some request. Freeze them out of the collector's scans
    # (RecService.reload re-freezes after swapping bundles).
    gc.collect()
    gc.freeze()
    uvicorn.run(app, **_uvicorn_options(settings))
    return 0


def _uvicorn_options(settings: ServeSettings) -> dict[str, Any]:
    fast = importlib.util.find_spec("uvloop") is not None and importlib.util.find_spec("httptools") is not None
    return {
        "host": settings.host, "port": settings.port, "access_log": False, "log_level": "warning",
        "loop": "uvloop" if fast else "asyncio", "http": "httptools" if fast else "h11",
        # the server binds loopback by default; no proxy header rewriting or extra headers per response
        "proxy_headers": False, "server_header": False, "date_header": False,
    }


def _serve_workers(settings: ServeSettings) -> int:
    """N uvicorn worker processes on one socket; each builds the app itself (`worker_app`) from the
    settings handed over in the environment, and they share live state through PostgreSQL
    (serving/shared_state.py). uvicorn replaces a worker that dies."""
    import json
    import os

    import uvicorn

    from soutui.serving.app import SETTINGS_ENV

    os.environ[SETTINGS_ENV] = json.dumps(dataclasses.asdict(settings))
    if not settings.writes_enabled:
        print("soutui: write endpoints (events, reload) are DISABLED: set SOUTUI_API_KEY or pass --insecure-dev")
    if settings.demo:
        print("soutui: DEMO mode: read and admin endpoints are open without a key")
    print(f"soutui: {settings.workers} workers sharing live state through the store's database")
    print(f"soutui: storefront  http://{settings.host}:{settings.port}/")
    print(f"soutui: dashboard   http://{settings.host}:{settings.port}/admin   API docs: /docs", flush=True)
    metrics_dir, ours = _metrics_dir()
    try:
        uvicorn.run("soutui.serving.app:worker_app", factory=True, workers=settings.workers, **_uvicorn_options(settings))
    finally:
        if ours:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def _metrics_dir() -> tuple[Path, bool]:
    """PROMETHEUS_MULTIPROC_DIR for the workers (set before they import prometheus_client), so any
    worker's /metrics reports the sum over workers: a fresh private directory removed at exit, or
    the operator's own, emptied of a previous run's files now. (path, whether we made it)."""
    import os
    import tempfile

    from soutui.serving.metrics import MULTIPROC_ENV

    given = os.environ.get(MULTIPROC_ENV)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for old in path.glob("*.db"):  # counts of an earlier run would add to this one's
            old.unlink()
        return path, False
    path = Path(tempfile.mkdtemp(prefix="soutui-metrics-"))  # mode 0700
    os.environ[MULTIPROC_ENV] = str(path)
    return path, True


def bundle_build(args: argparse.Namespace) -> int:
    from soutui.config import home_dir
    from soutui.serving.bundle import read_manifest
    from soutui.serving.bundle_build import CountPrivacy, build_from_dataset

    out = Path(args.out) if args.out else home_dir() / "bundles"
    path = build_from_dataset(args.dataset, out, store_url=args.store, sasrec=args.sasrec,
                              with_search=not args.no_search, progress=_progress(args.json), refit=args.refit,
                              counts=CountPrivacy(epsilon=args.dp_counts_epsilon, max_items=args.dp_counts_items))
    manifest = read_manifest(path)
    if args.json:
        print_json({"path": str(path), **{k: v for k, v in manifest.items() if k != "files"}})
    else:
        print(f"bundle written: {path}")
        print(f"default recommender: {manifest['default_recommender']}; models: {', '.join(manifest['models'])}")
    return 0


def bundle_verify(args: argparse.Namespace) -> int:
    from soutui.serving.bundle import verify_bundle

    m = verify_bundle(args.path)
    print(f"ok: {m['dataset']}-{m['version']}, {len(m['files'])} files verified")
    return 0


def _progress(quiet: bool):  # type: ignore[no-untyped-def]
    import sys

    return lambda msg: print(msg, file=sys.stderr if quiet else sys.stdout)
