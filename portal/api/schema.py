"""OpenAPI schema post-processing: document the error answers every operation can give.

drf-spectacular documents each operation's success; the portal's errors all share one JSON
shape (``portal/api/exceptions.py``), and any operation can answer 400 (a malformed query
or body), 401, 403, 404 (an object, or a page, that is not there or not yours), 429
(throttled) and 503 (a dependency away); writes also 409 (the object's state forbids it),
413 (too large) and 415 (wrong media type). Documenting them lets clients generated from
the schema read errors, and lets schema-based testing hold every answer to the schema.

Two answers come from gunicorn before the portal sees the request, as gunicorn's own small
HTML page: 414 when the request line (method, path and query string) is longer than
``limit_request_line`` (``portal/gunicorn_conf.py``), and 431 when the headers are too many
or too large. They are documented on every operation too, with that media type.
"""

ERROR = {
    "type": "object",
    "description": "Every error: a stable code, a sentence, and the field at fault if one is.",
    "properties": {
        "code": {"type": "string", "example": "not_found"},
        "detail": {"type": "string"},
        "field": {"type": "string"},
        "errors": {"description": "per-field messages of a validation error"},
    },
    "required": ["code", "detail"],
}
COMMON = {"400": "Malformed request", "401": "Not authenticated",
          "403": "Not allowed (role or permission)", "404": "Not found (or not yours)",
          "429": "Too many requests", "503": "A dependency is unavailable"}
WRITES = {"409": "Conflicts with the object's state", "413": "Too large",
          "415": "Unsupported media type"}
# Must match portal/gunicorn_conf.py (tests/unit/test_api_schema_errors.py checks).
LIMIT_REQUEST_LINE = 4094
SERVER = {
    "414": f"URI too long: the request line is over {LIMIT_REQUEST_LINE} bytes (answered by "
           "the web server, as HTML); send long filters in fewer or shorter parameters",
    "431": "Request header fields too large (answered by the web server, as HTML)",
}
HTML = {"text/html": {"schema": {"type": "string"}}}


def add_error_responses(result, generator, request, public):
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR
    reference = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for operations in result.get("paths", {}).values():
        for method, operation in operations.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            responses = operation.setdefault("responses", {})
            extra = dict(COMMON)
            if method != "get":
                extra.update(WRITES)
            for status, description in extra.items():
                responses.setdefault(status, {"description": description,
                                              "content": reference})
            for status, description in SERVER.items():
                responses.setdefault(status, {"description": description, "content": HTML})
    return result
