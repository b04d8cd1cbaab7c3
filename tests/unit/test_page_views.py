"""The page views' form → service → answer helpers (portal/views.py): a service's refusal
lands on the field it names, else above the form; a button's refusal is an error message.
A chart encoded once is the script ``json_script`` writes."""

from django import forms
from django.contrib.messages import get_messages
from django.contrib.messages.storage.cookie import CookieStorage
from django.test import RequestFactory
from django.utils.html import json_script

from portal.errors import Conflict, ValidationFailed
from portal.views import (
    EncodedChart,
    chart_script,
    form_error,
    handle_action,
    handle_form,
    submit_form,
)


class NameForm(forms.Form):
    name = forms.CharField()


def _request(method="post", data=None):
    request = getattr(RequestFactory(), method)("/page/", data or {})
    request._messages = CookieStorage(request)
    return request


def _said(request):
    return [(m.level_tag, m.message) for m in get_messages(request)]


def refuse(error):
    def action(*_):
        raise error
    return action


def test_a_refusal_naming_a_field_of_the_form_lands_on_that_field():
    form = NameForm({"name": "x"})
    form.is_valid()
    form_error(form, ValidationFailed("taken", field="name"))
    assert form.errors == {"name": ["taken"]}


def test_a_refusal_naming_no_field_or_another_one_lands_above_the_form():
    for field in (None, "slug"):
        form = NameForm({"name": "x"})
        form.is_valid()
        form_error(form, Conflict("no", field=field))
        assert form.non_field_errors() == ["no"] and "name" not in form.errors


def test_handle_form_redirects_with_the_message_when_the_service_agrees():
    request = _request(data={"name": "a"})
    response = handle_form(request, NameForm(request.POST), lambda data: data["name"] * 2,
                           success=lambda made: f"made {made}",
                           redirect_to=lambda made: f"/things/{made}/")
    assert response.status_code == 302 and response.url == "/things/aa/"
    assert _said(request) == [("success", "made aa")]


def test_handle_form_gives_none_to_render_again_on_a_get_an_invalid_form_or_a_refusal():
    request = _request("get")
    assert handle_form(request, NameForm(), refuse(AssertionError()), success="") is None
    request = _request(data={})
    assert handle_form(request, NameForm(request.POST), refuse(AssertionError()),
                       success="") is None
    request = _request(data={"name": "a"})
    form = NameForm(request.POST)
    assert handle_form(request, form, refuse(ValidationFailed("bad", field="name")),
                       success="done") is None
    assert form.errors == {"name": ["bad"]} and _said(request) == []


def test_submit_form_gives_the_result_or_none():
    request = _request(data={"name": "a"})
    assert submit_form(request, NameForm(request.POST), lambda data: (1, 2)) == (1, 2)
    form = NameForm(request.POST)
    assert submit_form(request, form, refuse(Conflict("no"))) is None
    assert form.non_field_errors() == ["no"]


def test_handle_action_flashes_the_outcome_and_redirects():
    request = _request()
    response = handle_action(request, lambda: "x", success=lambda r: f"did {r}",
                             redirect_to="/back/")
    assert response.url == "/back/" and _said(request) == [("success", "did x")]
    request = _request()
    response = handle_action(request, refuse(Conflict("no", field="name")), success="did",
                             redirect_to=lambda r: f"/{r}/", refused_to="/list/")
    assert response.url == "/list/" and _said(request) == [("error", "no")]


def test_a_chart_encoded_once_is_the_same_script_as_json_script():
    figure = {"data": [{"x": [0.1, 2e-9, float("1e300")], "text": ["<b>a & b</b>", "é", "\u2028"]}],
              "layout": {"title": {"text": "</script><script>alert(1)</script>"}}}
    encoded = chart_script(EncodedChart(figure), "chart-1")
    assert encoded == json_script(figure, "chart-1") == chart_script(figure, "chart-1")
    assert "</script><script>" not in encoded.split(">", 1)[1].rsplit("<", 1)[0]
