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


# -- signed ids: the variant read out of an id must be the one that answered ------------------

from ops.serving import Signer, derive_key, verify  # noqa: E402
from ops.serving.ids import PredictionKeyError  # noqa: E402

SECRET = b"s" * 32


def _signer(kid="e1m2"):
    return Signer(kid, derive_key(SECRET, kid))


def test_signed_ids_verify_under_their_endpoints_key_only():
    signer = _signer()
    base, ids = new_prediction_ids("candidate", 4, 3, signer=signer)
    assert "~" not in base  # the request part of a multi-row request is for logs only
    for text in ids:
        pid = parse_prediction_id(text)
        assert pid.signed and pid.kid == "e1m2" and pid.variant == "candidate"
        assert verify(pid, derive_key(SECRET, "e1m2"))
        assert not verify(pid, derive_key(SECRET, "e1m3"))  # another endpoint's key
        assert not verify(pid, derive_key(b"t" * 32, "e1m2"))  # another portal's secret
        assert str(pid) == text


def test_a_one_row_request_id_is_the_signed_row_id():
    base, ids = new_prediction_ids("stable", 1, 1, signer=_signer())
    assert ids == [base] and verify(parse_prediction_id(base), derive_key(SECRET, "e1m2"))


@pytest.mark.parametrize("tamper", [
    lambda p: PredictionId("stable", p.generation, p.request, p.row, p.kid, p.mac),  # variant
    lambda p: PredictionId(p.variant, p.generation + 1, p.request, p.row, p.kid, p.mac),
    lambda p: PredictionId(p.variant, p.generation, p.request, 7, p.kid, p.mac),  # new row
    lambda p: PredictionId(p.variant, p.generation, "f" * 32, p.row, p.kid, p.mac),
    lambda p: PredictionId(p.variant, p.generation, p.request, p.row, "e9m9", p.mac),
])
def test_any_change_to_a_signed_id_breaks_its_signature(tamper):
    key = derive_key(SECRET, "e1m2")
    _, ids = new_prediction_ids("candidate", 4, 2, signer=_signer())
    forged = parse_prediction_id(str(tamper(parse_prediction_id(ids[0]))))
    assert not verify(forged, key)


def test_unsigned_ids_never_verify():
    base, _ = new_prediction_ids("candidate", 4, 1)
    assert not verify(parse_prediction_id(base), derive_key(SECRET, "e1m2"))


@pytest.mark.parametrize("text", [
    "v1.2.0123456789abcdef0123456789abcdef~e1m2",
    "v1.2.0123456789abcdef0123456789abcdef~e1m2~short",
    "v1.2.0123456789abcdef0123456789abcdef~e 1~" + "A" * 22,
    "v1.2.0123456789abcdef0123456789abcdef~e1~" + "A" * 21 + "!",
    "x" * 400,
])
def test_malformed_signatures_are_refused(text):
    with pytest.raises(ValueError):
        parse_prediction_id(text)


def test_key_text_roundtrips_and_bad_keys_are_refused(tmp_path):
    signer = _signer()
    assert Signer.from_text(signer.to_text()) == signer
    path = tmp_path / "key"
    path.write_text(signer.to_text() + "\n")
    assert Signer.from_environment({"MODELGATE_PREDICTION_KEY_FILE": str(path)}) == signer
    assert Signer.from_environment({}) is None
    for bad in ("nokey", "e1:zz", "e1:00ff", "bad kid:" + "00" * 16):
        with pytest.raises(PredictionKeyError):
            Signer.from_text(bad)
