"""Errors raised by ``ops``: each says whether retrying can help.

Callers (Django services, Celery tasks) decide what to do by class, never by message:
a ``TransientError`` may be retried with a bound, a ``PermanentError`` never.
"""


class OpsError(Exception):
    """Base class of every error raised by ``ops``."""

    code = "ops_error"


class TransientError(OpsError):
    """The operation may succeed if tried again (network, timeouts, a busy service)."""

    code = "transient"


class PermanentError(OpsError):
    """Retrying cannot help: the input or the configuration is wrong."""

    code = "permanent"


class DetailedError(OpsError):
    """An error whose message is its ``detail`` (for people) and whose ``code`` (a stable
    word) is the class's unless given. Mixed in before the class that says whether
    retrying helps: ``class XError(DetailedError, PermanentError)``."""

    def __init__(self, detail: str, code: str | None = None):
        super().__init__(detail)
        self.detail = detail
        self.code = self.code if code is None else code


class ArtifactError(DetailedError, PermanentError):
    """A model artifact cannot be used; ``code`` says why in a stable word."""

    code = "invalid_artifact"


class UnsafeArtifactError(ArtifactError):
    """The artifact's format can run arbitrary code when loaded and was not allowed."""

    def __init__(self, detail: str):
        super().__init__(detail, code="unsafe_artifact")


class StorageError(TransientError):
    """The artifact store could not be reached or answered with an error."""

    code = "storage_unavailable"


class DatasetError(DetailedError, PermanentError):
    """A dataset file cannot be read or profiled."""

    code = "invalid_dataset"
