"""The configured artifact store (local directory, or S3 when a bucket is set)."""

from functools import cache

from django.conf import settings

from ops.storage import ArtifactStore, LocalArtifactStore, S3ArtifactStore


@cache
def get_store() -> ArtifactStore:
    if settings.MODELGATE_ARTIFACT_BUCKET:
        return S3ArtifactStore(settings.MODELGATE_ARTIFACT_BUCKET,
                               settings.MODELGATE_ARTIFACT_PREFIX)
    return LocalArtifactStore(settings.MODELGATE_ARTIFACT_ROOT)
