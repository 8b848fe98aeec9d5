"""Retrying a peer exchange: only transient failures, and not forever."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pacsnode.peer.errors import PeerError, PeerRefused, PeerUnreachable, UntrustedPeer
from pacsnode.peer.grants import PeerGrant
from pacsnode.peer.retry import with_retries


def flaky(failures: list[PeerError]) -> tuple[list[int], Callable[[], str]]:
    calls: list[int] = []

    def attempt() -> str:
        calls.append(1)
        if failures:
            raise failures.pop(0)
        return "done"

    return calls, attempt


def test_transient_failures_are_retried_and_reported() -> None:
    calls, attempt = flaky([PeerUnreachable("cut"), PeerRefused("busy: 503", 503)])
    heard: list[str] = []
    assert with_retries(attempt, heard.append, delays=(0, 0, 0)) == "done"
    assert len(calls) == 3 and heard == ["cut", "busy: 503"]


def test_other_failures_are_raised_at_once() -> None:
    for error in (PeerRefused("forbidden: 403", 403), UntrustedPeer("not pinned", "AB-CD")):
        calls, attempt = flaky([error])
        with pytest.raises(PeerError) as raised:
            with_retries(attempt, lambda _: None, delays=(0, 0))
        assert raised.value is error and not error.transient and len(calls) == 1


def test_the_last_attempt_fails_as_it_failed() -> None:
    calls, attempt = flaky([PeerUnreachable(f"cut {n}") for n in range(3)])
    with pytest.raises(PeerUnreachable, match="cut 2"):
        with_retries(attempt, lambda _: None, delays=(0, 0))
    assert len(calls) == 3


def test_grants_say_what_a_peer_may_ask() -> None:
    pull_only = PeerGrant("AB", may_push=False, may_pull=True)
    assert pull_only.permits(pull=True) and pull_only.permits()
    assert not pull_only.permits(push=True) and not pull_only.permits(push=True, pull=True)
    assert not PeerGrant("AB", may_push=False, may_pull=False).permits()
