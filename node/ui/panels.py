"""Web plugins' panels: a title in the UI's navigation linking to the plugin's own page.

The UI only links to the page (``/plugins/{name}/{path}``); the plugin serves it, behind
the same authentication. Titles and paths are checked when the plugin is mounted, so a
panel can never make the navigation link off the node.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aiohttp import web

#: a path below the plugin's prefix: no scheme, no leading slash, no way up
_RELATIVE_PATH = re.compile(r"(?:[A-Za-z0-9._~!$&'()*+,;=:@%-]+/?)*(?:\?[^\s#\\]*)?")
_MAX_TITLE = 40


@dataclass(frozen=True)
class Panel:
    """What a web plugin shows in the UI's navigation.

    ``title``: the link's text (at most 40 characters); ``path``: the page, relative to
    the plugin's prefix (``""`` is ``/plugins/{name}/``, ``"modalities"`` is
    ``/plugins/{name}/modalities``)."""

    title: str
    path: str = ""

    def problem(self) -> str | None:
        """What is wrong with this panel, or None."""
        if not self.title.strip() or len(self.title) > _MAX_TITLE:
            return f"a panel's title takes 1 to {_MAX_TITLE} characters, not {self.title!r}"
        if not self.title.isprintable():
            return f"a panel's title is plain text, not {self.title!r}"
        parts = self.path.split("?")[0].split("/")
        if not _RELATIVE_PATH.fullmatch(self.path) or ".." in parts or "." in parts:
            return f"a panel's path is relative to the plugin's prefix, not {self.path!r}"
        return None


@dataclass(frozen=True)
class NavLink:
    """A panel as the navigation shows it."""

    plugin: str
    title: str
    href: str


def nav_link(plugin: str, panel: Panel) -> NavLink:
    return NavLink(plugin, panel.title, f"/plugins/{plugin}/{panel.path}")


#: the mounted plugins' links, in the order of ``[web] plugins``
PANELS: web.AppKey[tuple[NavLink, ...]] = web.AppKey("ui_panels", tuple)
