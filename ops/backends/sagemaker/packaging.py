"""The tarball a variant's Model is created from.

``model.tar.gz`` holds the artifact (``artifact.<suffix>``) and a ``plan.json`` serving only
that variant (``config.container_plan``: weight 1, generation 1, the artifact as a path
relative to the plan), so the container finds both under ``/opt/ml/model``. Every artifact
is copied from its ``file://`` or ``s3://`` uri and its sha256 checked against the plan
(``ops.storage.open_verified``) before anything is created.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from ops.backends.base import BackendError, BackendUnavailable
from ops.backends.sagemaker.client import AwsClients
from ops.exceptions import PermanentError, StorageError
from ops.plan import ServingPlan, Variant
from ops.storage import ChecksumMismatch, UnsupportedUri, open_verified

PLAN_MEMBER = "plan.json"


def package(variant: Variant, inner: ServingPlan, work: Path, s3_client=None) -> Path:
    """Build ``model.tar.gz`` (artifact + ``inner``, the plan.json of ``container_plan``) in
    ``work`` from a verified private copy of the variant's artifact."""
    with _verified_copy(variant, work, s3_client) as source:
        member = inner.variants[0].artifact_uri
        target = work / f"{uuid.uuid4().hex}.tar.gz"
        # Fixed times and owners: packaging the same version twice gives the same bytes.
        with open(target, "wb") as raw, \
                gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as zipped, \
                tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar:
            with open(source, "rb") as handle:
                tar.addfile(_tar_entry(member, source.stat().st_size), handle)
            plan_bytes = inner.to_json().encode()
            tar.addfile(_tar_entry(PLAN_MEMBER, len(plan_bytes)), io.BytesIO(plan_bytes))
    return target


@contextlib.contextmanager
def _verified_copy(variant: Variant, work: Path, s3_client) -> Iterator[Path]:
    """The artifact copied into ``work`` while hashing it; refused unless the sha256 is the
    plan's (the copy is what gets packaged, so nothing can swap it in between)."""
    uri = variant.artifact_uri
    with contextlib.ExitStack() as stack:
        try:
            copy = stack.enter_context(open_verified(uri, variant.sha256, s3_client=s3_client,
                                                     dir=work))
        except UnsupportedUri as e:
            raise BackendError(f"variant {variant.name}: {e}") from e
        except ChecksumMismatch as e:
            raise BackendError(
                f"variant {variant.name}: artifact {uri} has sha256 {e.actual}, the plan "
                f"expects {variant.sha256}; refusing to deploy a file that is not the "
                "approved one") from e
        except StorageError as e:
            raise BackendUnavailable(f"variant {variant.name}: cannot read {uri}: {e}") from e
        except PermanentError as e:
            raise BackendError(f"variant {variant.name}: cannot read {uri}: {e}") from e
        except OSError as e:
            raise BackendError(f"variant {variant.name}: cannot read {uri}: "
                               f"{e.strerror or e}") from e
        yield copy


def _tar_entry(name: str, size: int) -> tarfile.TarInfo:
    entry = tarfile.TarInfo(name)
    entry.size, entry.mode, entry.mtime = size, 0o644, 0
    entry.uid = entry.gid = 0
    entry.uname = entry.gname = ""
    return entry


def delete_tarballs(aws: AwsClients, bucket: str, folder: str) -> None:
    """Delete every tarball under ``folder`` of ``bucket`` (an endpoint's, on delete)."""
    keys = [obj["Key"] for page in aws.pages(aws.s3, "list_objects_v2", "Contents",
                                             Bucket=bucket, Prefix=folder)
            for obj in page]
    for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
        aws.call(aws.s3, "delete_objects", Bucket=bucket,
                 Delete={"Objects": [{"Key": k} for k in keys[start:start + 1000]],
                         "Quiet": True})
