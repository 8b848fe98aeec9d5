"""``/tools/dicom-conformance``: what the node's DICOM server accepts, as plain text.

Read from the same lists the server is built from (pynetdicom's storage SOP classes and
transfer syntaxes, the query/retrieve models of :mod:`pacsnode.node.dicom.services`).
"""

from __future__ import annotations

from pydicom.uid import UID
from pynetdicom import ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts
from pynetdicom.sop_class import Verification

from pacsnode.node.dicom.services import QUERY_MODELS
from pacsnode.node.settings import NodeConfig

_SERVICES = (Verification, *QUERY_MODELS)


def _line(uid: str) -> str:
    return f"  {uid:<40} {UID(uid).name}"


def conformance_statement(config: NodeConfig) -> str:
    lines = [
        "pacsnode DICOM conformance",
        f"AE title {config.dicom.aet}, port {config.dicom.port}",
        "",
        "Services (SCP): C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET",
        *(_line(str(uid)) for uid in _SERVICES),
        "",
        "Storage SOP classes accepted (SCP; also sent as SCU, and to C-GET requestors):",
        *(_line(str(context.abstract_syntax)) for context in AllStoragePresentationContexts),
        "",
        "Transfer syntaxes accepted for storage (stored as received, never transcoded):",
        *(_line(str(uid)) for uid in ALL_TRANSFER_SYNTAXES),
        "",
    ]
    return "\n".join(lines)
