"""The schema documents the errors each operation can answer (issue 15: every operation
listed the same ones), gunicorn's own 414 and 431 included (issue 18: a long query string's
414 was not in the schema)."""

import re
from pathlib import Path

from portal.api.schema import LIMIT_REQUEST_LINE, add_error_responses

ROOT = Path(__file__).resolve().parents[2]


def test_every_operation_documents_the_web_servers_414_and_431_as_html():
    result = {"paths": {"/api/v1/things/": {"get": {"responses": {"200": {}}},
                                            "post": {"responses": {"201": {}}},
                                            "parameters": []}}}
    add_error_responses(result, None, None, True)
    for method in ("get", "post"):
        responses = result["paths"]["/api/v1/things/"][method]["responses"]
        for status in ("414", "431"):
            assert list(responses[status]["content"]) == ["text/html"], (method, status)


def _operations():
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    return {(method.upper(), path): operation for path, operations in schema["paths"].items()
            for method, operation in operations.items()}


def test_each_operation_documents_the_errors_its_view_can_give():
    operations = _operations()

    def errors(method, path):
        return {s for s in operations[(method, path)]["responses"] if s[0] == "4"} - {
            "414", "431"}

    # A read of one object: its id may name nothing; no body, no query to refuse.
    assert errors("GET", "/api/v1/deployments/{id}/") == {"401", "403", "404"}
    # A command without a body: the rollout's state may forbid it, never a 400.
    assert errors("POST", "/api/v1/deployments/{id}/pause/") == {"401", "403", "404", "409"}
    # An upload: multipart only, its size checked, throttled.
    upload = operations[("POST", "/api/v1/models/{id}/versions/")]
    assert list(upload["requestBody"]["content"]) == ["multipart/form-data"]
    assert {"400", "413", "415", "429"} <= errors("POST", "/api/v1/models/{id}/versions/")
    # The token login: JSON only, no role to refuse, throttled.
    login = operations[("POST", "/api/v1/auth/token/")]
    assert list(login["requestBody"]["content"]) == ["application/json"]
    assert errors("POST", "/api/v1/auth/token/") == {"400", "401", "415", "429"}
    # A paginated list: a page past the end is a 404; its filters a 400.
    assert errors("GET", "/api/v1/models/") == {"400", "401", "403", "404"}


def test_every_json_body_is_json_only_and_path_ids_are_integers():
    for (method, path), operation in _operations().items():
        media = list(operation.get("requestBody", {}).get("content", {}))
        assert media in ([], ["application/json"], ["multipart/form-data"]), (method, path)
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "path" and parameter["name"] in ("id", "explanation_id"):
                assert parameter["schema"]["type"] == "integer", (method, path)


def test_the_documented_limit_is_gunicorns():
    conf = (ROOT / "portal" / "gunicorn_conf.py").read_text()
    assert int(re.search(r"^limit_request_line = (\d+)$", conf, re.M).group(1)) == \
        LIMIT_REQUEST_LINE
