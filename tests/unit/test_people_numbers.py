"""How the portal writes numbers and moments for people (portal/web/templatetags)."""

import datetime

import pytest

from portal.web.templatetags.modelgate import metric, ms, num, when


@pytest.mark.parametrize("value, shown", [
    (0.011213636363636321, "0.0112"), (1268.23, "1,270"), (1.6958427650512713, "1.7"),
    (2.0, "2"), (0, "0"), (-0.5, "-0.5"), (0.987654, "0.988"), (123456, "123,456"),
    (None, "—"), ("n/a", "n/a"), (True, "yes"), (float("nan"), "nan"),
])
def test_numbers_have_three_significant_figures(value, shown):
    assert num(value) == shown


def test_metrics_and_durations_are_rounded_for_people():
    assert metric(0.93456789) == "0.935"
    assert metric("auc") == "auc"
    assert ms(0.011213636363636321) == "11.2 ms"
    assert ms(2.5) == "2.5 s"
    assert ms(None) == "—"


def test_a_moment_reads_in_words_with_the_exact_time_on_hover():
    moment = datetime.datetime(2026, 12, 5, 13, 20, 24, tzinfo=datetime.UTC)
    html = str(when(moment))
    assert 'datetime="2026-12-05T13:20:24+00:00"' in html
    assert 'title="2026-12-05 13:20:24 UTC"' in html
    assert "ago" in html
    assert when(None) == "—"
