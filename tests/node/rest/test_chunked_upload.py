"""A browser's upload in pieces (jQuery File Upload's maxChunkSize, as Orthanc Explorer does)."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from tests.node.rest.conftest import get_json
from tests.storage.helpers import ct_bytes

_BOUNDARY = "----WebKitFormBoundaryPacsnode"


async def _send_piece(client: TestClient, piece: bytes, name: str, total: int) -> int:
    body = (
        (
            f'--{_BOUNDARY}\r\nContent-Disposition: form-data; name="files[]"; filename="{name}"'
            "\r\n\r\n"
        ).encode()
        + piece
        + f"\r\n--{_BOUNDARY}--\r\n".encode()
    )
    headers = {
        "Content-Type": f"multipart/form-data; boundary={_BOUNDARY}",
        "X-Requested-With": "XMLHttpRequest",
        "X-File-Name": name,
        "X-File-Size": str(total),
    }
    response = await client.post("/instances", data=body, headers=headers)
    return response.status


async def test_a_file_in_pieces_is_stored_with_its_last_piece(client: TestClient) -> None:
    first, other = ct_bytes(0), ct_bytes(1)
    assert await _send_piece(client, first[:1000], "a.dcm", len(first)) == 200
    assert await get_json(client, "/instances") == []
    # another file, whole in one request, between the pieces
    assert await _send_piece(client, other, "b.dcm", len(other)) == 200
    assert len(await get_json(client, "/instances")) == 1
    assert await _send_piece(client, first[1000:], "a.dcm", len(first)) == 200
    instances = await get_json(client, "/instances")
    assert len(instances) == 2
    files = [await (await client.get(f"/instances/{i}/file")).read() for i in instances]
    assert sorted(files) == sorted([first, other])


async def test_a_piece_past_the_announced_size_is_refused(client: TestClient) -> None:
    data = ct_bytes(0)
    assert await _send_piece(client, data, "a.dcm", len(data) - 10) == 400
