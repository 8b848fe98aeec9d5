"""The web UI for the people who run the node, at ``/ui/``.

Server-rendered pages (aiohttp-jinja2 templates, imported on the first ``/ui/`` request so
an idle node does not carry them), a little plain JavaScript that only enhances them, and
assets shipped inside the package: no build step, no CDN, no request leaves the node.
Authentication is the REST API's: its middleware covers every route, these included.
"""

from __future__ import annotations

#: where the UI answers
BASE_PATH = "/ui/"
