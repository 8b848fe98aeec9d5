"""Wiring the DICOMweb service into the node's web app, under its configured root."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Middleware

from pacsnode.node.dicomweb import cors, retrieve, search, stow
from pacsnode.node.settings import DicomWebSettings


def middlewares(settings: DicomWebSettings) -> list[Middleware]:
    """Middlewares that must run before all others (CORS preflight, before auth)."""
    return [cors.preflight(settings)] if settings.enabled and settings.cors_origins else []


def setup(app: web.Application, settings: DicomWebSettings) -> None:
    if not settings.enabled:
        return
    search.setup_routes(app, settings.root)
    retrieve.setup_routes(app, settings.root)
    stow.setup_routes(app, settings.root)
    if settings.cors_origins:
        app.on_response_prepare.append(cors.add_headers(settings))
