"""ops.serving.inputs: request bodies to validated rows, and errors that name the problem."""

from __future__ import annotations

import numpy as np
import pytest

from ops.schema import parse_input_schema
from ops.serving.exceptions import BadInput, UnsupportedMediaType
from ops.serving.inputs import (
    InputSpec,
    decode_json,
    parse_infer,
    parse_invocation,
    rows_from_csv,
)

SPEC = InputSpec(tuple(parse_input_schema([
    {"name": "age", "type": "integer"},
    {"name": "income", "type": "double", "nullable": True},
    {"name": "score", "type": "double"},
])))
ROWS = [[30, 1000.5, 0.2], [45, 2000.0, 0.9]]


def tensor(data, shape=None, name="input-0", datatype="FP64"):
    t = {"name": name, "datatype": datatype, "data": data}
    if shape is not None:
        t["shape"] = shape
    return {"inputs": [t]}


def code_of(callable_, *args) -> str:
    with pytest.raises(BadInput) as caught:
        callable_(*args)
    return caught.value.code


@pytest.mark.parametrize("body", [
    tensor(ROWS, [2, 3]),
    tensor([v for row in ROWS for v in row], [2, 3]),  # flat data, row-major
    tensor(ROWS),  # shape left out
    {"inputs": [{"name": n, "shape": [2], "datatype": "FP64", "data": [r[i] for r in ROWS]}
                for n, i in (("score", 2), ("age", 0), ("income", 1))]},  # any order
    {"instances": ROWS},
    {"instances": [{"age": 30, "income": 1000.5, "score": 0.2},
                   {"score": 0.9, "income": 2000.0, "age": 45}]},
    {"inputs": ROWS},
    {"inputs": {"age": [30, 45], "income": [1000.5, 2000.0], "score": [0.2, 0.9]}},
])
def test_every_accepted_shape_gives_the_same_rows(body):
    rows = parse_infer(body, SPEC).rows
    assert rows.dtype == np.float64
    np.testing.assert_array_equal(rows, np.array(ROWS, dtype=float))


def test_single_flat_row_is_one_row():
    assert parse_infer(tensor([1, 2, 3], [1, 3]), SPEC).rows.shape == (1, 3)
    assert parse_infer({"instances": [1, 2, 3]}, SPEC).rows.shape == (1, 3)


def test_unit_id_request_id_and_requested_outputs_are_read():
    body = {**tensor(ROWS), "id": "req-1", "parameters": {"unit_id": 42},
            "outputs": [{"name": "predict"}]}
    parsed = parse_infer(body, SPEC)
    assert (parsed.unit_id, parsed.request_id, parsed.outputs) == ("42", "req-1", ("predict",))


def test_nullable_feature_accepts_null_as_nan():
    rows = parse_infer({"instances": [[30, None, 0.2]]}, SPEC).rows
    assert np.isnan(rows[0, 1])


@pytest.mark.parametrize("body, code, words", [
    (tensor([[1, 2]], [1, 2]), "wrong_feature_count", "3 features"),
    ({"instances": [[1, 2, 3, 4]]}, "wrong_feature_count", "4 values"),
    (tensor([1, 2, 3, 4]), "wrong_feature_count", "3 features"),
    (tensor([[1, 2, 3]], [2, 3]), "bad_shape", "shape"),
    ({"instances": [[1, 2, 3], [1, 2]]}, "bad_shape", "same length"),
    ({"instances": [[1, "x", 3]]}, "invalid_type", "'income'"),
    ({"instances": [[1, 2, {"a": 1}]]}, "invalid_type", "'score'"),
    (tensor([["1", "2", "3"]]), "invalid_type", "number"),
    (tensor([[1, 2, 3]], datatype="BYTES"), "invalid_type", "BYTES"),
    (tensor([[1, 2, 3]], datatype="FLOAT"), "invalid_type", "FLOAT"),
    ({"instances": [[None, 1, 2]]}, "null_value", "'age'"),
    ({"instances": [[1, 2, None], [1, 2, None]]}, "null_value", "'score'"),
    ({"instances": [{"age": 1, "income": 2}]}, "missing_feature", "score"),
    ({"instances": [{"age": 1, "income": 2, "score": 3, "zip": 4}]}, "unknown_feature", "zip"),
    ({"inputs": [{"name": "age", "data": [1]}, {"name": "income", "data": [1]}]},
     "missing_feature", "score"),
    ({"inputs": [{"name": "age", "data": [1]}, {"name": "height", "data": [1]}]},
     "unknown_feature", "height"),
    ({"nothing": 1}, "invalid_input", "inputs"),
    ([1, 2, 3], "invalid_input", "object"),
    ({"instances": []}, "invalid_input", "non-empty"),
    ({**tensor(ROWS), "outputs": "predict"}, "invalid_input", "outputs"),
    ({**tensor(ROWS), "parameters": {"unit_id": [1]}}, "invalid_input", "unit_id"),
])
def test_bad_bodies_are_refused_with_a_code_that_names_the_problem(body, code, words):
    with pytest.raises(BadInput) as caught:
        parse_infer(body, SPEC)
    assert caught.value.code == code
    assert words in caught.value.detail
    assert caught.value.status == 400


def test_infinity_is_refused():
    assert code_of(rows_from_csv, b"1,inf,3\n", SPEC) == "invalid_value"


def test_not_json_is_refused():
    assert code_of(decode_json, b"{not json") == "invalid_json"
    assert code_of(decode_json, b"") == "invalid_json"


def test_csv_rows_with_or_without_a_header():
    np.testing.assert_array_equal(rows_from_csv(b"30,1000.5,0.2\n45,2000,0.9\n", SPEC), ROWS)
    np.testing.assert_array_equal(
        rows_from_csv(b"age,income,score\r\n30,1000.5,0.2\r\n45,2000,0.9\r\n", SPEC), ROWS)
    assert np.isnan(rows_from_csv(b"30,,0.2\n", SPEC)[0, 1])


@pytest.mark.parametrize("body, code", [
    (b"30,1000.5\n", "wrong_feature_count"),
    (b"30,abc,0.2\n", "invalid_type"),
    (b"30,1,\n", "null_value"),
    (b"\n\n", "invalid_input"),
    (b"\xff\xfe", "invalid_input"),
])
def test_bad_csv_is_refused(body, code):
    assert code_of(rows_from_csv, body, SPEC) == code


def test_invocations_accept_json_lists_instances_and_csv():
    for body, content_type in [
        (b'{"instances": [[30, 1000.5, 0.2], [45, 2000, 0.9]]}', "application/json"),
        (b'[[30, 1000.5, 0.2], [45, 2000, 0.9]]', "application/json; charset=utf-8"),
        (b"30,1000.5,0.2\n45,2000,0.9", "text/csv"),
    ]:
        np.testing.assert_array_equal(parse_invocation(body, content_type, SPEC).rows, ROWS)
    with pytest.raises(UnsupportedMediaType):
        parse_invocation(b"x", "application/x-protobuf", SPEC)


def test_mixed_schema_keeps_strings_and_checks_types():
    spec = InputSpec(tuple(parse_input_schema([
        {"name": "plan", "type": "category"}, {"name": "usage", "type": "double"}])))
    rows = parse_infer({"instances": [["gold", 1.5], ["free", 2]]}, spec).rows
    assert rows.dtype == object and rows[0, 0] == "gold"
    assert code_of(parse_infer, {"instances": [[1, 1.5]]}, spec) == "invalid_type"
    assert code_of(parse_infer, {"instances": [["gold", "x"]]}, spec) == "invalid_type"
    assert code_of(parse_infer, {"instances": [[None, 1.0]]}, spec) == "null_value"
    per_feature = {"inputs": [{"name": "plan", "datatype": "BYTES", "data": ["gold"]},
                              {"name": "usage", "datatype": "FP64", "data": [3.0]}]}
    assert parse_infer(per_feature, spec).rows.tolist() == [["gold", 3.0]]
