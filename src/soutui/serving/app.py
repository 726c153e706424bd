"""The FastAPI app factory and its thin /v1 routes; the web pages are served by the same app.

Read endpoints are open; write endpoints (events, admin reload) need X-API-Key and
are disabled when the server has no key (unless started with --insecure-dev).
Errors are 4xx with a message saying what to fix; a 500 is a bug.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from soutui import __version__
from soutui.serving import schemas as S
from soutui.serving.bundle import BundleError
from soutui.serving.metrics import Metrics, MetricsMiddleware
from soutui.serving.service import NotFound, RecService, Unavailable
from soutui.serving.settings import ServeSettings

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parents[1] / "web" / "static"

K = Annotated[int, Query(ge=1, le=100, description="how many results")]
Category = Annotated[str | None, Query(max_length=200, description="only items in this category (any level)")]
ModelName = Annotated[str | None, Query(max_length=64, description="recommender to use; default: the bundle's")]
ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": S.Problem}, 422: {"description": "invalid parameters"}
}


class FastJSON(Response):
    """JSON rendered by orjson. Hot routes return it directly, which also skips FastAPI's
    re-validation of the result through the response model (the models still document the
    API in OpenAPI, and the fuzz test checks responses against them)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


def create_app(settings: ServeSettings, service: RecService | None = None) -> FastAPI:
    """Build the app; loads the bundle now so a bad one fails before the server listens."""
    svc = service or RecService(settings)
    metrics = Metrics()
    metrics.set_bundle(svc.bundle.version)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(_watch(svc, metrics)) if settings.watch_interval_s > 0 else None
        yield
        if task:
            task.cancel()
        svc.close()

    app = FastAPI(
        title="soutui",
        version=__version__,
        description="搜推 soutui: e-commerce search and recommendation API. Read endpoints are open; "
        "writes need the X-API-Key header.",
        lifespan=lifespan,
    )
    app.state.service, app.state.metrics = svc, metrics
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc.args[0])}, status_code=404)

    @app.exception_handler(Unavailable)
    async def _unavailable(request: Request, exc: Unavailable) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    def require_key(x_api_key: Annotated[str | None, Header(max_length=256)] = None) -> None:
        if not settings.writes_enabled:
            raise HTTPException(403, "write endpoints are disabled: start the server with SOUTUI_API_KEY set "
                                     "(or --insecure-dev on a development machine)")
        if settings.api_key and not hmac.compare_digest((x_api_key or "").encode(), settings.api_key.encode()):
            raise HTTPException(401, "missing or wrong X-API-Key header")

    Writer = Depends(require_key)

    @app.get("/v1/recommend/{user_id}", response_model=S.RecommendResponse, responses=ERRORS, tags=["recommend"])
    async def recommend(
        user_id: Annotated[str, S.Id],
        k: K = 10,
        category: Category = None,
        exclude_purchased: Annotated[bool | None, Query(description="default from the rules config")] = None,
        diverse: Annotated[bool, Query(description="spread results over categories / item space")] = False,
        model: ModelName = None,
    ) -> Response:
        """Personalised list from the user's latest history; users without history get trending."""
        return FastJSON(svc.recommend(user_id, k, category, exclude_purchased, diverse, model))

    @app.get("/v1/similar/{item_id}", response_model=S.SimilarResponse, responses=ERRORS, tags=["recommend"])
    async def similar(item_id: Annotated[str, S.Id], k: K = 10, model: ModelName = None) -> Response:
        """Items like this one (for a product page)."""
        return FastJSON(svc.similar(item_id, k, model))

    @app.get("/v1/trending", response_model=S.TrendingResponse, tags=["recommend"])
    async def trending(k: K = 10, category: Category = None, diverse: bool = False) -> Response:
        """Most interacted-with items in the recent window, live-updated by new events."""
        return FastJSON(svc.trending(k, category, diverse))

    @app.get("/v1/search", response_model=S.SearchResponse, responses={503: {"model": S.Problem}}, tags=["search"])
    async def search(
        q: Annotated[str, Query(min_length=1, max_length=256, description="the shopper's query")],
        k: K = 10,
        user_id: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
        category: Category = None,
        brand: Annotated[str | None, Query(max_length=200)] = None,
        min_price: Annotated[float | None, Query(ge=0, le=1e9)] = None,
        max_price: Annotated[float | None, Query(ge=0, le=1e9)] = None,
        in_stock: bool | None = None,
        sort: Literal["relevance", "price_asc", "price_desc", "popularity"] = "relevance",
        method: Literal["ltr", "hybrid", "bm25", "dense"] | None = None,
    ) -> Response:
        """Keyword + semantic product search with filters, sort, facets; personalised when user_id is given."""
        if min_price is not None and max_price is not None and min_price > max_price:
            raise HTTPException(422, "min_price must not exceed max_price")
        try:
            return FastJSON(svc.search(q, k, user_id, category, brand, min_price, max_price, in_stock, sort, method))
        except ValueError as exc:  # the engine's own input checks (e.g. a query with no usable text)
            raise HTTPException(422, str(exc)) from exc

    @app.get("/v1/demo-users", tags=["catalogue"])
    async def demo_users(n: Annotated[int, Query(ge=1, le=50)] = 5) -> dict[str, list[str]]:
        """A few user ids that have a history, to try personalisation in the storefront."""
        return {"users": svc.demo_users(n)}

    @app.get("/v1/items/{item_id}", response_model=S.Item, responses=ERRORS, tags=["catalogue"])
    async def item(item_id: Annotated[str, S.Id]) -> Response:
        return FastJSON(svc.item(item_id))

    @app.post("/v1/events", response_model=S.EventAck, dependencies=[Writer], tags=["events"],
              responses={401: {"model": S.Problem}, 403: {"model": S.Problem}})
    def events(batch: S.EventBatch) -> dict[str, Any]:
        """Record a batch of events; 2xx means they are on disk. Retrying a batch is safe (event_id)."""
        accepted, dup = svc.ingest([e.model_dump() for e in batch.events])
        metrics.events.inc(accepted)
        return {"accepted": accepted, "duplicates": dup}

    @app.get("/healthz", response_model=S.Health, tags=["ops"])
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "bundle": svc.bundle.version, "uptime_s": round(time.time() - svc.started, 1),
                "writes_enabled": settings.writes_enabled}

    @app.get("/metrics", tags=["ops"], response_class=Response)
    async def prometheus() -> Response:
        """Prometheus exposition: request counts, latency histograms, bundle version."""
        return Response(metrics.export(), media_type="text/plain; version=0.0.4")

    # --- admin (dashboard) ---------------------------------------------------------
    @app.get("/v1/admin/bundle", tags=["admin"])
    async def bundle_info() -> dict[str, Any]:
        """The manifest of the bundle being served (model versions, checksums, metrics)."""
        b = svc.bundle
        return {"path": str(b.path), "version": b.version, "default_recommender": b.default,
                "manifest": b.manifest, "store": svc.store_status, "writes_enabled": settings.writes_enabled}

    @app.get("/v1/admin/evaluation", tags=["admin"])
    async def evaluation() -> dict[str, Any]:
        """The last evaluation table stored in the bundle."""
        return svc.bundle.evaluation

    @app.get("/v1/admin/plots/{name}", tags=["admin"], responses=ERRORS)
    async def plot(name: Annotated[str, PathParam(max_length=100)]) -> Response:
        b = svc.bundle
        allowed = {Path(p).name: p for p in b.evaluation.get("plots", [])}
        if name not in allowed:
            raise HTTPException(404, f"no plot {name!r}; the bundle has {sorted(allowed)}")
        return FileResponse(b.path / allowed[name])

    @app.get("/v1/admin/stats", tags=["admin"])
    async def stats() -> dict[str, Any]:
        """Live request rate and latency percentiles per route (the dashboard polls this)."""
        return {**metrics.stats(), "bundle": svc.bundle.version, "users": len(svc.histories.recent),
                "search_cache": svc.search_cache.stats()}

    @app.post("/v1/admin/reload", response_model=S.ReloadResponse, dependencies=[Writer], tags=["admin"],
              responses={409: {"model": S.Problem}, 401: {"model": S.Problem}, 403: {"model": S.Problem}})
    async def reload(body: S.ReloadRequest | None = None) -> dict[str, Any]:
        """Load a bundle (default: the newest) and swap it in; a bad bundle is refused, the old keeps serving."""
        try:
            out = await run_in_threadpool(svc.reload, body.bundle if body else None)
        except (BundleError, OSError, ValueError) as exc:  # ValueError: e.g. a NUL byte in the path
            raise HTTPException(409, f"bundle refused, still serving {svc.bundle.version}: {exc}") from exc
        metrics.set_bundle(svc.bundle.version)
        return out

    # --- pages -----------------------------------------------------------------------
    if STATIC.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def storefront() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/admin", include_in_schema=False)
    async def dashboard() -> FileResponse:
        return FileResponse(STATIC / "admin.html")

    return app


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
