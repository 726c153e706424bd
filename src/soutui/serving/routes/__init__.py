"""The /v1 API and the pages, one `APIRouter` per concern; `app.create_app` includes them all."""

from soutui.serving.routes import admin, events, experiments, pages, recommend, search, users

ROUTERS = (recommend.router, search.router, events.router, users.router, admin.router, experiments.router, pages.router)
