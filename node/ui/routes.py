"""The UI's routes under ``/ui/``. Importing this module imports no template engine: the
first page makes it (:mod:`.render`)."""

from __future__ import annotations

from aiohttp import web

from pacsnode.node.ui import BASE_PATH, pages
from pacsnode.node.ui.render import LISTINGS, UI_TEMPLATES, LazyTemplates
from pacsnode.node.ui.views import ListingCache


def setup_routes(app: web.Application) -> None:
    app[UI_TEMPLATES] = LazyTemplates()
    app[LISTINGS] = ListingCache()
    base = BASE_PATH.rstrip("/")
    route = app.router
    route.add_get(base, pages.home)
    route.add_get(BASE_PATH, pages.home)
    route.add_get(f"{base}/studies", pages.studies)
    route.add_get(f"{base}/studies/{{id}}", pages.study)
    route.add_get(f"{base}/studies/{{id}}/delete", pages.confirm_delete)
    route.add_post(f"{base}/studies/{{id}}/delete", pages.delete_study)
    route.add_post(f"{base}/studies/{{id}}/protect", pages.protect_study)
    route.add_post(f"{base}/studies/{{id}}/send", pages.send_study)
    route.add_get(f"{base}/instances/{{id}}", pages.instance)
    route.add_get(f"{base}/upload", pages.upload_page)
    route.add_post(f"{base}/upload", pages.upload)
    route.add_get(f"{base}/peers", pages.peers)
    route.add_post(f"{base}/peers/{{name}}/sync", pages.sync_peer)
    route.add_get(f"{base}/jobs", pages.jobs)
    route.add_post(f"{base}/jobs/{{id}}/cancel", pages.cancel_job)
    route.add_get(f"{base}/system", pages.system)
    route.add_get(f"{base}/static/{{name}}", pages.static)
    route.add_get(f"{base}/{{tail:.*}}", pages.not_found)
