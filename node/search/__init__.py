"""Search over every attribute: the query language, the documents indexed, the engine.

Pure building blocks, wired into the node elsewhere: :mod:`.query_language` parses a
query string into a small AST, :mod:`.documents` flattens one instance's DICOM JSON
into the fields to index, :mod:`.fields` names those fields (both sides use it), and
:mod:`.engine` keeps them in an embedded index and answers an AST at a level.
:mod:`.feeder` is the node's side: the thread that keeps the index up to date from
the change feed (``NodeCore`` starts it; ``POST /tools/search`` asks it).
"""
