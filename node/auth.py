"""Passwords of REST users: scrypt hashes (stdlib), checked in constant time.

An unknown user name costs the same scrypt as a known one (:func:`check_user`), so the
time of an answer does not tell which names exist.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

_N, _R, _P = 2**14, 8, 1
_PREFIX = "scrypt"


def hash_password(password: str) -> str:
    """``scrypt$N$r$p$salt$hash`` with a fresh salt, for ``[[users]] password_hash``."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P)
    encode = base64.urlsafe_b64encode
    return f"{_PREFIX}${_N}${_R}${_P}${encode(salt).decode()}${encode(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        prefix, n, r, p, salt, digest = stored.split("$")
        if prefix != _PREFIX:
            return False
        expected = base64.urlsafe_b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(),
            salt=base64.urlsafe_b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def decoy_hash(like: str) -> str:
    """A hash of a random password with the cost parameters of ``like`` (a stored hash):
    what an unknown user's password is checked against, to spend the same work."""
    try:
        prefix, n, r, p, _, digest = like.split("$")
        if prefix != _PREFIX:
            raise ValueError(prefix)
        n_, r_, p_ = int(n), int(r), int(p)
        length = len(base64.urlsafe_b64decode(digest))
    except (ValueError, TypeError):
        n_, r_, p_, length = _N, _R, _P, 64
    salt = os.urandom(16)
    secret = os.urandom(16)
    digest_ = hashlib.scrypt(secret, salt=salt, n=n_, r=r_, p=p_, dklen=length)
    encode = base64.urlsafe_b64encode
    return f"{_PREFIX}${n_}${r_}${p_}${encode(salt).decode()}${encode(digest_).decode()}"


def check_user(password: str, stored: str | None, decoy: str) -> bool:
    """Whether ``password`` matches ``stored``; with no stored hash (an unknown user) the
    decoy is checked instead and the answer is False, after the same work."""
    if stored is None:
        verify_password(password, decoy)
        return False
    return verify_password(password, stored)
