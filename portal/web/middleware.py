"""Page middleware: a domain error escaping a page view becomes a readable error page with
its status; NUL characters in paths, query strings and forms are refused."""

from django.db import DataError
from django.http import Http404, JsonResponse
from django.shortcuts import render

from portal.errors import DomainError, ValidationFailed


class DomainErrorMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, DomainError) and not request.path.startswith("/api/"):
            return render(request, "web/error.html", {"error": exception}, status=exception.status)
        return None


NUL = "\x00"


def _has_nul(query) -> bool:
    return any(NUL in key or any(NUL in value for value in values)
               for key, values in query.lists())


class RefuseNulMiddleware:
    """A NUL character in a path, a query string or a form field: never a person's input,
    and PostgreSQL can neither store nor compare one (the query raised: a 500).

    In the path it is no page (404); in a query string or a page's form, a malformed request
    (400). JSON bodies are refused by the API's parser (``portal.api.parsers``). A NUL that
    still reaches the database is a 400, not a 500.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if NUL in request.path_info:
            raise Http404("no such page")
        if _has_nul(request.GET):
            return self._refuse(request, "the query string holds a NUL character")
        return self.get_response(request)

    def process_view(self, request, view, args, kwargs):
        # Pages only: the API's parsers and serializers check their own bodies (and DRF must
        # read the body itself). A form post's body is read for the CSRF check anyway.
        if request.method == "POST" and not request.path.startswith("/api/") and \
                request.content_type in ("application/x-www-form-urlencoded",
                                         "multipart/form-data") and _has_nul(request.POST):
            return self._refuse(request, "a form field holds a NUL character")
        return None

    def process_exception(self, request, exception):
        if isinstance(exception, DataError) and ("NUL" in str(exception)
                                                 or "\\u0000" in str(exception)):
            return self._refuse(request, "the request holds a NUL character")
        return None

    @staticmethod
    def _refuse(request, detail: str):
        if request.path.startswith("/api/"):
            return JsonResponse({"code": "bad_request", "detail": detail}, status=400)
        return render(request, "web/error.html",
                      {"error": ValidationFailed(detail, code="bad_request")}, status=400)
