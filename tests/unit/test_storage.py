"""ops.storage: the local filesystem store and the S3 store (against a real moto server)."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import uuid
from pathlib import Path

import pytest

from ops.exceptions import PermanentError, StorageError, TransientError
from ops.storage import (
    CHUNK,
    LocalArtifactStore,
    S3ArtifactStore,
    StoredFile,
    TooLarge,
    sha256_file,
)

CONTENT = b"model bytes \x00\x01\x02" * 100


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


# LocalArtifactStore ---------------------------------------------------------------------

@pytest.fixture
def root(tmp_path) -> Path:
    return tmp_path / "artifacts"


@pytest.fixture
def store(root) -> LocalArtifactStore:
    return LocalArtifactStore(root)


def test_local_put_returns_sha256_size_and_file_uri(store, root):
    stored = store.put("models/7/a.skops", io.BytesIO(CONTENT))
    path = root.resolve() / "models" / "7" / "a.skops"
    assert stored == StoredFile(uri=f"file://{path}", sha256=sha(CONTENT), size=len(CONTENT))
    assert path.read_bytes() == CONTENT


def test_local_put_hashes_files_larger_than_one_chunk(store):
    data = os.urandom(CHUNK * 2 + 123)
    stored = store.put("big.bin", io.BytesIO(data))
    assert stored.sha256 == sha(data)
    assert stored.size == len(data)
    with store.open(stored.uri) as handle:
        assert handle.read() == data


def test_local_put_of_an_empty_file(store):
    stored = store.put("empty.bin", io.BytesIO(b""))
    assert stored.size == 0
    assert stored.sha256 == sha(b"")


def test_local_put_accepts_a_file_exactly_at_the_limit(store):
    stored = store.put("exact.bin", io.BytesIO(CONTENT), max_bytes=len(CONTENT))
    assert stored.size == len(CONTENT)


@pytest.mark.parametrize("size", [11, CHUNK * 2], ids=["one_chunk", "several_chunks"])
def test_local_too_large_leaves_no_file_and_no_partial(store, root, size):
    with pytest.raises(TooLarge) as info:
        store.put("models/1/too-big.skops", io.BytesIO(b"x" * size), max_bytes=10)
    assert isinstance(info.value, PermanentError)
    assert info.value.code == "too_large"
    assert "10 bytes" in str(info.value)
    assert files_under(root) == []


def test_local_failure_while_reading_the_source_leaves_nothing(store, root):
    class Broken(io.RawIOBase):
        calls = 0

        def read(self, size=-1):
            self.calls += 1
            if self.calls > 1:
                raise OSError("connection reset")
            return b"x" * 100

    with pytest.raises(OSError, match="connection reset"):
        store.put("models/1/m.skops", Broken())
    assert files_under(root) == []


@pytest.mark.parametrize("key", ["../outside.bin", "a/../../outside.bin", "/etc/passwd", ""])
def test_local_keys_escaping_the_root_are_refused(store, root, key):
    with pytest.raises(PermanentError):
        store.put(key, io.BytesIO(b"x"))
    assert not (root.parent / "outside.bin").exists()


@pytest.mark.parametrize("uri", ["file:///etc/passwd", "/etc/hosts", "file://{root}/../x"])
def test_local_uris_outside_the_root_are_refused(store, root, uri):
    uri = uri.format(root=root.resolve())
    with pytest.raises(PermanentError, match="outside the artifact store"):
        store.open(uri)
    with pytest.raises(PermanentError):
        store.delete(uri)
    with pytest.raises(PermanentError):
        store.exists(uri)


def test_local_open_reads_back_what_was_put(store):
    stored = store.put("d/data.csv", io.BytesIO(CONTENT))
    with store.open(stored.uri) as handle:
        assert handle.read() == CONTENT


def test_local_open_of_a_missing_file_is_permanent(store, root):
    with pytest.raises(PermanentError, match="not in the artifact store") as info:
        store.open(f"file://{root.resolve()}/models/none.skops")
    assert not isinstance(info.value, TransientError)


def test_local_exists_and_idempotent_delete(store):
    stored = store.put("m/x.skops", io.BytesIO(CONTENT))
    assert store.exists(stored.uri)
    store.delete(stored.uri)
    assert not store.exists(stored.uri)
    store.delete(stored.uri)  # deleting again is not an error


def test_local_path_is_the_stored_file(store):
    stored = store.put("m/x.skops", io.BytesIO(CONTENT))
    with store.local_path(stored.uri) as path:
        assert path.read_bytes() == CONTENT
        assert sha256_file(path) == stored.sha256
    assert store.exists(stored.uri)  # the local store hands out the file itself


def test_local_ping_creates_the_root(store, root):
    store.ping()
    assert root.is_dir()


def test_local_ping_fails_when_the_root_is_a_file(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with pytest.raises(StorageError):
        LocalArtifactStore(blocker).ping()


def test_sha256_file_matches_hashlib(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(CONTENT)
    assert sha256_file(path) == sha(CONTENT)


# S3ArtifactStore against a moto server --------------------------------------------------

BUCKET = "modelgate-unit"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def s3_client(endpoint: str):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
        aws_session_token="testing",
        config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10),
    )


@pytest.fixture(scope="module")
def s3_endpoint():
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def client(s3_endpoint):
    client = s3_client(s3_endpoint)
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture
def prefix() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def s3(client, prefix) -> S3ArtifactStore:
    return S3ArtifactStore(BUCKET, prefix=f"/{prefix}/", client=client)


def keys_under(client, prefix: str) -> list[str]:
    listing = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return [o["Key"] for o in listing.get("Contents", [])]


def test_s3_put_uploads_under_the_prefix_with_its_sha256(s3, client, prefix):
    stored = s3.put("models/7/a.skops", io.BytesIO(CONTENT))
    key = f"{prefix}/models/7/a.skops"
    assert stored == StoredFile(uri=f"s3://{BUCKET}/{key}", sha256=sha(CONTENT),
                                size=len(CONTENT))
    head = client.head_object(Bucket=BUCKET, Key=key)
    assert head["ContentLength"] == len(CONTENT)
    assert head["Metadata"]["sha256"] == sha(CONTENT)


def test_s3_put_without_prefix_uses_the_key_as_is(client):
    store = S3ArtifactStore(BUCKET, client=client)
    key = f"noprefix-{uuid.uuid4().hex[:8]}.bin"
    stored = store.put(key, io.BytesIO(b"abc"))
    assert stored.uri == f"s3://{BUCKET}/{key}"
    assert store.exists(stored.uri)


def test_s3_open_reads_back_what_was_put(s3):
    data = os.urandom(CHUNK + 17)
    stored = s3.put("m/x.skops", io.BytesIO(data))
    with s3.open(stored.uri) as handle:
        assert handle.read() == data


def test_s3_exists_and_idempotent_delete(s3):
    stored = s3.put("m/x.skops", io.BytesIO(CONTENT))
    assert s3.exists(stored.uri)
    s3.delete(stored.uri)
    assert not s3.exists(stored.uri)
    s3.delete(stored.uri)  # deleting again is not an error


def test_s3_open_of_a_missing_object_is_permanent(s3, prefix):
    with pytest.raises(PermanentError) as info:
        s3.open(f"s3://{BUCKET}/{prefix}/missing.skops")
    assert not isinstance(info.value, TransientError)  # a worker must not retry it


def test_s3_uri_of_another_bucket_is_refused_as_permanent(s3):
    for operation in (s3.open, s3.delete, s3.exists):
        with pytest.raises(PermanentError, match="not in the artifact store.s bucket") as info:
            operation("s3://another-bucket/models/x.skops")
        assert not isinstance(info.value, TransientError)


def test_s3_too_large_uploads_nothing(s3, client, prefix):
    with pytest.raises(TooLarge):
        s3.put("models/1/big.skops", io.BytesIO(b"x" * (CHUNK + 1)), max_bytes=CHUNK)
    assert keys_under(client, prefix) == []


def test_s3_put_accepts_a_file_exactly_at_the_limit(s3):
    assert s3.put("exact.bin", io.BytesIO(CONTENT), max_bytes=len(CONTENT)).size == len(CONTENT)


def test_s3_local_path_is_a_temporary_copy_removed_afterwards(s3):
    stored = s3.put("m/data.parquet", io.BytesIO(CONTENT))
    with s3.local_path(stored.uri) as path:
        assert path.suffix == ".parquet"
        assert path.read_bytes() == CONTENT
    assert not path.exists()
    assert s3.exists(stored.uri)


def test_s3_ping_succeeds_on_an_existing_bucket(s3):
    assert s3.ping() is None  # raises StorageError when the bucket cannot be reached


def test_s3_ping_on_a_missing_bucket_is_a_storage_error(client):
    with pytest.raises(StorageError) as info:
        S3ArtifactStore("modelgate-no-such-bucket", client=client).ping()
    assert info.value.code == "storage_unavailable"
    assert isinstance(info.value, TransientError)


def test_s3_put_into_a_missing_bucket_is_a_storage_error(client):
    store = S3ArtifactStore("modelgate-no-such-bucket", client=client)
    with pytest.raises(StorageError):
        store.put("x.bin", io.BytesIO(b"abc"))


def test_s3_unreachable_endpoint_is_transient_not_missing():
    store = S3ArtifactStore(BUCKET, client=s3_client(f"http://127.0.0.1:{free_port()}"))
    uri = f"s3://{BUCKET}/x.bin"
    with pytest.raises(StorageError):
        store.ping()
    with pytest.raises(StorageError):
        store.open(uri)
    with pytest.raises(StorageError):  # an outage must not read as "the file is gone"
        store.exists(uri)
