"""Date-time filters refuse what the database cannot compare (it was a server error)."""

import pytest
from django import forms

from portal.api.filters import BoundedIsoDateTimeField


@pytest.mark.parametrize("text", ["0004-11-22T07:07:16.41+23:05",  # offset beyond ±14:00
                                  "0001-01-01T00:30:00+01:00",  # before year 1 in UTC
                                  "9999-12-31T23:30:00-01:00"])  # after 9999 in UTC
def test_out_of_range_date_times_are_invalid(text):
    with pytest.raises(forms.ValidationError):
        BoundedIsoDateTimeField().clean(text)


def test_an_ordinary_date_time_comes_back_in_utc():
    value = BoundedIsoDateTimeField().clean("2026-11-22T07:00:00+02:00")
    assert value.isoformat() == "2026-11-22T05:00:00+00:00"
