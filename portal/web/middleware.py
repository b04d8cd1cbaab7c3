"""Turn a domain error escaping a page view into a readable error page with its status."""

from django.shortcuts import render

from portal.errors import DomainError


class DomainErrorMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, DomainError) and not request.path.startswith("/api/"):
            return render(request, "web/error.html", {"error": exception}, status=exception.status)
        return None
