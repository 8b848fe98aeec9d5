"""DICOMweb's own refusals; everything else is the node's error model (``node.errors``)."""

from __future__ import annotations

from pacsnode.node.errors import DomainError


class NotAcceptable(DomainError):
    """No representation the client accepts can be served (no transcoding here)."""

    code = "not-acceptable"
    http_status = 406
