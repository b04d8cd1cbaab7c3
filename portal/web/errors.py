"""Error pages: JSON for the API (``/api/``), HTML for people.

Django's own handlers answer in HTML; an API client that mistypes a path, or hits a server
error, must still get the portal's ``{"code", "detail"}`` shape.
"""

from django.http import JsonResponse
from django.shortcuts import render
from django.views.defaults import bad_request as html_bad_request
from django.views.defaults import permission_denied as html_permission_denied
from django.views.defaults import server_error as html_server_error


def _api(request) -> bool:
    return request.path.startswith("/api/")


def not_found(request, exception=None):
    if _api(request):
        return JsonResponse({"code": "not_found", "detail": "no such API path"}, status=404)
    return render(request, "404.html", status=404)


def server_error(request):
    if _api(request):
        return JsonResponse({"code": "server_error",
                             "detail": "the server failed; the error is logged"}, status=500)
    return html_server_error(request)


def bad_request(request, exception=None):
    if _api(request):
        return JsonResponse({"code": "bad_request", "detail": "malformed request"},
                            status=400)
    return html_bad_request(request, exception)


def permission_denied(request, exception=None):
    if _api(request):
        return JsonResponse({"code": "permission_denied", "detail": "not allowed"},
                            status=403)
    return html_permission_denied(request, exception)
