"""Errors of the model server. Each request error maps to one HTTP status and a stable code.

Request errors are the client's (4xx), a deliberate refusal (503), or a model that failed on
valid input (500); the HTTP layer turns them into ``{"error": detail, "code": code}``. Load
errors keep the previous plan serving.
"""

from __future__ import annotations

from ops.exceptions import DetailedError, PermanentError, TransientError


class RequestError(DetailedError):
    """A request the server answers with an error body instead of a prediction."""

    status = 400
    code = "bad_request"

    def __init__(self, detail: str, code: str | None = None, status: int | None = None):
        super().__init__(detail, code)
        if status is not None:
            self.status = status


class BadInput(RequestError):
    """The body cannot be turned into rows the model accepts (shape, types, nulls)."""

    status = 400
    code = "invalid_input"


class NotFound(RequestError):
    status = 404
    code = "not_found"


class PayloadTooLarge(RequestError):
    status = 413
    code = "too_large"


class UnsupportedMediaType(RequestError):
    status = 415
    code = "unsupported_media_type"


class PredictFailed(RequestError):
    """The model raised on rows that passed the input schema's validation.

    That is the version's fault, not the client's: it is answered 500 (``predict_failed``)
    and counted as a 5xx, so a canary whose model breaks shows up in the error rate.
    """

    status = 500
    code = "predict_failed"


class NonFinitePrediction(PredictFailed):
    """The model answered NaN or infinity for some of the request's rows.

    JSON has no such numbers (they would reach the caller as ``null``, or as a number no
    consumer expects), so the request fails like any other model failure: 500, counted as a
    5xx for the variant, which canary analysis sees."""

    code = "nonfinite_prediction"


class Overloaded(RequestError, TransientError):
    """The variant's queue is full: answered at once rather than queued behind a backlog."""

    status = 503
    code = "overloaded"


class NotReady(RequestError, TransientError):
    status = 503
    code = "not_ready"


class VariantLoadError(DetailedError, PermanentError):
    """A plan's variant cannot be served (checksum, format, schema); the old plan stays."""

    code = "variant_load_failed"
