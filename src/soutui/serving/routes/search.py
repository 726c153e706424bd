"""Product search: /v1/search (keyword + semantic, filters, sort, facets, optional personalisation).

A plain `def` route: BM25, faiss, the query encoder and LightGBM are CPU work for the threadpool.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from soutui.serving import schemas as S
from soutui.serving.deps import READ_ERRORS, Category, FastJSON, K, Reader, Service, invalid

router = APIRouter(tags=["search"], dependencies=[Reader], responses=READ_ERRORS)


@router.get("/v1/search", response_model=S.SearchResponse, responses={503: {"model": S.Problem}})
def search(
    svc: Service,
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
    explain: Annotated[bool, Query(description="add each hit's per-feature contributions (TreeSHAP for ltr)")] = False,
) -> Response:
    """Keyword + semantic product search with filters, sort, facets; personalised when user_id is given."""
    if min_price is not None and max_price is not None and min_price > max_price:
        raise invalid("min_price", "min_price must not exceed max_price", min_price)
    try:
        return FastJSON(svc.search(q, k, user_id, category, brand, min_price, max_price, in_stock, sort, method, explain))
    except ValueError as exc:  # the engine's own input checks (e.g. a query with no usable text)
        raise invalid("q", str(exc), q) from exc
