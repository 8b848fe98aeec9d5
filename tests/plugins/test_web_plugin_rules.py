"""The rules web plugins live by, without installing one: who may call them, and which
panels the UI's navigation accepts."""

from __future__ import annotations

import pytest

from pacsnode.node.plugins import PluginError, PluginKind, build
from pacsnode.node.rest.roles import required_role
from pacsnode.node.settings import Role
from pacsnode.node.ui.panels import Panel, nav_link


@pytest.mark.parametrize(
    ("method", "path", "role"),
    [
        ("GET", "/plugins/example/modalities", Role.READ_ONLY),
        ("HEAD", "/plugins/example", Role.READ_ONLY),
        ("POST", "/plugins/example/echo", Role.READ_WRITE),
        ("PUT", "/plugins/example/a/b", Role.READ_WRITE),
        ("DELETE", "/plugins/example", Role.READ_WRITE),
        ("POST", "/plugins", Role.ADMIN),  # not a plugin's
    ],
)
def test_plugins_need_the_role_the_rest_api_needs(method: str, path: str, role: Role) -> None:
    assert required_role(method, path) is role


@pytest.mark.parametrize("path", ["", "modalities", "a/b/", "report?year=2026"])
def test_panels_link_below_their_plugin(path: str) -> None:
    panel = Panel("Modalities", path)
    assert panel.problem() is None
    assert nav_link("example", panel).href == f"/plugins/example/{path}"


@pytest.mark.parametrize(
    ("title", "path"),
    [
        ("", ""),
        ("x" * 41, ""),
        ("two\nlines", ""),
        ("Fine", "/ui/system"),
        ("Fine", "//elsewhere.example/"),
        ("Fine", "https://elsewhere.example/"),
        ("Fine", "../peer"),
        ("Fine", "a/../../ui"),
        ("Fine", "a b"),
    ],
)
def test_panels_that_would_lead_elsewhere_are_refused(title: str, path: str) -> None:
    assert Panel(title, path).problem() is not None


def test_a_plugin_that_is_not_installed_is_named_with_its_group() -> None:
    with pytest.raises(PluginError) as raised:
        build(PluginKind.WEB, "not-installed", lambda factory: factory())
    assert raised.value.message.startswith(
        "no web plugin 'not-installed': no entry point 'not-installed' in group 'pacsnode.web'"
    )
