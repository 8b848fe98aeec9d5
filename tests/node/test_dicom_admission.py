"""The DICOM admission rules as plain functions: exposure defaults, caller matching, slots."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from pacsnode.node.config import load_config
from pacsnode.node.dicom.admission import (
    CALLED_AET_NOT_RECOGNIZED,
    CALLING_AET_NOT_RECOGNIZED,
    Caller,
    KnownCallers,
    Slots,
    exposure_lines,
    normalized,
    refusal,
)
from pacsnode.node.errors import ConfigError
from pacsnode.node.settings import DicomSettings, Modality

USER = '[[users]]\nname = "a"\npassword_hash = "scrypt$16384$8$1$AA==$AA=="\n'


def config_with(tmp_path: Path, text: str) -> DicomSettings:
    path = tmp_path / "node.toml"
    path.write_text(text)
    return load_config(path).dicom


def test_exposed_dicom_defaults_to_known_callers_from_their_hosts(tmp_path: Path) -> None:
    exposed = config_with(tmp_path, f'[dicom]\nhost = "0.0.0.0"\n{USER}')
    assert not exposed.accept_unknown_callers
    assert exposed.check_called_aet and exposed.check_caller_host
    local = config_with(tmp_path, "")
    assert local.accept_unknown_callers  # loopback stays convenient
    assert not local.check_called_aet and not local.check_caller_host
    stated = config_with(
        tmp_path, f'[dicom]\nhost = "0.0.0.0"\naccept_unknown_callers = true\n{USER}'
    )
    assert stated.accept_unknown_callers  # said so explicitly: kept, and warned at start


def test_reserved_slots_must_leave_room(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="reserved_for_modalities"):
        config_with(tmp_path, "[dicom]\nmax_associations = 4\nreserved_for_modalities = 4\n")


STRICT = DicomSettings(aet="NODE", accept_unknown_callers=False, check_called_aet=True,
                       check_caller_host=True)  # fmt: skip
KNOWN = {"CT1": frozenset({"10.0.0.5"})}


def test_refusal_names_the_standard_reason() -> None:
    assert refusal(Caller("CT1", "NODE", "10.0.0.5"), STRICT, KNOWN) is None
    assert refusal(Caller("CT1", "NODE", "::ffff:10.0.0.5"), STRICT, KNOWN) is None
    wrong_host = refusal(Caller("CT1", "NODE", "10.0.0.6"), STRICT, KNOWN)
    assert wrong_host and wrong_host[0] == CALLING_AET_NOT_RECOGNIZED
    assert "from this host" in wrong_host[1]
    stranger = refusal(Caller("X", "NODE", "10.0.0.5"), STRICT, KNOWN)
    assert stranger and stranger[0] == CALLING_AET_NOT_RECOGNIZED
    called = refusal(Caller("CT1", "OTHER", "10.0.0.5"), STRICT, KNOWN)
    assert called and called[0] == CALLED_AET_NOT_RECOGNIZED
    store_anyone = DicomSettings(aet="NODE", accept_unknown_callers=False, always_allow_store=True)
    assert refusal(Caller("X", "OTHER", "1.2.3.4"), store_anyone, KNOWN) is None


def test_a_moved_host_name_is_looked_up_again_on_a_miss() -> None:
    answers = {"ct.example": frozenset({"10.0.0.5"})}
    clock = [0.0]
    known = KnownCallers(resolver=lambda host: answers[host], clock=lambda: clock[0])
    known.update([Modality("ct", "CT1", "ct.example", 104)])
    answers["ct.example"] = frozenset({"10.0.0.9"})  # DHCP gave it a new address
    moved = Caller("CT1", "NODE", "10.0.0.9")
    assert not known.known(moved, check_host=True)  # looked up at most once a minute
    clock[0] = 61.0
    assert known.known(moved, check_host=True)
    assert known.addresses() == {"10.0.0.9"}


def test_slots_cap_per_address_and_keep_some_for_modalities() -> None:
    settings = DicomSettings(max_associations=6, max_associations_per_host=2,
                             reserved_for_modalities=2)  # fmt: skip
    slots = Slots(settings, lambda: frozenset({"10.0.0.5"}), clock=lambda: 0.0)
    assert slots.admit(("10.0.0.1", 1)) and slots.admit(("10.0.0.1", 2))
    assert not slots.admit(("10.0.0.1", 3))  # per address
    assert slots.admit(("10.0.0.2", 1)) and slots.admit(("10.0.0.2", 2))
    assert not slots.admit(("10.0.0.3", 1))  # the last two are the modalities'
    assert slots.admit(("10.0.0.5", 1)) and slots.admit(("::ffff:10.0.0.5", 2))
    assert not slots.admit(("10.0.0.5", 3))


def test_a_slot_is_free_again_once_its_association_ends() -> None:
    class Ended:
        ident = 1

        def is_alive(self) -> bool:
            return False

    slots = Slots(DicomSettings(max_associations_per_host=1), frozenset, clock=lambda: 0.0)
    assert slots.admit(("10.0.0.1", 1))
    assert not slots.admit(("10.0.0.1", 2))
    slots.opened(("10.0.0.1", 1), Ended())
    assert slots.admit(("10.0.0.1", 2))


def test_normalized_addresses() -> None:
    assert normalized("::ffff:192.168.1.2") == "192.168.1.2"
    assert normalized("fe80::1%eth0") == "fe80::1"
    assert normalized("not-an-address") == "not-an-address"


def test_exposure_lines_warn_about_unknown_callers_beyond_loopback() -> None:
    exposed = DicomSettings(host="0.0.0.0", accept_unknown_callers=True)
    lines = exposure_lines(exposed, [])
    assert any(level == logging.WARNING and "EXPOSED" in line for level, line in lines)
    quiet = exposure_lines(DicomSettings(), [Modality("ct", "CT1", "10.0.0.5", 104)])
    assert [level for level, _ in quiet] == [logging.INFO] and "CT1" in quiet[0][1]
