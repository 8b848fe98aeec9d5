"""``/instances/{id}/file`` with ``Accept: application/dicom+json``."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from tests.node.rest.conftest import upload
from tests.storage.odd_files import odd_file, to_bytes


async def test_file_as_dicom_json_is_the_files_data_set(client: TestClient) -> None:
    dataset = odd_file()
    ids = await upload(client, to_bytes(dataset))
    response = await client.get(
        f"/instances/{ids['ID']}/file", headers={"Accept": "application/dicom+json"}
    )
    assert response.status == 200 and response.content_type == "application/dicom+json"
    shown = await response.json()
    assert shown["00080018"] == {"vr": "UI", "Value": [dataset.SOPInstanceUID]}
    assert "00083002" not in shown  # pacsnode's own addition to the stored metadata
    bulk = shown["00091030"]["BulkDataURI"]
    assert bulk.startswith("http") and bulk.endswith("/bulkdata/00091030")
    assert shown["7FE00010"]["BulkDataURI"].endswith("/frames")
    plain = await client.get(f"/instances/{ids['ID']}/file")
    assert plain.content_type == "application/dicom"
