"""Archives made by jobs that no job knows any more go when the app starts."""

from __future__ import annotations

from pathlib import Path

from tests.node.rest.conftest import MakeClient


async def test_stale_and_half_written_archives_go_at_start(
    make_client: MakeClient, tmp_path: Path
) -> None:
    # What a SIGKILL mid-job leaves (tests/node/test_crash_background.py found it kept
    # for ever), and a finished archive whose job died with the previous process.
    archives = tmp_path / "data" / "archives"
    archives.mkdir(parents=True)
    (archives / ".0123456789abcdef0123456789abcdef.zip.part").write_bytes(b"PK half")
    (archives / "fedcba9876543210fedcba9876543210.zip").write_bytes(b"PK whole")
    client = await make_client()
    assert list(archives.iterdir()) == []
    response = await client.post("/tools/create-archive", json={"Resources": []})
    assert response.status == 200  # the spool still works afterwards
