"""Remember the current request so audit events can name its address and channel; record
what is audited once a request is answered (uses of a token's approve scope)."""

from contextvars import ContextVar

current_request: ContextVar = ContextVar("current_request", default=None)


class RequestContextMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        token = current_request.set(request)
        try:
            response = self.get_response(request)
            if getattr(request, "_modelgate_scope_use", None) is not None:
                from portal.audit.activity import record_scope_use

                record_scope_use(request, response)
            return response
        finally:
            current_request.reset(token)
