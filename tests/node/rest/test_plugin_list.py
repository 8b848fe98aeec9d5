"""``GET /plugins`` and ``/plugins/{name}`` as Orthanc clients read them: whether DICOMweb
is there, and each plugin's version."""

from __future__ import annotations

import dataclasses

from pacsnode.node.config import load_config
from pacsnode.node.rest.plugin_list import listed
from pacsnode.node.rest.system import VERSION
from pacsnode.node.settings import DicomWebSettings, PluginSettings, SearchSettings
from tests.node.rest.conftest import MakeClient, assert_error, get_json


async def test_the_default_node_lists_dicomweb_storage_and_indexes(
    make_client: MakeClient,
) -> None:
    client = await make_client()
    assert await get_json(client, "/plugins") == ["dicom-web", "local", "maintags", "search"]
    dicomweb = await get_json(client, "/plugins/dicom-web")
    assert dicomweb["ID"] == "dicom-web" and dicomweb["Version"] == VERSION
    assert "/dicom-web/" in dicomweb["Description"] and dicomweb["Kind"] == "built in"
    search = await get_json(client, "/plugins/search")
    assert search["Kind"] == "index"
    assert "pacsnode.index: pacsnode.node.search.plugin:search" in search["Description"]
    # what Orthanc's tools ask before using a plugin this node does not have
    await assert_error(await client.get("/plugins/gdcm"), 404, "http-error")


async def test_what_is_off_is_not_listed(make_client: MakeClient) -> None:
    client = await make_client(dicomweb=DicomWebSettings(enabled=False))
    assert "dicom-web" not in await get_json(client, "/plugins")
    await assert_error(await client.get("/plugins/dicom-web"), 404, "http-error")


def test_the_configured_plugins_in_order_each_name_once() -> None:
    defaults = load_config()
    chosen = PluginSettings(storage_backend="s3", index=("bodypart",), web=("panel", "s3"))
    core = dataclasses.replace(defaults.core, plugins=chosen, search=SearchSettings(enabled=False))
    config = dataclasses.replace(defaults, core=core)
    infos = listed(config)
    assert [(i.name, i.kind) for i in infos] == [
        ("dicom-web", "built in"),
        ("s3", "storage"),
        ("maintags", "index"),
        ("bodypart", "index"),
        ("panel", "web"),
    ]
    # a plugin that is not installed is still named, with its group
    assert infos[3].description == "index plugin (pacsnode.index)"
