"""The REST app in-process, as the REST tests make it (the viewer is one of its routes)."""

from __future__ import annotations

from tests.node.rest.conftest import client, make_client

__all__ = ["client", "make_client"]
