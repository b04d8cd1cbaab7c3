"""The OpenAPI schema as clients are generated from it: integer ids, and per operation the
error answers it can really give.

drf-spectacular documents each operation's success from its serializers; the portal's
errors all share one JSON shape (``portal/api/exceptions.py``, the ``Error`` component),
and ``PortalAutoSchema`` adds to each operation the statuses that operation can answer,
derived from what its view is made of (issue 15: every operation listed the same ones):

- 401 always: no credentials, or wrong ones (the token login's wrong password too).
- 403 on every route that needs a signed-in caller: roles are checked in the services,
  and an API token's scopes can refuse any route (a token without ``read`` reads nothing).
- 404 on routes with an id in the path, on paginated lists (a page past the end), and on
  writes whose body names other objects by id (``portal.api.fields.ReferenceField``:
  an id that is not there or not yours).
- 400 where there is something to validate: a request body, or query parameters.
- 415 where there is a request body (JSON, or multipart on the uploads only).
- 409 on writes to the portal's objects (their state may forbid it), not on the token
  login or the Alertmanager receiver, which change none of them.
- 413 on uploads (multipart bodies), where the size is checked.
- 429 where a throttle applies: the token login always, and the actions a view names in
  ``throttle_scopes`` (``portal.api.throttling``), for their writes.

A view documents any other refusal it can give itself, with ``@extend_schema(responses=
{503: ErrorSerializer})`` (the Alertmanager receiver switched off; feedback's 413).

Two answers come from gunicorn before the portal sees the request, as gunicorn's own small
HTML page: 414 when the request line (method, path and query string) is longer than
``limit_request_line`` (``portal/gunicorn_conf.py``), and 431 when the headers are too many
or too large. The post-processing hook ``add_error_responses`` documents them on every
operation, with that media type.

Path ids are integers (``PortalViewSet.lookup_value_regex``): drf-spectacular reads the
route's ``[0-9]+`` as a string with a pattern, and this schema says ``integer``.
"""

from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers
from rest_framework.permissions import AllowAny

from portal.api.fields import ReferenceField
from portal.api.throttling import ActionThrottle


class ErrorSerializer(serializers.Serializer):
    """Every error: a stable code, a sentence, and the field at fault if one is."""

    code = serializers.CharField(help_text="A stable word, e.g. not_found, conflict")
    detail = serializers.CharField(help_text="What went wrong, in a sentence")
    field = serializers.CharField(required=False, help_text="The field at fault, if one is")
    errors = serializers.JSONField(required=False,
                                   help_text="Per-field messages of a validation error")


ERRORS = {
    "400": "Malformed request: a body or query parameter refused (detail and field say why)",
    "401": "Not authenticated",
    "403": "Not allowed: the caller's role, or the token's scopes",
    "404": "Not found (or not yours)",
    "409": "Conflicts with the object's state",
    "413": "Too large",
    "415": "Unsupported media type",
    "429": "Too many requests",
}
WRITES = ("POST", "PUT", "PATCH", "DELETE")
INTEGER_ID = {"type": "string", "pattern": "^[0-9]+$"}  # how drf-spectacular reads [0-9]+

# Must match portal/gunicorn_conf.py (tests/unit/test_api_schema_errors.py checks).
LIMIT_REQUEST_LINE = 4094
SERVER = {
    "414": f"URI too long: the request line is over {LIMIT_REQUEST_LINE} bytes (answered by "
           "the web server, as HTML); send long filters in fewer or shorter parameters",
    "431": "Request header fields too large (answered by the web server, as HTML)",
}
HTML = {"text/html": {"schema": {"type": "string"}}}


class PortalAutoSchema(AutoSchema):
    def get_operation(self, path, path_regex, path_prefix, method, registry):
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "path" and parameter["schema"] == INTEGER_ID:
                parameter["schema"] = {"type": "integer"}
        error = {"application/json": {
            "schema": self.resolve_serializer(ErrorSerializer, "response").ref}}
        responses = operation["responses"]
        for status in self.error_statuses(operation):
            responses.setdefault(status, {"description": ERRORS[status], "content": error})
        return operation

    def error_statuses(self, operation) -> list[str]:
        """The error statuses this operation can answer (the rule in the module's text)."""
        view = self.view
        public = all(issubclass(p, AllowAny) for p in getattr(view, "permission_classes", []))
        body = operation.get("requestBody", {}).get("content", {})
        parameters = operation.get("parameters", [])
        write = self.method in WRITES
        found = {"401"}
        if not public:
            found.add("403")
        if any(p["in"] == "path" for p in parameters) or (body and self._names_objects()) or (
                self._is_list_view() and self._get_paginator() is not None):
            found.add("404")
        if body or any(p["in"] == "query" for p in parameters):
            found.add("400")
        if body:
            found.add("415")
        if write and not public:
            found.add("409")
        if "multipart/form-data" in body:
            found.add("413")
        if self._throttled():
            found.add("429")
        return sorted(found)

    def _names_objects(self) -> bool:
        """Whether the request body names other objects by id (404 when one is not there)."""
        serializer = self.get_request_serializer()
        if isinstance(serializer, dict):  # {media type: serializer}
            serializer = next(iter(serializer.values()), None)
        if isinstance(serializer, type):
            serializer = serializer()
        fields = getattr(serializer, "fields", None)
        return bool(fields) and any(isinstance(f, ReferenceField) for f in fields.values())

    def _throttled(self) -> bool:
        view = self.view
        action = getattr(view, "action", None) or self.method.lower()
        scopes = getattr(view, "throttle_scopes", {})
        for throttle in getattr(view, "throttle_classes", []):
            if not issubclass(throttle, ActionThrottle):
                return True  # a throttle on every request (the token login's)
            if self.method in WRITES and (scopes.get(action) or scopes.get(self.method.lower())):
                return True
        return False


def add_error_responses(result, generator, request, public):
    """Post-processing hook: gunicorn's own 414 and 431, as HTML, on every operation."""
    for operations in result.get("paths", {}).values():
        for method, operation in operations.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            responses = operation.setdefault("responses", {})
            for status, description in SERVER.items():
                responses.setdefault(status, {"description": description, "content": HTML})
    return result
