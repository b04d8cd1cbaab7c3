"""The keys that sign the audit chain, kept outside the database.

An unkeyed hash chain only shows accidents: whoever can write the table can edit an event
and recompute every later hash. Each event's hash is therefore an HMAC-SHA256 under a key
the database never sees, and the event stores the key's id (``AuditEvent.key_id``) so keys
can be rotated: ``MODELGATE_AUDIT_KEYS`` (or ``MODELGATE_AUDIT_KEYS_FILE``) reads
``"k2:<secret>,k1:<old secret>"``; the first signs new events and checkpoints, the others
still verify what they signed.

Without ``MODELGATE_AUDIT_KEYS`` (the embedded demo, the tests) the key is derived from
``DJANGO_SECRET_KEY`` under the id ``secret-key``; the production profile warns
(``modelgate.W102``). Once real keys are configured, the bare entry ``secret-key`` in the
list keeps verifying the events the derived key signed (``"k1:<secret>,secret-key"``).
Events from before keys (an empty key id) are plain sha256, verified as they always were.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from functools import lru_cache

DERIVED_KEY_ID = "secret-key"
MIN_SECRET_CHARS = 32
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,40}")


class AuditKeyError(ValueError):
    """``MODELGATE_AUDIT_KEYS`` cannot be used as it is written."""


@dataclass(frozen=True)
class Keyring:
    signing_id: str
    keys: dict[str, bytes]
    derived_only: bool  # no key configured: the one from DJANGO_SECRET_KEY signs

    @property
    def signing_key(self) -> bytes:
        return self.keys[self.signing_id]


def derive_key(secret_key: str) -> bytes:
    return hmac.new(secret_key.encode(), b"modelgate audit-chain key", hashlib.sha256).digest()


@lru_cache(maxsize=8)
def parse_keys(text: str, secret_key: str) -> Keyring:
    """The keyring ``text`` (the value of ``MODELGATE_AUDIT_KEYS``) describes; empty: the key
    derived from ``secret_key`` alone. Raises ``AuditKeyError`` naming what is wrong, never
    the secret."""
    if not text.strip():
        return Keyring(DERIVED_KEY_ID, {DERIVED_KEY_ID: derive_key(secret_key)}, True)
    keys: dict[str, bytes] = {}
    for position, entry in enumerate(text.split(","), start=1):
        entry = entry.strip()
        kid, sep, secret = entry.partition(":")
        if not sep and kid == DERIVED_KEY_ID:
            keys[kid] = derive_key(secret_key)
            continue
        if not sep or not _KEY_ID.fullmatch(kid):
            raise AuditKeyError(f"MODELGATE_AUDIT_KEYS entry {position} does not read "
                                "'<key id>:<secret>' (a key id is 1-40 letters, digits, "
                                "'-' or '_')")
        if kid == DERIVED_KEY_ID:
            raise AuditKeyError(f"MODELGATE_AUDIT_KEYS: the key id {DERIVED_KEY_ID!r} is "
                                "reserved for the key derived from DJANGO_SECRET_KEY")
        if len(secret.strip()) < MIN_SECRET_CHARS:
            raise AuditKeyError(f"MODELGATE_AUDIT_KEYS: the secret of key {kid!r} is shorter "
                                f"than {MIN_SECRET_CHARS} characters")
        if kid in keys:
            raise AuditKeyError(f"MODELGATE_AUDIT_KEYS names key {kid!r} twice")
        keys[kid] = secret.strip().encode()
    signing = next(iter(keys))
    return Keyring(signing, keys, False)


def keyring() -> Keyring:
    """The configured keyring (``AuditKeyError`` when misconfigured)."""
    from django.conf import settings

    return parse_keys(settings.MODELGATE_AUDIT_KEYS, settings.SECRET_KEY)


def canonical(body: dict) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()


def mac(key: bytes, purpose: bytes, message: bytes) -> str:
    """HMAC-SHA256 of ``message`` for one ``purpose`` (an event, a checkpoint), hex: a MAC
    made for one purpose never verifies as the other."""
    return hmac.new(key, purpose + b"\x00" + message, hashlib.sha256).hexdigest()
