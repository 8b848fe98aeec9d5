"""Stored instances on their way out by C-STORE (the sub-operations of C-GET and C-MOVE).

pynetdicom sends a pydicom Dataset: the node would parse each stored file into one for
pynetdicom to write it back into the same bytes, a sixth of the CPU of a C-GET of a CT
study. An :class:`EncodedInstance` is a Dataset with only what pynetdicom reads before
it encodes (the SOP Class and Instance UIDs, the file meta's transfer syntax) that
carries the stored file's bytes; :func:`pacsnode.node.dicom.encoding.install` makes
pynetdicom's encoder send them as they are when the presentation context is the stored
transfer syntax's encoding, and parse them to convert otherwise.
"""

from __future__ import annotations

import io
import struct

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32
from pynetdicom.presentation import PresentationContext

from pacsnode.node.dicom.network import fitted_for, takes_as_stored

#: the preamble, "DICM", and the header of the File Meta Information Group Length
_META_START = 128 + 4
_GROUP_LENGTH = struct.Struct("<HH2sHL")
#: the file meta elements pynetdicom needs to send an instance: SOP Class UID, SOP
#: Instance UID and Transfer Syntax UID
_META_UIDS = (0x0002, 0x0003, 0x0010)


class EncodedInstance(Dataset):
    """A stored instance as its file's bytes (see the module docstring)."""

    def __init__(
        self, p10: bytes, dataset_offset: int, sop_class: str, sop_instance: str, syntax: str
    ) -> None:
        super().__init__()
        self.SOPClassUID = sop_class
        self.SOPInstanceUID = sop_instance
        self.file_meta = FileMetaDataset()
        self.file_meta.TransferSyntaxUID = syntax
        self._p10 = p10
        self._dataset_offset = dataset_offset

    def encoded(self, implicit_vr: bool, little_endian: bool, deflated: bool) -> bytes | None:
        """The dataset's bytes when they are in this encoding, else ``None``."""
        syntax = UID(self.file_meta.TransferSyntaxUID)
        if (syntax.is_implicit_VR, syntax.is_little_endian, syntax.is_deflated) != (
            implicit_vr,
            little_endian,
            deflated,
        ):
            return None
        return self._p10[self._dataset_offset :]

    def decoded(self) -> Dataset:
        """The instance parsed, for pydicom to convert it to another encoding."""
        return pydicom.dcmread(io.BytesIO(self._p10))


def outgoing(p10: bytes, contexts: list[PresentationContext] | None = None) -> Dataset:
    """The stored file ``p10`` as pynetdicom should send it: as stored when the peer
    takes that (``contexts``: what it accepted; ``None``: anything, the sender offers the
    stored syntax itself), else parsed and fitted (see :func:`fitted_for`)."""
    instance = _encoded(p10)
    if instance is None:
        dataset = pydicom.dcmread(io.BytesIO(p10))
        return dataset if contexts is None else fitted_for(dataset, contexts)
    if contexts is None or takes_as_stored(instance, contexts):
        return instance
    return fitted_for(instance.decoded(), contexts)


def _encoded(p10: bytes) -> EncodedInstance | None:
    """``p10`` as an :class:`EncodedInstance`, or ``None`` when its header is not the
    usual one (no preamble, no group length, a UID missing): pydicom reads those."""
    if p10[128:_META_START] != b"DICM" or len(p10) < _META_START + _GROUP_LENGTH.size:
        return None
    group, element, vr, value_length, group_length = _GROUP_LENGTH.unpack_from(p10, _META_START)
    if (group, element, vr, value_length) != (2, 0, b"UL", 4):
        return None
    dataset_offset = _META_START + _GROUP_LENGTH.size + group_length
    if dataset_offset > len(p10):
        return None
    uids = _meta_uids(p10[_META_START + _GROUP_LENGTH.size : dataset_offset])
    if uids is None:
        return None
    return EncodedInstance(p10, dataset_offset, *uids)


def _meta_uids(elements: bytes) -> tuple[str, str, str] | None:
    """The SOP Class, SOP Instance and Transfer Syntax UIDs of File Meta Information
    elements (explicit VR little endian), or ``None`` when one is missing or unreadable."""
    found: dict[int, str] = {}
    position = 0
    while position + 8 <= len(elements):
        group, element, vr = struct.unpack_from("<HH2s", elements, position)
        if vr.decode("ascii", "replace") in EXPLICIT_VR_LENGTH_32:
            (length,) = struct.unpack_from("<L", elements, position + 8)
            position += 12
        else:
            (length,) = struct.unpack_from("<H", elements, position + 6)
            position += 8
        if group != 2 or position + length > len(elements):
            return None
        if element in _META_UIDS:
            value = elements[position : position + length].rstrip(b"\0 ")
            if not value.isascii():
                return None
            found[element] = value.decode("ascii")
        position += length
    if not all(found.get(element) for element in _META_UIDS):
        return None
    return found[0x0002], found[0x0003], found[0x0010]
