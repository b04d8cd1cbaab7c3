"""Checkpoints of the audit chain's head, kept outside the database.

Keyed hashes stop anyone without the key from rewriting events, but not from deleting the
newest ones: the chain that is left still links. So at intervals (beat,
``MODELGATE_AUDIT_CHECKPOINT_SECONDS``) the head — last event id, its hash, the number of
events up to it, the time, and the key id — is written with an HMAC of that record to the
artifact store (or ``MODELGATE_AUDIT_CHECKPOINT_BUCKET``), as ``audit/checkpoints/<seq>.json``
with ``seq`` counting 1, 2, 3... ``verify_chain`` reads every one of them and finds an event
a checkpoint names missing or changed, and a chain cut back past a checkpoint.

The store must be one the database's writers cannot rewrite: in production an S3 bucket
with Object Lock and a default retention, which locks every object written without
anything in the request (``docs/operations.md``).
"""

from __future__ import annotations

import hmac
import io
import json
from dataclasses import asdict, dataclass, replace

from ops.exceptions import PermanentError, StorageError
from ops.storage import ArtifactStore, LocalArtifactStore, S3ArtifactStore, StoredFile
from portal.audit import keys as audit_keys

PREFIX = "audit/checkpoints"
_PURPOSE = b"modelgate audit checkpoint"
FORMAT = 1


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    last_id: int
    hash: str
    count: int
    written_at: str
    key_id: str
    mac: str = ""

    def _message(self) -> bytes:
        body = asdict(self)
        body.pop("mac")
        body["format"] = FORMAT
        return audit_keys.canonical(body)

    def signed(self, keyring: audit_keys.Keyring) -> Checkpoint:
        unsigned = replace(self, key_id=keyring.signing_id)
        return replace(unsigned, mac=audit_keys.mac(keyring.signing_key, _PURPOSE,
                                                    unsigned._message()))

    def problem(self, seq: int, keyring: audit_keys.Keyring) -> str | None:
        """Why this checkpoint, read from slot ``seq``, cannot be trusted; None if it can."""
        key = keyring.keys.get(self.key_id)
        if key is None:
            return (f"checkpoint {seq}: signed with key id {self.key_id!r}, which "
                    "MODELGATE_AUDIT_KEYS does not hold; it was not checked")
        if not hmac.compare_digest(self.mac, audit_keys.mac(key, _PURPOSE, self._message())):
            return f"checkpoint {seq}: its MAC does not verify (forged or altered)"
        if self.seq != seq:
            return f"checkpoint {seq}: it says it is checkpoint {self.seq} (moved)"
        return None

    def to_bytes(self) -> bytes:
        return json.dumps({"format": FORMAT, **asdict(self)}, indent=1).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Checkpoint:
        """Raises ``ValueError`` for anything that is not a checkpoint."""
        try:
            body = json.loads(data)
            return cls(seq=int(body["seq"]), last_id=int(body["last_id"]),
                       hash=str(body["hash"]), count=int(body["count"]),
                       written_at=str(body["written_at"]), key_id=str(body["key_id"]),
                       mac=str(body["mac"]))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"not a checkpoint: {e}") from e


def checkpoint_store() -> ArtifactStore:
    """Where checkpoints go: ``MODELGATE_AUDIT_CHECKPOINT_BUCKET``, else the artifact store
    (built here from the same settings: the registry's ``get_store`` is a layer above)."""
    from django.conf import settings

    bucket = settings.MODELGATE_AUDIT_CHECKPOINT_BUCKET or settings.MODELGATE_ARTIFACT_BUCKET
    if bucket:
        return S3ArtifactStore(bucket, settings.MODELGATE_ARTIFACT_PREFIX)
    return LocalArtifactStore(settings.MODELGATE_ARTIFACT_ROOT)


def _key(seq: int) -> str:
    return f"{PREFIX}/{seq:08d}.json"


def _uri(store: ArtifactStore, key: str) -> str:
    """The uri ``store.put(key, ...)`` returns, for reading a key back (stores are written
    by key and read by uri)."""
    if isinstance(store, S3ArtifactStore):
        return f"s3://{store.bucket}/{store.prefix}/{key}" if store.prefix \
            else f"s3://{store.bucket}/{key}"
    return f"file://{store.root / key}"


def read(store: ArtifactStore, seq: int) -> Checkpoint | None:
    """Checkpoint ``seq``; None when there is none. Raises ``ValueError`` for a file that
    is not a checkpoint and ``StorageError`` when the store cannot answer."""
    try:
        with store.open(_uri(store, _key(seq))) as source:
            data = source.read(1024 * 1024)
    except PermanentError:
        return None
    return Checkpoint.from_bytes(data)


def last_seq(store: ArtifactStore) -> int:
    """The number of the newest checkpoint (0: none), in about 2·log2(n) existence checks:
    checkpoints are numbered without gaps (each is written at the first free number)."""
    def exists(seq: int) -> bool:
        return store.exists(_uri(store, _key(seq)))

    if not exists(1):
        return 0
    low, high = 1, 2
    while exists(high):
        low, high = high, high * 2
    while high - low > 1:  # exists(low), not exists(high)
        middle = (low + high) // 2
        if exists(middle):
            low = middle
        else:
            high = middle
    return low


def write(store: ArtifactStore, checkpoint: Checkpoint) -> StoredFile:
    return store.put(_key(checkpoint.seq), io.BytesIO(checkpoint.to_bytes()))


def read_all(store: ArtifactStore, keyring: audit_keys.Keyring,
             problems: list[str]) -> tuple[int, list[Checkpoint]]:
    """Every checkpoint from 1 to the first missing number: how many were read, and those
    whose MAC verifies. What cannot be trusted or read goes to ``problems``."""
    trusted: list[Checkpoint] = []
    seq = 0
    while True:
        seq += 1
        try:
            checkpoint = read(store, seq)
        except StorageError as e:
            problems.append(f"checkpoint {seq} could not be read ({e}); it and those after "
                            "it were not checked")
            return seq - 1, trusted
        except ValueError as e:
            problems.append(f"checkpoint {seq}: {e}")
            continue
        if checkpoint is None:
            return seq - 1, trusted
        problem = checkpoint.problem(seq, keyring)
        if problem:
            problems.append(problem)
        else:
            trusted.append(checkpoint)


def compare(checkpoints: list[Checkpoint], heads: dict[int, tuple[str, int]],
            last_id: int | None) -> list[str]:
    """Problems between trusted checkpoints and the chain: ``heads`` maps the event ids the
    checkpoints name to the hash found and the number of events up to it, ``last_id`` is the
    chain's last event (None: empty)."""
    problems = []
    for cp in checkpoints:
        found = heads.get(cp.last_id)
        if found is None:
            if last_id is None or cp.last_id > last_id:
                end = f"ends at event {last_id}" if last_id is not None else "is empty"
                problems.append(
                    f"event {cp.last_id}: missing; checkpoint {cp.seq} ({cp.written_at}) "
                    f"recorded it as the head of {cp.count} events but the chain now {end}: "
                    "events were deleted from the end of the chain")
            else:
                problems.append(f"event {cp.last_id}: missing; checkpoint {cp.seq} "
                                f"({cp.written_at}) recorded it (deleted)")
            continue
        found_hash, found_count = found
        if found_hash != cp.hash:
            problems.append(f"event {cp.last_id}: its hash differs from the one checkpoint "
                            f"{cp.seq} ({cp.written_at}) recorded (it or the chain before it "
                            "was rewritten)")
        if found_count != cp.count:
            problems.append(f"event {cp.last_id}: {found_count} events end with it, "
                            f"checkpoint {cp.seq} counted {cp.count} (events before it were "
                            "deleted or inserted)")
    return problems
