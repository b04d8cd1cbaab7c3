"""Artifact stores: where model and dataset files live.

The local filesystem is the embedded default; S3 (through boto3) when configured. Files
are written once under a key and never rewritten; ``put`` streams the upload while it
computes the sha256 so the digest is the server's own, never the client's claim.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

from ops.exceptions import ArtifactError, PermanentError, StorageError

CHUNK = 1024 * 1024


class TooLarge(PermanentError):
    code = "too_large"


@dataclass(frozen=True)
class StoredFile:
    uri: str
    sha256: str
    size: int


class ArtifactStore(ABC):
    """Write-once file storage keyed by relative paths such as ``models/7/<uuid>.skops``."""

    @abstractmethod
    def put(self, key: str, source: BinaryIO, max_bytes: int | None = None) -> StoredFile:
        """Store ``source`` under ``key``; raise ``TooLarge`` (storing nothing) past ``max_bytes``."""

    @abstractmethod
    def open(self, uri: str) -> BinaryIO:
        """Open a stored file for reading."""

    @abstractmethod
    def delete(self, uri: str) -> None:
        """Remove a stored file; removing a missing file is not an error."""

    @abstractmethod
    def exists(self, uri: str) -> bool:
        """Whether a file is stored at ``uri``."""

    @abstractmethod
    def ping(self) -> None:
        """Raise ``StorageError`` when the store cannot be reached."""

    @contextlib.contextmanager
    def local_path(self, uri: str) -> Iterator[Path]:
        """A local path holding the file for the duration of the block."""
        with tempfile.NamedTemporaryFile(suffix=Path(uri).suffix) as tmp, self.open(uri) as src:
            shutil.copyfileobj(src, tmp, CHUNK)
            tmp.flush()
            yield Path(tmp.name)


def _copy_hashing(source: BinaryIO, target: BinaryIO, max_bytes: int | None) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    while chunk := source.read(CHUNK):
        size += len(chunk)
        if max_bytes is not None and size > max_bytes:
            raise TooLarge(f"the file is larger than the limit of {max_bytes} bytes")
        digest.update(chunk)
        target.write(chunk)
    return digest.hexdigest(), size


class LocalArtifactStore(ArtifactStore):
    """Files under a root directory; uris are ``file://`` + absolute path."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()

    def _path(self, uri: str) -> Path:
        path = Path(uri.removeprefix("file://")).resolve()
        if self.root not in path.parents:
            raise PermanentError("the file is outside the artifact store")
        return path

    def _shown(self, path: Path) -> str:
        """A stored file as messages name it: its key, never the server's path (messages
        reach people through status reasons)."""
        return str(path.relative_to(self.root))

    def put(self, key: str, source: BinaryIO, max_bytes: int | None = None) -> StoredFile:
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise PermanentError(f"invalid key {key!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{uuid.uuid4().hex}.partial")
        try:
            with open(partial, "xb") as target:
                sha, size = _copy_hashing(source, target, max_bytes)
            os.replace(partial, path)  # readers never see a half-written file
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return StoredFile(uri=f"file://{path}", sha256=sha, size=size)

    def open(self, uri: str) -> BinaryIO:
        path = self._path(uri)
        try:
            return open(path, "rb")
        except FileNotFoundError as e:
            raise PermanentError(f"{self._shown(path)} is not in the artifact store") from e

    def delete(self, uri: str) -> None:
        self._path(uri).unlink(missing_ok=True)

    def exists(self, uri: str) -> bool:
        return self._path(uri).is_file()

    def ping(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            if not os.access(self.root, os.W_OK):
                raise StorageError(f"{self.root} is not writable")
        except OSError as e:
            raise StorageError(str(e)) from e

    @contextlib.contextmanager
    def local_path(self, uri: str) -> Iterator[Path]:
        path = self._path(uri)
        if not path.is_file():
            raise PermanentError(f"{self._shown(path)} is not in the artifact store")
        yield path


class S3ArtifactStore(ArtifactStore):
    """Objects in an S3 bucket under a prefix; uris are ``s3://bucket/key``."""

    def __init__(self, bucket: str, prefix: str = "", client=None):
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client or boto3.client(
            "s3", config=Config(retries={"max_attempts": 3, "mode": "standard"})
        )

    def _key(self, uri: str) -> str:
        prefix = f"s3://{self.bucket}/"
        if not uri.startswith(prefix):
            raise PermanentError("the file is not in the artifact store's bucket")
        return uri[len(prefix):]

    def _wrap(self, e: Exception) -> Exception:
        return StorageError(f"S3 error: {e}")

    def put(self, key: str, source: BinaryIO, max_bytes: int | None = None) -> StoredFile:
        full_key = f"{self.prefix}/{key}" if self.prefix else key
        # Hash and bound the size locally first: S3 must never hold a file we refuse.
        with tempfile.TemporaryFile() as spool:
            sha, size = _copy_hashing(source, spool, max_bytes)
            spool.seek(0)
            try:
                self.client.upload_fileobj(spool, self.bucket, full_key,
                                           ExtraArgs={"Metadata": {"sha256": sha}})
            except Exception as e:
                raise self._wrap(e) from e
        return StoredFile(uri=f"s3://{self.bucket}/{full_key}", sha256=sha, size=size)

    def open(self, uri: str) -> BinaryIO:
        key = self._key(uri)  # a uri outside the bucket is permanent, not an S3 outage
        spool = tempfile.TemporaryFile()
        try:
            self.client.download_fileobj(self.bucket, key, spool)
        except Exception as e:
            spool.close()
            if _not_found(e):  # retrying cannot bring a missing object back
                raise PermanentError(f"{key} is not in the artifact store") from e
            raise self._wrap(e) from e
        spool.seek(0)
        return spool

    def delete(self, uri: str) -> None:
        key = self._key(uri)
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except Exception as e:
            raise self._wrap(e) from e

    def exists(self, uri: str) -> bool:
        key = self._key(uri)
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
            return True
        except Exception as e:
            if _not_found(e):
                return False
            raise self._wrap(e) from e  # an outage is not "the file is gone"

    def ping(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as e:
            raise self._wrap(e) from e


def _not_found(error: Exception) -> bool:
    """Whether a botocore error says the object (or bucket) does not exist."""
    response = getattr(error, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in ("404", "NoSuchKey", "NotFound") or status == 404


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# Opening an artifact by uri, verified against the sha256 a plan or a version recorded -------


class UnsupportedUri(PermanentError):
    """An artifact uri whose scheme no store reads (only ``file://`` and ``s3://`` are)."""

    code = "unsupported_uri"

    def __init__(self, scheme: str):
        super().__init__(f"artifact uri scheme {scheme!r} is not supported (use file:// "
                         "or s3://)")
        self.scheme = scheme

    def __reduce__(self):
        return type(self), (self.scheme,)


class ChecksumMismatch(ArtifactError):
    """The file's sha256 is not the one recorded: it is not the approved artifact."""

    def __init__(self, uri: str, expected: str, actual: str):
        super().__init__(f"{uri} has sha256 {actual}, {expected} was expected",
                         code="sha256_mismatch")
        self.uri, self.expected, self.actual = uri, expected, actual

    def __reduce__(self):  # crosses process boundaries like the other ops errors
        return type(self), (self.uri, self.expected, self.actual)


def open_artifact(uri: str, *, store: ArtifactStore | None = None,
                  base_dir: Path | None = None, s3_client=None) -> BinaryIO:
    """Open the artifact at ``uri`` for reading: through ``store`` when given, else
    ``s3://bucket/key`` (that bucket, with ``s3_client`` or a default boto3 client),
    ``file://`` or a plain path (a relative one from ``base_dir``).

    Raises ``UnsupportedUri`` for another scheme, and what the source raises as it is: the
    store's ``PermanentError``/``StorageError``, ``OSError`` for a local file,
    ``ImportError`` when ``s3://`` is asked of a process without boto3.
    """
    if store is not None:
        return store.open(uri)
    if uri.startswith("s3://"):
        bucket = uri[len("s3://"):].split("/", 1)[0]
        return S3ArtifactStore(bucket, client=s3_client).open(uri)
    if "://" in uri and not uri.startswith("file://"):
        raise UnsupportedUri(uri.split("://", 1)[0])
    path = Path(uri.removeprefix("file://"))
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    return open(path, "rb")


@contextlib.contextmanager
def open_verified(uri: str, sha256: str, *, store: ArtifactStore | None = None,
                  base_dir: Path | None = None, s3_client=None,
                  dir: Path | None = None) -> Iterator[Path]:
    """A private local copy of the artifact at ``uri`` (opened as ``open_artifact`` does),
    made while hashing it: ``ChecksumMismatch`` unless its sha256 is ``sha256``.

    The copy is what the caller loads, packages or reads, so the file that was checked is
    the file that is used even if the original is replaced in between. It lives in a fresh
    folder (under ``dir`` when given), keeps the uri's extension, and is removed when the
    block ends. Every artifact a plan or a version names is opened through here: the
    portal's workers, the model server and the SageMaker backend's packaging.

    With a ``store``, the store's own ``local_path`` is hashed and used instead: the local
    store's file itself (the portal's data folder, written by nobody but the portal, so no
    copy of every artifact is made for each validation and explanation), an S3 object's
    temporary download.
    """
    if store is not None:
        with store.local_path(uri) as path:
            actual = sha256_file(path)
            if actual != sha256.lower():
                raise ChecksumMismatch(uri, sha256, actual)
            yield path
        return
    suffix = Path(urlsplit(uri).path).suffix
    name = "artifact" + (suffix if re.fullmatch(r"\.[A-Za-z0-9]{1,10}", suffix) else "")
    with open_artifact(uri, base_dir=base_dir, s3_client=s3_client) as source, \
            tempfile.TemporaryDirectory(prefix="modelgate-verified-", dir=dir) as folder:
        target = Path(folder) / name
        digest = hashlib.sha256()
        with open(target, "xb") as copy:
            while chunk := source.read(CHUNK):
                digest.update(chunk)
                copy.write(chunk)
        if digest.hexdigest() != sha256.lower():
            raise ChecksumMismatch(uri, sha256, digest.hexdigest())
        yield target
