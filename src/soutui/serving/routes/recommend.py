"""Recommendation and catalogue reads: /v1/recommend, /v1/similar, /v1/trending, /v1/items, /v1/demo-users.

Scoring (ONNX, numpy) is CPU work, so these are plain `def` routes: FastAPI runs them in
its threadpool and the event loop keeps accepting requests meanwhile.
"""

from __future__ import annotations

import time
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from soutui.serving import schemas as S
from soutui.serving.deps import NOT_FOUND, READ_ERRORS, Category, FastJSON, K, ModelName, Reader, Service
from soutui.serving.routes.experiments import ExperimentsDep

router = APIRouter(tags=["recommend"], dependencies=[Reader], responses=READ_ERRORS)
Explain = Annotated[bool, Query(description="add each result's attributions and a reason written from the strongest")]
ExplainMethod = Annotated[
    Literal["occlusion", "counterfactual", "lime"],
    Query(description="how history items are attributed with explain=true: occlusion (each one's share of the "
          "score; item-kNN: its exact neighbour evidence), counterfactual (each one's share of the result's lead "
          "over the best item left out) or lime (a local surrogate over random subsets of the history)"),
]  # fmt: skip


@router.get("/v1/recommend/{user_id}", response_model=S.RecommendResponse, responses=NOT_FOUND)
def recommend(
    svc: Service,
    exps: ExperimentsDep,
    user_id: Annotated[str, S.Id],
    k: K = 10,
    category: Category = None,
    exclude_purchased: Annotated[bool | None, Query(description="default from the rules config")] = None,
    diverse: Annotated[bool, Query(description="spread results over categories / item space")] = False,
    model: ModelName = None,
    explain: Explain = False,
    explain_method: ExplainMethod = "occlusion",
) -> Response:
    """Personalised list from the user's latest history; users without history get trending. A user
    in an online experiment gets its list, tagged with `experiment` (send its `impression_id` with events).
    `explain=true` adds each result's attributions (the plain model's list, outside experiments)."""
    start = time.perf_counter()
    if explain:
        out = svc.recommend(
            user_id, k, category, exclude_purchased, diverse, model, explain_results=True, explain_method=explain_method
        )
    else:
        out = exps.recommend(user_id, k, category, exclude_purchased, diverse, model)  # an experiment's or the plain answer
    svc.monitor.served_response("recommend", out, time.perf_counter() - start)
    return FastJSON(out)


@router.get("/v1/similar/{item_id}", response_model=S.SimilarResponse, responses=NOT_FOUND)
def similar(
    svc: Service, item_id: Annotated[str, S.Id], k: K = 10, model: ModelName = None, explain: Explain = False
) -> Response:
    """Items like this one (for a product page); `explain=true` adds each result's attributions."""
    start = time.perf_counter()
    out = svc.similar(item_id, k, model, explain_results=explain)
    svc.monitor.served_response("similar", out, time.perf_counter() - start)
    return FastJSON(out)


@router.get("/v1/trending", response_model=S.TrendingResponse)
def trending(svc: Service, k: K = 10, category: Category = None, diverse: bool = False) -> Response:
    """Most interacted-with items in the recent window, live-updated by new events."""
    start = time.perf_counter()
    out = svc.trending(k, category, diverse)
    svc.monitor.served_response("trending", out, time.perf_counter() - start)
    return FastJSON(out)


@router.get("/v1/demo-users", response_model=S.DemoUsers, tags=["catalogue"])
def demo_users(svc: Service, n: Annotated[int, Query(ge=1, le=50)] = 5) -> Response:
    """A few user ids that have a history, to try personalisation in the storefront."""
    return FastJSON({"users": svc.demo_users(n)})


@router.get("/v1/items/{item_id}", response_model=S.Item, responses=NOT_FOUND, tags=["catalogue"])
def item(svc: Service, item_id: Annotated[str, S.Id]) -> Response:
    """One catalogue item."""
    return FastJSON(svc.item(item_id))
