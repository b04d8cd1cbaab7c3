"""Prediction ids that carry the variant and plan generation that answered, signed.

Feedback arrives days later with nothing but the id; reading the variant out of the id itself
means the A/B analysis never needs a lookup table (and never loses rows when one is purged).
Because the variant is read out of the id, an id must be unforgeable: whoever can post
feedback must not be able to mint ids for the variant of their choice, nor turn one real
id into many. Each row id is therefore signed with HMAC-SHA256 under the endpoint's own key
(``derive_key``: from the portal's secret and the key id, so the portal needs no key table
and one endpoint's key mints nothing for another).

Format of a row id::

    <variant>.<generation>.<32 hex>[:<row>]~<key id>~<128-bit MAC, base64url>

A request of ``n > 1`` rows shares one random part and each row adds ``:<row index>``
(covered by its own MAC, so no row index can be invented). Variant names may contain dots,
so the id is split from the right. A server started without a key issues unsigned ids (no
``~`` part), which identify a prediction in logs but are refused as feedback.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import threading
from dataclasses import dataclass

KEY_ENV = "MODELGATE_PREDICTION_KEY"  # "<key id>:<hex key>"
KEY_FILE_ENV = "MODELGATE_PREDICTION_KEY_FILE"  # a file holding the same
INSTANCE_ENV = "MODELGATE_SERVER_INSTANCE"  # the local backend's mark of the server it started
_KID = re.compile(r"[A-Za-z0-9_-]{1,40}")
_MAC_BYTES = 16
_MAC_CHARS = 22  # base64url of 16 bytes, unpadded


class PredictionKeyError(ValueError):
    """A prediction-id key that cannot be used (malformed ``MODELGATE_PREDICTION_KEY``)."""


@dataclass(frozen=True)
class PredictionId:
    variant: str
    generation: int
    request: str  # the 32-hex random part shared by the rows of one request
    row: int | None = None
    kid: str | None = None  # key id; None for an unsigned id
    mac: str | None = None

    @property
    def body(self) -> str:
        base = f"{self.variant}.{self.generation}.{self.request}"
        return base if self.row is None else f"{base}:{self.row}"

    @property
    def signed(self) -> bool:
        return self.kid is not None

    def __str__(self) -> str:
        return self.body if self.kid is None else f"{self.body}~{self.kid}~{self.mac}"


@dataclass(frozen=True)
class Signer:
    """Signs prediction ids with one endpoint's key."""

    kid: str
    key: bytes

    def __post_init__(self):
        if not _KID.fullmatch(self.kid):
            raise PredictionKeyError(f"a key id is 1-40 letters, digits, '-' or '_': {self.kid!r}")
        if len(self.key) < 16:
            raise PredictionKeyError("a prediction-id key has at least 128 bits")

    def sign(self, body: str) -> str:
        return f"{body}~{self.kid}~{mac(self.key, self.kid, body)}"

    def to_text(self) -> str:
        """The value of ``MODELGATE_PREDICTION_KEY`` for a model server."""
        return f"{self.kid}:{self.key.hex()}"

    @classmethod
    def from_text(cls, text: str) -> Signer:
        kid, sep, hexkey = text.strip().partition(":")
        try:
            key = bytes.fromhex(hexkey)
        except ValueError:
            key = b""
        if not sep or not key:
            raise PredictionKeyError("a prediction-id key reads '<key id>:<hex key>'")
        return cls(kid, key)

    @classmethod
    def from_environment(cls, environ=os.environ) -> Signer | None:
        """The key from ``MODELGATE_PREDICTION_KEY`` or the file ``..._FILE`` names; None
        when neither is set (the server then issues unsigned ids)."""
        text = environ.get(KEY_ENV)
        path = environ.get(KEY_FILE_ENV)
        if not text and path:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        return cls.from_text(text) if text else None


def derive_key(secret: bytes, kid: str) -> bytes:
    """The key of one endpoint, derived from the portal's secret and the endpoint's key id."""
    return hmac.new(secret, b"modelgate prediction-id key\x00" + kid.encode(),
                    hashlib.sha256).digest()


def mac(key: bytes, kid: str, body: str) -> str:
    digest = hmac.new(key, kid.encode() + b"\x00" + body.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:_MAC_BYTES]).rstrip(b"=").decode()


def verify(pid: PredictionId, key: bytes) -> bool:
    """True when a signed id's MAC is right for ``key`` (constant-time comparison)."""
    if pid.kid is None or pid.mac is None:
        return False
    return hmac.compare_digest(pid.mac, mac(key, pid.kid, pid.body))


class _Tokens:
    """Random request tokens, 128 bits each from ``os.urandom``, read 256 at a time: one
    system call per 256 requests instead of one per request. A forked child starts afresh,
    so no two processes hand out the same tokens."""

    PER_READ = 256

    def __init__(self):
        self._reset()

    def _reset(self) -> None:
        # A new lock too: a child forked while another thread held the old one would find
        # its copy held forever.
        self._lock = threading.Lock()
        self._pool = ""  # hex digits not handed out yet, from self._next on
        self._next = 0

    def take(self) -> str:
        with self._lock:
            start = self._next
            if start >= len(self._pool):
                self._pool = os.urandom(16 * self.PER_READ).hex()
                start = 0
            self._next = start + 32
            return self._pool[start:start + 32]


_tokens = _Tokens()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_tokens._reset)


def new_request_token() -> str:
    return _tokens.take()


def new_prediction_ids(variant: str, generation: int, rows: int, token: str | None = None,
                       signer: Signer | None = None) -> tuple[str, list[str]]:
    """The request-level id and one id per row.

    With one row the request id is the row's (signed) id. With several, the request id is
    the unsigned shared part (for logs and the ``X-Prediction-Id`` header): feedback is
    given per row.
    """
    base = f"{variant}.{generation}.{token or new_request_token()}"
    bodies = [base] if rows == 1 else [f"{base}:{i}" for i in range(rows)]
    if signer is not None:
        ids = [signer.sign(b) for b in bodies]
    else:
        ids = bodies
    return (ids[0] if rows == 1 else base), ids


def parse_prediction_id(text: str) -> PredictionId:
    """Recover variant, generation, row and signature; ``ValueError`` if malformed.

    Parsing checks the form only; ``verify`` checks the signature.
    """
    if not isinstance(text, str):
        raise ValueError("a prediction id is a string")
    if len(text) > 300:
        raise ValueError("not a prediction id (too long)")
    kid = signature = None
    body = text
    if "~" in text:
        parts = text.rsplit("~", 2)
        if len(parts) != 3:
            raise ValueError(f"not a prediction id (signature): {text!r}")
        body, kid, signature = parts
        if not _KID.fullmatch(kid) or len(signature) != _MAC_CHARS \
                or not re.fullmatch(r"[A-Za-z0-9_-]+", signature):
            raise ValueError(f"not a prediction id (signature): {text!r}")
    parts = body.rsplit(".", 2)
    if len(parts) != 3 or not parts[0]:
        raise ValueError(f"not a prediction id: {text!r}")
    variant, generation, rest = parts
    token, sep, row = rest.partition(":")
    if len(token) != 32 or any(c not in "0123456789abcdef" for c in token):
        raise ValueError(f"not a prediction id (random part): {text!r}")
    if not generation.isdigit():
        raise ValueError(f"not a prediction id (generation): {text!r}")
    if sep and not row.isdigit():
        raise ValueError(f"not a prediction id (row): {text!r}")
    return PredictionId(variant=variant, generation=int(generation), request=token,
                        row=int(row) if sep else None, kid=kid, mac=signature)
