"""DICOMweb (PS3.18): QIDO-RS search, WADO-RS retrieve, STOW-RS store, served from the archive.

The archive-direct study ZIP already holds WADO-RS resources (gzipped study metadata,
frames and bulk data as multipart part files), so most answers here are a read of a stored
entry. Pure logic (Accept negotiation, query parsing, metadata views, STOW answers) lives in
modules the tests call directly; the handlers are the I/O edge.
"""
