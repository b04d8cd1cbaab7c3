"""The schema hook documents the errors every operation can answer, gunicorn's own 414 and
431 included (issue 18: a long query string's 414 was not in the schema)."""

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
        assert "404" in responses and "application/json" in responses["404"]["content"]


def test_the_documented_limit_is_gunicorns():
    conf = (ROOT / "portal" / "gunicorn_conf.py").read_text()
    assert int(re.search(r"^limit_request_line = (\d+)$", conf, re.M).group(1)) == \
        LIMIT_REQUEST_LINE
