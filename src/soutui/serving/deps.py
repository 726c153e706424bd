"""Request dependencies as `Annotated` aliases: the service, metrics and settings come from
`app.state` (set once by the app factory), so routes are plain functions of their inputs.

Shared query-parameter types live here too, so every route documents them the same way.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

import orjson
from fastapi import Depends, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response

from soutui.serving import schemas as S
from soutui.serving.metrics import Metrics
from soutui.serving.service import RecService
from soutui.serving.settings import ServeSettings


async def get_service(request: Request) -> RecService:
    """`async` so FastAPI resolves it on the event loop (a sync dependency costs a threadpool hop)."""
    svc: RecService = request.app.state.service
    return svc


async def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


async def get_settings(request: Request) -> ServeSettings:
    settings: ServeSettings = request.app.state.service.settings
    return settings


Service = Annotated[RecService, Depends(get_service)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
Settings = Annotated[ServeSettings, Depends(get_settings)]


async def require_key(settings: Settings, x_api_key: Annotated[str | None, Header(max_length=256)] = None) -> None:
    """Write endpoints: disabled without a configured key (unless --insecure-dev), else the key must match."""
    if not settings.writes_enabled:
        raise HTTPException(403, "write endpoints are disabled: start the server with SOUTUI_API_KEY set "
                                 "(or --insecure-dev on a development machine)")
    if settings.api_key and not hmac.compare_digest((x_api_key or "").encode(), settings.api_key.encode()):
        raise HTTPException(401, "missing or wrong X-API-Key header")


Writer = Depends(require_key)


async def require_read_key(settings: Settings, x_api_key: Annotated[str | None, Header(max_length=256)] = None) -> None:
    """Read and admin endpoints: open only in explicit demo mode, else the read key (or the write key)."""
    if settings.demo:
        return
    keys = [k for k in (settings.read_key, settings.api_key) if k]
    if not keys:
        raise HTTPException(403, "read endpoints need a key: start the server with SOUTUI_READ_KEY (or "
                                 "SOUTUI_API_KEY) set, or with --demo for a demo")
    given = (x_api_key or "").encode()
    if not any(hmac.compare_digest(given, k.encode()) for k in keys):
        raise HTTPException(401, "missing or wrong X-API-Key header (read endpoints need the read key)")


Reader = Depends(require_read_key)

K = Annotated[int, Query(ge=1, le=100, description="how many results")]
Category = Annotated[str | None, Query(max_length=200, description="only items in this category (any level)")]
ModelName = Annotated[str | None, Query(max_length=64, description="recommender to use; default: the bundle's")]



def invalid(param: str, message: str, value: Any) -> RequestValidationError:
    """A 422 for a check FastAPI cannot express in the signature, in the same shape as its own
    (`{"detail": [{"loc", "msg", "type"}]}`), so every 422 of the API matches one schema."""
    return RequestValidationError([{"type": "value_error", "loc": ("query", param), "msg": message, "input": value}])


NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": S.Problem}}
WRITE_ERRORS: dict[int | str, dict[str, Any]] = {401: {"model": S.Problem}, 403: {"model": S.Problem}}
READ_ERRORS = WRITE_ERRORS  # the same two answers: no key configured (403), a missing or wrong key (401)


class FastJSON(Response):
    """JSON rendered by orjson. Hot routes return it directly, which skips FastAPI's
    re-validation of the result through the response model; the models still document the
    API in OpenAPI, and the fuzz test validates every response body against them."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
