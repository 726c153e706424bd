"""The FastAPI app factory: builds the service once, puts it on `app.state`, includes the routers.

Read and admin endpoints need the read key (or the write key) in X-API-Key unless the
server runs in explicit demo mode; write endpoints (events, reload, forgetting) need the
write key and are disabled when the server has none (unless started with --insecure-dev).
Errors are 4xx with a message saying what to fix; a 500 is a bug.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from soutui import __version__
from soutui.serving.experiments import Experiments
from soutui.serving.metrics import Metrics, MetricsMiddleware
from soutui.serving.routes import ROUTERS
from soutui.serving.routes.pages import STATIC
from soutui.serving.service import NotFound, RecService, Unavailable
from soutui.serving.settings import ServeSettings

log = logging.getLogger(__name__)

SETTINGS_ENV = "SOUTUI_SERVE_SETTINGS"  # `soutui serve --workers N` hands each worker its settings as JSON here


def create_app(settings: ServeSettings, service: RecService | None = None) -> FastAPI:
    """Build the app; loads the bundle now so a bad one fails before the server listens."""
    svc = service or RecService(settings)
    metrics = Metrics(monitor=svc.monitor)
    metrics.set_bundle(svc.bundle.version)
    app = FastAPI(
        title="soutui",
        version=__version__,
        description="搜推 soutui: e-commerce search and recommendation API. Reads need the read key and "
        "writes the write key, both in the X-API-Key header (reads are open in demo mode).",
        lifespan=_lifespan,
    )
    app.state.service, app.state.metrics = svc, metrics
    app.state.experiments = Experiments(settings, svc)  # A/B and interleaving on /v1/recommend
    svc.on_reload = metrics.set_bundle
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    if settings.workers > 1:
        app.add_middleware(WorkerHeader)
    app.add_exception_handler(NotFound, _not_found)
    app.add_exception_handler(Unavailable, _unavailable)
    app.add_exception_handler(RequestValidationError, _invalid)
    for router in ROUTERS:
        app.include_router(router)
    if STATIC.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def worker_app() -> FastAPI:
    """The app factory each of `soutui serve --workers N`'s processes calls (uvicorn `factory=True`)."""
    from soutui.config import from_dict

    settings = from_dict(ServeSettings, json.loads(os.environ[SETTINGS_ENV]), where="serve")
    app = create_app(settings)
    svc: RecService = app.state.service
    print(f"soutui: worker {os.getpid()} serving bundle {svc.bundle.version} ({svc.store_status})", flush=True)
    gc.collect()  # as `soutui serve` does for one process: keep the loaded bundle out of GC scans
    gc.freeze()
    return app


class WorkerHeader:
    """Pure ASGI middleware: names the worker process in `X-Soutui-Worker` (which worker answered)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.header = (b"x-soutui-worker", str(os.getpid()).encode())

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), self.header]
            await send(message)

        await self.app(scope, receive, send_with_header)


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    svc: RecService = app.state.service
    watch = svc.settings.watch_interval_s > 0
    task = asyncio.create_task(_watch(svc, app.state.metrics)) if watch else None
    yield
    if task:
        task.cancel()
    svc.close()
    app.state.experiments.close()
    app.state.metrics.close()  # a worker leaving: mark_process_dead


async def _not_found(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc.args[0])}, status_code=404)


class _AsciiJSON(JSONResponse):
    """JSON with non-ASCII escaped: a 422 echoes the bad input, which may hold a lone surrogate
    that UTF-8 cannot encode (the default renderer then fails with a 500)."""

    def render(self, content: object) -> bytes:
        import json

        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode("ascii")


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return _AsciiJSON({"detail": jsonable_encoder(exc.errors())}, status_code=422)


async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=503)


async def _watch(svc: RecService, metrics: Metrics) -> None:
    """Poll for a newer bundle and load it (errors are logged; the current bundle keeps serving)."""
    while True:
        await asyncio.sleep(svc.settings.watch_interval_s)
        try:
            newer = await run_in_threadpool(svc.newer_bundle)
            if newer is not None:
                await run_in_threadpool(svc.reload, str(newer))
                metrics.set_bundle(svc.bundle.version)
        except Exception as exc:  # keep watching; the message says why the bundle was skipped
            log.warning("bundle watch: %s", exc)
