"""ops.schema: parsing the input schema a version declares."""

from __future__ import annotations

import pytest

from ops.schema import (
    Feature,
    SchemaError,
    interface_differences,
    parse_input_schema,
    schema_document,
)


def test_full_entries_are_parsed_in_order_with_their_types():
    features = parse_input_schema([
        {"name": "age", "type": "integer"},
        {"name": "smoker", "type": "boolean", "nullable": True},
        {"name": "region", "type": "category", "description": "sales region"},
    ])
    assert features == [
        Feature("age", "integer", False),
        Feature("smoker", "boolean", True),
        Feature("region", "category", False),
    ]


def test_bare_strings_are_shorthand_for_non_nullable_double_features():
    assert parse_input_schema(["a", "b"]) == [Feature("a", "double"), Feature("b", "double")]


def test_shorthand_and_objects_can_be_mixed():
    features = parse_input_schema(["a", {"name": "b", "type": "string"}])
    assert [(f.name, f.type) for f in features] == [("a", "double"), ("b", "string")]


def test_missing_type_defaults_to_double():
    assert parse_input_schema([{"name": "x"}])[0].type == "double"


def test_features_wrapper_object_is_accepted():
    assert parse_input_schema({"features": ["a", {"name": "b", "type": "integer"}]}) == [
        Feature("a", "double"), Feature("b", "integer")]


@pytest.mark.parametrize("kind, numeric", [
    ("double", True), ("integer", True), ("boolean", True), ("category", False),
    ("string", False),
])
def test_numeric_property_follows_the_type(kind, numeric):
    assert parse_input_schema([{"name": "x", "type": kind}])[0].numeric is numeric


def test_schema_document_round_trips_through_the_parser():
    features = parse_input_schema(["a", {"name": "b", "type": "category", "nullable": True}])
    document = schema_document(features)
    assert document == [
        {"name": "a", "type": "double", "nullable": False},
        {"name": "b", "type": "category", "nullable": True},
    ]
    assert parse_input_schema(document) == features


def test_duplicate_name_is_refused_naming_the_feature():
    with pytest.raises(SchemaError, match="'age' appears twice"):
        parse_input_schema(["age", {"name": "height"}, {"name": "age", "type": "integer"}])


def test_unknown_type_is_refused_naming_entry_and_type_and_listing_valid_ones():
    with pytest.raises(SchemaError) as info:
        parse_input_schema(["a", {"name": "when", "type": "datetime"}])
    message = str(info.value)
    assert "input_schema[1]" in message
    assert "(when)" in message
    assert "'datetime'" in message
    assert "double" in message and "category" in message


def test_unknown_keys_are_refused_and_listed_sorted():
    with pytest.raises(SchemaError) as info:
        parse_input_schema([{"name": "x", "type": "double", "unit": "cm", "dtype": "f8"}])
    message = str(info.value)
    assert "input_schema[0] (x)" in message
    assert "unknown keys dtype, unit" in message


def test_description_is_an_allowed_key_but_not_kept():
    features = parse_input_schema([{"name": "x", "description": "free text"}])
    assert features == [Feature("x", "double", False)]


@pytest.mark.parametrize("document", [[], {"features": []}])
def test_empty_schema_is_refused(document):
    with pytest.raises(SchemaError, match="non-empty list"):
        parse_input_schema(document)


@pytest.mark.parametrize("document", [
    None, "a,b", 42, {"name": "x"}, {"columns": ["a"]}, ("a", "b"),
])
def test_non_list_document_is_refused(document):
    with pytest.raises(SchemaError, match="non-empty list"):
        parse_input_schema(document)


@pytest.mark.parametrize("entry", [42, None, ["x", "double"], 1.5])
def test_entry_that_is_neither_string_nor_object_is_refused_by_position(entry):
    with pytest.raises(SchemaError, match=r"input_schema\[1\] must be an object"):
        parse_input_schema(["ok", entry])


@pytest.mark.parametrize("entry", [
    {"type": "double"}, {"name": ""}, {"name": "   "}, {"name": 7}, "", " ",
])
def test_entry_without_a_usable_name_is_refused_by_position(entry):
    with pytest.raises(SchemaError, match=r"input_schema\[2\] has no name"):
        parse_input_schema(["a", "b", entry])


@pytest.mark.parametrize("nullable", ["yes", 1, 0, None])
def test_nullable_must_be_a_boolean(nullable):
    with pytest.raises(SchemaError, match=r"input_schema\[0\] \(x\): nullable must be true or false"):
        parse_input_schema([{"name": "x", "nullable": nullable}])


def test_schema_error_is_a_value_error():
    assert issubclass(SchemaError, ValueError)


# interface_differences: a release candidate's inputs against those of the serving version

def _features(*names, types=None, nullable=()):
    types = types or {}
    return [Feature(n, types.get(n, "double"), n in nullable) for n in names]


def test_the_same_inputs_have_no_differences():
    assert interface_differences(_features("a", "b"), _features("a", "b")) == []


def test_a_version_with_a_third_of_the_features_says_which_are_missing():
    """The incident: a version trained on 10 features uploaded as a version of a 30-feature
    model, requested as a canary; every real request got 400 from the candidate."""
    serving = _features(*(f"f{i}" for i in range(1, 31)))
    differences = interface_differences(serving, serving[:10])
    assert differences[0] == "feature count 30 → 10"
    assert differences[1:] == [f"missing feature f{i} (position {i})" for i in range(11, 31)]


def test_names_order_types_and_nulls_are_compared():
    serving = _features("a", "b", "c", "d", types={"d": "double"}, nullable=("a",))
    candidate = _features("c", "a", "b", "e", types={"b": "string"})
    assert interface_differences(serving, candidate) == [
        "missing feature d (position 4)",
        "extra feature e (position 4)",
        "feature c moved from position 3 to 1",
        "feature a moved from position 1 to 2",
        "feature b moved from position 2 to 3",
        "feature a no longer accepts null",
        "type of b double → string",
    ]


def test_a_shift_explained_by_a_removed_feature_is_not_a_move():
    assert interface_differences(_features("a", "b", "c"), _features("b", "c")) == [
        "feature count 3 → 2", "missing feature a (position 1)"]


def test_accepting_nulls_now_is_compatible():
    assert interface_differences(_features("a"), _features("a", nullable=("a",))) == []
