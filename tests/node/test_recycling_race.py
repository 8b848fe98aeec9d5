"""Recycling racing a user's deletion of the very patient it chose."""

from __future__ import annotations

import pytest

from pacsnode.node.errors import UnknownResource
from pacsnode.node.ids import Level
from pacsnode.node.index import DeletionReason
from tests.node.conftest import MakeCore
from tests.storage.helpers import ct_bytes


def test_a_victim_deleted_meanwhile_is_room_made_not_a_refusal(make_core: MakeCore) -> None:
    # Recycling picks its victims under the ingest's room lock; a REST DELETE does not
    # take it, so the patient may be gone by the time it is recycled. The instance being
    # stored was refused 404 "no resource <patient>" (tests/node/test_crash_background.py
    # met it under load).
    core = make_core(maximum_patient_count=1)
    victim = core.ingest(ct_bytes(0, patient=1)).ids[Level.PATIENT]
    core.delete(victim)
    removed = core.delete(victim, DeletionReason.RECYCLED)
    assert removed.gone == [] and removed.instances_by_study == {}
    assert core.ingest(ct_bytes(0, patient=2)).ids[Level.PATIENT] != victim
    with pytest.raises(UnknownResource):  # a user's deletion of it is still a 404
        core.delete(victim)
