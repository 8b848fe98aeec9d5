"""The node as a DICOM client: C-ECHO and C-STORE to configured modalities."""

from __future__ import annotations

import io
import logging
from typing import Any

import pydicom
from pynetdicom import AE, build_context, evt
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import Verification

from pacsnode.node.core import NodeCore
from pacsnode.node.dicom import encoding
from pacsnode.node.dicom.network import contexts_for, fitted_for, quiet_pynetdicom, set_nodelay
from pacsnode.node.errors import BadRequest, DomainError
from pacsnode.node.index import InstanceRef
from pacsnode.node.jobs import JobContext
from pacsnode.node.settings import Modality

log = logging.getLogger(__name__)


class RemoteDicomError(DomainError):
    """The remote modality could not be reached or refused the request."""

    code = "dicom-network-error"
    http_status = 502


def associate(
    aet: str,
    modality: Modality,
    contexts: list[PresentationContext],
    *,
    handlers: list[Any] | None = None,
    ext_neg: list[Any] | None = None,
) -> Any:
    """An association with the modality, as ``aet`` (or its LocalAet); RemoteDicomError
    when it cannot be opened. ``handlers`` and ``ext_neg`` go to pynetdicom as they are."""
    quiet_pynetdicom()
    encoding.install()
    ae = AE(ae_title=modality.local_aet or aet)
    association = ae.associate(
        modality.host,
        modality.port,
        contexts=contexts,
        ae_title=modality.aet,
        evt_handlers=[(evt.EVT_CONN_OPEN, set_nodelay), *(handlers or [])],
        ext_neg=ext_neg,
    )
    if not association.is_established:
        raise RemoteDicomError(
            f"cannot open an association with {modality.aet} at {modality.host}:{modality.port}"
        )
    return association


def echo(aet: str, modality: Modality) -> None:
    association = associate(aet, modality, [build_context(Verification)])
    try:
        status = association.send_c_echo()
    finally:
        association.release()
    if not status or status.Status != 0x0000:
        raise RemoteDicomError(f"{modality.aet} did not answer the C-ECHO")


def send(
    core: NodeCore, aet: str, modality: Modality, refs: list[InstanceRef], context: JobContext
) -> dict[str, Any]:
    """C-STORE each instance; fail the job if any instance is refused."""
    association = associate(aet, modality, contexts_for(refs))
    failed: list[str] = []
    try:
        for done, ref in enumerate(refs):
            context.progress(done, len(refs), Instances=done)
            dataset = fitted_for(core.instance_dataset(ref), association.accepted_contexts)
            status = association.send_c_store(dataset)
            if not status or status.Status not in (0x0000, 0xB000, 0xB007, 0xB006):
                failed.append(ref.id)
    finally:
        association.release()
    if failed:
        raise RemoteDicomError(f"{modality.aet} refused {len(failed)} of {len(refs)} instances")
    return {"Instances": len(refs), "Failed": failed}


def store_straight(aet: str, modality: Modality, data: bytes) -> tuple[str, str]:
    """C-STORE one DICOM file as it is (not stored here); its (SOP class, instance) UIDs."""
    try:
        dataset = pydicom.dcmread(io.BytesIO(data))
        sop_class, sop_instance = str(dataset.SOPClassUID), str(dataset.SOPInstanceUID)
        syntax = str(dataset.file_meta.TransferSyntaxUID)
    except Exception as exc:  # anything pydicom cannot read is a bad request here
        raise BadRequest(f"the body is not a DICOM file: {exc}") from None
    association = associate(aet, modality, [build_context(sop_class, [syntax])])
    try:
        status = association.send_c_store(dataset)
    finally:
        association.release()
    if not status or status.Status not in (0x0000, 0xB000, 0xB007, 0xB006):
        raise RemoteDicomError(f"{modality.aet} refused the instance")
    return sop_class, sop_instance
