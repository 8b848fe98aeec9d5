"""The store's gate: shared holds coexist, an exclusive one excludes everything on its keys,
and a waiting exclusive hold keeps new shared ones out (no starving deletions)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from pacsnode.storage.gates import KeyedGate, resource_key, study_key


def _in_thread(action: Callable[[], None]) -> tuple[threading.Thread, threading.Event]:
    done = threading.Event()

    def run() -> None:
        action()
        done.set()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, done


def test_keys_of_studies_and_resources_never_collide() -> None:
    assert study_key("1.2.3") != resource_key("1.2.3")


def test_shared_holds_coexist_and_are_seen() -> None:
    gate = KeyedGate()
    with gate.shared(["a", "b"]), gate.shared(["a"]):
        assert gate.is_shared("a") and gate.is_shared("b")
    assert not gate.is_shared("a") and not gate.is_shared("b")


def test_an_exclusive_hold_waits_for_shared_ones_and_keeps_others_out() -> None:
    gate = KeyedGate()
    order: list[str] = []
    with gate.shared(["s"]):
        deleter, deleted = _in_thread(lambda: _exclusive(gate, ["s", "p"], order))
        time.sleep(0.05)
        assert not deleted.is_set()  # waits for the shared hold
        # Once an exclusive hold waits, a new shared hold of its keys waits behind it...
        late, stored = _in_thread(lambda: _shared(gate, ["s"], order))
        # ...while other keys go on.
        with gate.shared(["other"]):
            order.append("other")
        time.sleep(0.05)
        assert not stored.is_set()
    deleter.join()
    late.join()
    assert order == ["other", "exclusive", "shared"]


def test_keys_are_taken_all_at_once() -> None:
    gate = KeyedGate()
    with gate.exclusive(["b"]):
        waiting, done = _in_thread(lambda: _exclusive(gate, ["a", "b"], []))
        time.sleep(0.05)
        # The waiting hold holds nothing meanwhile: "a" alone is free.
        with gate.exclusive(["a"]):
            pass
        assert not done.is_set()
    waiting.join()


def _exclusive(gate: KeyedGate, keys: list[str], order: list[str]) -> None:
    with gate.exclusive(keys):
        order.append("exclusive")


def _shared(gate: KeyedGate, keys: list[str], order: list[str]) -> None:
    with gate.shared(keys):
        order.append("shared")
