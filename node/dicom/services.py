"""The node's DICOM application entity: what it accepts and which handler answers."""

from __future__ import annotations

import logging
import threading
from typing import Any

from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)
from pynetdicom.transport import ThreadedAssociationServer

from pacsnode.node.core import NodeCore
from pacsnode.node.dicom import encoding, handlers
from pacsnode.node.dicom.admission import KnownCallers, Slots, follow, on_connection, on_request
from pacsnode.node.dicom.network import (
    ACCEPTED_SYNTAXES,
    CheaplyCopied,
    quiet_pynetdicom,
    set_nodelay,
)
from pacsnode.node.jobs import JobRegistry
from pacsnode.node.registry import Registry
from pacsnode.node.settings import NodeConfig

log = logging.getLogger(__name__)

#: the query/retrieve models the node answers (also listed by /tools/dicom-conformance)
QUERY_MODELS = (
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelMove,
    PatientRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelGet,
)


def make_ae(config: NodeConfig, registry: Registry) -> AE:
    quiet_pynetdicom()
    encoding.install()
    ae = AE(ae_title=config.dicom.aet)
    ae.add_supported_context(Verification, ACCEPTED_SYNTAXES)
    for context in AllStoragePresentationContexts:
        # scp_role for C-GET: the requestor stores what we send on its association
        ae.add_supported_context(
            context.abstract_syntax, ACCEPTED_SYNTAXES, scp_role=True, scu_role=False
        )
    for model in QUERY_MODELS:
        ae.add_supported_context(model)
    # Callers are admitted by node.dicom.admission (AE title, host, called AE title), and
    # connections counted from accept by its Slots: pynetdicom's own count starts later.
    ae.maximum_associations = config.dicom.max_associations
    return ae


class GuardedServer(ThreadedAssociationServer):
    """pynetdicom's server with a say at accept: socketserver closes a connection whose
    ``verify_request`` is false before any thread or association exists for it."""

    slots: Slots

    def verify_request(self, request: Any, client_address: Any) -> bool:
        return self.slots.admit(tuple(client_address))


def start_dicom_server(
    core: NodeCore, config: NodeConfig, registry: Registry, jobs: JobRegistry | None = None
) -> ThreadedAssociationServer:
    """Listen for associations in background threads; stop with :func:`stop_dicom_server`.
    Incoming C-MOVEs are listed in ``jobs`` (the REST API's ``/jobs``) when given."""
    jobs = jobs if jobs is not None else JobRegistry()
    ae = make_ae(config, registry)
    known = KnownCallers()
    follow(known, registry)  # host names resolved now and on each change, not per call
    slots = Slots(config.dicom, known.addresses)
    bindings = [
        (evt.EVT_CONN_OPEN, on_connection(slots, config.dicom.association_request_timeout_s)),
        (evt.EVT_CONN_OPEN, set_nodelay),
        (evt.EVT_REQUESTED, on_request(config.dicom, known)),
        (evt.EVT_C_ECHO, handlers.handle_echo),
        (evt.EVT_C_STORE, handlers.handle_store, [core, config.dicom.aet]),
        (evt.EVT_C_FIND, handlers.handle_find, [core, config, known]),
        (evt.EVT_C_GET, handlers.handle_get, [core, config, known]),
        (evt.EVT_C_MOVE, handlers.handle_move, [core, config, registry, jobs, known]),
    ]
    server = ae.make_server(
        (config.dicom.host, config.dicom.port),
        evt_handlers=bindings,
        contexts=CheaplyCopied(ae.supported_contexts),
        server_class=GuardedServer,
    )
    server.slots = slots
    # as AE.start_server(block=False) does, with our server class
    threading.Thread(target=server.serve_forever, name="DicomAcceptor", daemon=True).start()
    ae._servers.append(server)  # AssociationServer.shutdown removes it from there
    log.info("DICOM %s listening on %s:%d", config.dicom.aet, config.dicom.host, config.dicom.port)
    return server


def stop_dicom_server(server: ThreadedAssociationServer) -> None:
    # A peer that never releases must not hold up the exit; nor a C-MOVE destination that
    # stops answering once associated (pynetdicom opens that association with the server's
    # own AE, and the shutdown waits for the C-MOVE's thread). One that never accepts is
    # still waited for up to pynetdicom's ACSE timeout.
    for association in {*server.active_associations, *server.ae.active_associations}:
        association.abort()
    server.shutdown()
