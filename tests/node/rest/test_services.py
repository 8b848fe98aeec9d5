"""Services opened and closed with the app: the DICOM server, the replicator, the listener."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from pynetdicom import AE
from pynetdicom.sop_class import Verification

from pacsnode.node.rest.app import create_app
from pacsnode.node.rest.context import REPLICATOR
from pacsnode.node.settings import DicomSettings, PeeringSettings, PeerSettings
from tests.node.rest.conftest import MakeClient, MakeCore, get_json, node_config
from tests.node.server import REPO, free_port

# What only a node with peers needs (scheduler, TLS identity, protocol): idle memory matters.
PEERING_MODULES = (
    "apscheduler",
    "pacsnode.peer.schedule",
    "cryptography",
    "pacsnode.node.peering",
    "pacsnode.node.replication",
    "pacsnode.peer.client",
    "pacsnode.peer.identity",
    "pacsnode.peer.server",
    "pacsnode.peer.tls",
)
PEER = {"Url": "https://127.0.0.1:9", "Fingerprint": "AB-CD", "IntervalSeconds": 3600}


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def echo_as(aet: str, port: int) -> bool:
    """Whether the node accepts an association from ``aet`` and answers its C-ECHO."""
    ae = AE(ae_title=aet)
    ae.add_requested_context(Verification)
    association = ae.associate("127.0.0.1", port, ae_title="PACSNODE")
    if not association.is_established:
        return False
    try:
        return association.send_c_echo().Status == 0x0000
    finally:
        association.release()


async def test_a_replicator_made_by_put_peers_is_stopped_with_the_app(
    make_client: MakeClient,
) -> None:
    client = await make_client()
    slot = client.app[REPLICATOR]
    assert slot.current is None and await get_json(client, "/peers") == []
    assert (await client.put("/peers/siteb", json=PEER)).status == 200
    assert await get_json(client, "/peers") == ["siteb"]
    replicator = slot.current
    assert replicator is not None and replicator._scheduler is not None
    assert replicator._scheduler.running
    await client.close()
    assert not replicator._scheduler.running


async def test_peers_put_and_deleted_over_rest_reach_the_listener_pins_and_schedule(
    make_client: MakeClient,
) -> None:
    client = await make_client()
    assert (await client.put("/peers/siteb", json=PEER)).status == 200
    replicator = client.app[REPLICATOR].current
    assert replicator is not None and replicator._scheduler is not None
    assert replicator.pins["siteb"].fingerprint == "AB-CD"
    assert replicator._scheduler.get_job("siteb") is not None
    changed = {**PEER, "Fingerprint": "EF-01", "Pull": False}
    assert (await client.put("/peers/siteb", json=changed)).status == 200
    assert replicator.pins["siteb"].fingerprint == "EF-01"
    assert not replicator.pins["siteb"].may_pull
    shown = await get_json(client, "/peers/siteb/configuration")
    assert shown["Fingerprint"] == "EF-01" and shown["Pull"] is False
    assert (await client.delete("/peers/siteb")).status == 200
    assert "siteb" not in replicator.pins and replicator._scheduler.get_job("siteb") is None
    assert await get_json(client, "/peers") == []
    assert (await client.delete("/peers/siteb")).status == 404


async def test_configured_peers_open_the_replicator_and_the_listener(
    make_client: MakeClient,
) -> None:
    port = free_port()
    client = await make_client(
        peers=(PeerSettings(name="siteb", fingerprint="AB-CD"),),
        peering=PeeringSettings(port=port),
    )
    replicator = client.app[REPLICATOR].current
    assert replicator is not None and replicator._scheduler is not None
    assert await get_json(client, "/peers") == ["siteb"] and listening(port)
    await client.close()
    assert not listening(port) and not replicator._scheduler.running


async def test_the_dicom_server_follows_the_registry(
    make_core: MakeCore, aiohttp_client: Any, tmp_path: Path
) -> None:
    port = free_port()
    dicom = DicomSettings(port=port, accept_unknown_callers=False)
    config = node_config(tmp_path / "data", dicom=dicom)
    app = create_app(make_core(data_dir=config.core.data_dir), config, serve_dicom=True)
    client = await aiohttp_client(app)
    assert not await asyncio.to_thread(echo_as, "NEWCALLER", port)
    body = {"AET": "NEWCALLER", "Host": "127.0.0.1", "Port": 104}
    assert (await client.put("/modalities/new", json=body)).status == 200
    assert await asyncio.to_thread(echo_as, "NEWCALLER", port)
    assert not await asyncio.to_thread(echo_as, "STRANGER", port)
    assert (await client.delete("/modalities/new")).status == 200
    assert not await asyncio.to_thread(echo_as, "NEWCALLER", port)
    await client.close()
    assert not listening(port)


def test_a_node_without_peers_loads_no_peering_code(tmp_path: Path) -> None:
    # In a fresh interpreter: this test process has imported everything already.
    script = textwrap.dedent(
        f"""
        import asyncio, dataclasses, sys
        from aiohttp import web
        from pacsnode.node.config import load_config
        from pacsnode.node.settings import CoreSettings
        from pacsnode.node.core import NodeCore
        from pacsnode.node.server import create_app

        settings = CoreSettings(data_dir={str(tmp_path / "data")!r})
        config = dataclasses.replace(load_config(), core=settings)
        core = NodeCore(settings)
        core.open(background=False)

        async def run():
            runner = web.AppRunner(create_app(core, config))
            await runner.setup()
            await runner.cleanup()

        asyncio.run(run())
        core.close()
        loaded = [
            name for name in sys.modules
            if name.startswith({PEERING_MODULES!r})
        ]
        print(sorted(loaded))
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
