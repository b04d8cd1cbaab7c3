"""portal.reversing.reverse gives what Django's reverse gives, and {% url %} (the portal's,
a builtin) renders what Django's tag renders, remembered or not."""

import pytest
from django.template import engines
from django.urls import NoReverseMatch, set_script_prefix
from django.urls import reverse as django_reverse
from django.utils.safestring import mark_safe

from portal.reversing import _remembered, reverse

CASES = [("registry:models", (), {}), ("registry:project", ("clinical-ml",), {}),
         ("registry:model", ("clinical-ml", "tumor classifier é?#"), {}),
         ("registry:version", ("p", "m", 3), {}), ("releases:deployment", (7,), {}),
         ("registry:version", (), {"slug": "p", "name": "m", "number": 12})]


@pytest.mark.parametrize("name,args,kwargs", CASES)
def test_the_address_is_djangos_under_every_prefix(name, args, kwargs):
    try:
        for prefix in ("/", "/portal/", "/"):
            set_script_prefix(prefix)
            for _ in range(2):  # worked out, then remembered
                assert reverse(name, args=args, kwargs=kwargs) == django_reverse(
                    name, args=args or None, kwargs=kwargs or None)
            assert reverse(name, args=args, kwargs=kwargs).startswith(prefix)
    finally:
        set_script_prefix("/")


def test_what_is_not_plain_is_reversed_every_time_and_failures_are_not_kept():
    hits = _remembered.cache_info().hits
    assert reverse("registry:project", args=[mark_safe("x")]) == "/p/x/"
    assert _remembered.cache_info().hits == hits
    for _ in range(2):
        with pytest.raises(NoReverseMatch):
            reverse("registry:project", args=["not a slug/"])
        with pytest.raises(NoReverseMatch):
            reverse("no-such-view")


def test_the_url_tag_renders_as_djangos():
    engine = engines["django"]
    source = ("{% url 'registry:version' slug name number %}|"
              "{% url 'registry:model' slug name as there %}{{ there }}|"
              "{% url 'no-such-view' as missing %}[{{ missing }}]")
    context = {"slug": "clinical-ml", "name": "a&b", "number": 3}
    expected = (django_reverse("registry:version", args=["clinical-ml", "a&b", 3])
                .replace("&", "&amp;") + "|"
                + django_reverse("registry:model", args=["clinical-ml", "a&b"])
                .replace("&", "&amp;") + "|[]")
    hits = _remembered.cache_info().hits
    for _ in range(2):
        assert engine.from_string(source).render(context) == expected
    assert _remembered.cache_info().hits >= hits + 2  # the portal's tag, not Django's
    with pytest.raises(NoReverseMatch):
        engine.from_string("{% url 'no-such-view' %}").render({})
