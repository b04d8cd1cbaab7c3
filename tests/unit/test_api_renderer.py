"""The API's JSON renderer (orjson) writes what DRF's JSONRenderer writes (decision 64)."""

import decimal
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import pytest
from django.utils.translation import gettext_lazy
from rest_framework import renderers as drf

from portal.api.renderers import JSONRenderer

DOCUMENT = {
    "count": 3, "next": None, "flag": True, "score": 0.97, "negative": -12.5,
    "text": "ünïcode \u2028 and \u2029 \"quoted\" \\ </script>",
    "created_at": datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
    "naive": datetime(2026, 1, 2, 3, 4, 5), "day": date(2026, 1, 2), "at": time(3, 4, 5, 6),
    "took": timedelta(seconds=1.5), "price": decimal.Decimal("1.25"),
    "id": uuid.UUID("12345678-1234-5678-1234-567812345678"), "lazy": gettext_lazy("Versions"),
    "keys": {1: "int", "s": "str"}, "tuple": (1, 2), "set": {3}, "bytes": b"raw",
    "results": [{"tags": ["a", "b"], "metrics": {"auc": 0.5, "nested": [None, [1, 2.25]]}}],
}


def test_writes_the_same_bytes_as_drf():
    assert JSONRenderer().render(DOCUMENT) == drf.JSONRenderer().render(DOCUMENT)


def test_numbers_read_back_the_same():
    # orjson writes some floats in a shorter form (1e-5, not 1e-05): the same numbers.
    document = {"floats": [1e-5, 1e16, 1.5e300, 2.0**-1074, 0.1 + 0.2], "int": 2**63 - 1}
    assert json.loads(JSONRenderer().render(document)) == document


@pytest.mark.parametrize("document", [{"huge": 2**64}, [{"n": -(2**70)}]])
def test_what_orjson_refuses_is_rendered_by_drf(document):
    assert JSONRenderer().render(document) == drf.JSONRenderer().render(document)


def test_indented_and_empty_answers_are_drfs():
    indented = "application/json; indent=4"
    assert JSONRenderer().render(DOCUMENT, indented) == \
        drf.JSONRenderer().render(DOCUMENT, indented)
    assert JSONRenderer().render(None) == b""


def test_what_drf_refuses_it_refuses():
    @dataclass
    class Point:
        x: int

    with pytest.raises(TypeError):
        drf.JSONRenderer().render({"p": Point(1)})
    with pytest.raises(TypeError):
        JSONRenderer().render({"p": Point(1)})
