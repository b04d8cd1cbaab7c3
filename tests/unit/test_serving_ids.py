"""ops.serving.ids: prediction ids carry the variant and generation that answered."""

from __future__ import annotations

import pytest

from ops.serving import PredictionId, new_prediction_ids, parse_prediction_id


def test_single_row_id_roundtrips_to_variant_and_generation():
    base, ids = new_prediction_ids("challenger", 7, 1)
    assert ids == [base]
    parsed = parse_prediction_id(base)
    assert (parsed.variant, parsed.generation, parsed.row) == ("challenger", 7, None)
    assert str(parsed) == base


def test_rows_of_one_request_share_the_request_part_and_number_their_rows():
    base, ids = new_prediction_ids("v1", 3, 4)
    parsed = [parse_prediction_id(i) for i in ids]
    assert [p.row for p in parsed] == [0, 1, 2, 3]
    assert {p.request for p in parsed} == {parse_prediction_id(base).request}
    assert all(p.variant == "v1" and p.generation == 3 for p in parsed)
    assert [str(p) for p in parsed] == ids


def test_variant_names_with_dots_survive():
    base, _ = new_prediction_ids("model.v2.canary", 12, 1)
    assert parse_prediction_id(base).variant == "model.v2.canary"


def test_ids_are_unique():
    assert len({new_prediction_ids("a", 1, 1)[0] for _ in range(1000)}) == 1000


@pytest.mark.parametrize("text", [
    "", "abc", "v1.2", "v1.x.0123456789abcdef0123456789abcdef",
    "v1.2.0123456789abcdef", "v1.2.0123456789ABCDEF0123456789ABCDEF",
    "v1.2.0123456789abcdef0123456789abcdef:x", ".2.0123456789abcdef0123456789abcdef",
])
def test_malformed_ids_are_refused(text):
    with pytest.raises(ValueError):
        parse_prediction_id(text)


def test_prediction_id_renders_like_the_server_writes_it():
    pid = PredictionId("blue", 2, "0123456789abcdef0123456789abcdef", 5)
    assert parse_prediction_id(str(pid)) == pid
