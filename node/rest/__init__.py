"""The curl-friendly REST API (aiohttp), Orthanc-compatible where Orthanc has the endpoint."""
