"""Domain errors raised by service functions.

Each carries a stable ``code`` and a human ``detail``; the API's exception handler maps
the class to an HTTP status in one place (``portal.api.exceptions``), and the web views
show ``detail`` to the user.
"""


# All a caller learns about something that does not exist or is not theirs (another
# project, its environments, an id in a body): the words DRF uses for a detail route's 404,
# so the two cannot be told apart either.
NOT_FOUND = "Not found."


class DomainError(Exception):
    status = 400
    code = "invalid"

    def __init__(self, detail: str, code: str | None = None, field: str | None = None):
        super().__init__(detail)
        self.detail = detail
        self.field = field
        if code:
            self.code = code


class ValidationFailed(DomainError):
    status = 400
    code = "validation_error"


class NotAllowed(DomainError):
    status = 403
    code = "permission_denied"


class NotFound(DomainError):
    status = 404
    code = "not_found"


class Conflict(DomainError):
    status = 409
    code = "conflict"


class PayloadTooLarge(DomainError):
    status = 413
    code = "too_large"


class UnsupportedMedia(DomainError):
    status = 415
    code = "unsupported_media_type"


class ServiceUnavailable(DomainError):
    status = 503
    code = "service_unavailable"


class ImmutableError(Exception):
    """A write to something frozen once made (``portal.registry.models.ImmutableVersionError``:
    a model version's registered fields). Not a DomainError: it guards the models rather than
    telling a user why a request was refused; the API still answers it 409 ``immutable``."""
