"""Shared behaviour of the page views: a form or a button → one service call → the answer.

A service refuses with a ``DomainError``; the page shows its ``detail``. On a form page it
lands on the form: on the field the error names when the form has that field, else above
the form (a non-field error), and the page is rendered again. After a button's POST it is
flashed as an error message. When the service agrees, a success message is flashed and the
browser is redirected.

``success``, ``redirect_to`` and ``refused_to`` take a value, or a callable given the
service's result (the object created, say); a value to redirect to is anything
``django.shortcuts.redirect`` takes: a model instance, a URL or a URL name.
"""

import json
from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.shortcuts import redirect
from django.utils.html import format_html, json_script
from django.utils.safestring import mark_safe

from portal.errors import DomainError

_NOTHING = object()  # not submitted, not valid, or refused by the service


def form_error(form, error: DomainError) -> None:
    """A service's refusal on the form: on the field it names if the form has that field,
    else as a non-field error."""
    form.add_error(error.field if error.field in form.fields else None, error.detail)


def _submit(request, form, action: Callable[[dict], Any]):
    if request.method != "POST" or not form.is_valid():
        return _NOTHING
    try:
        return action(form.cleaned_data)
    except DomainError as e:
        form_error(form, e)
        return _NOTHING


def _of(value, result):
    return value(result) if callable(value) else value


def submit_form(request, form, action: Callable[[dict], Any]):
    """For a page that shows what its form made, in place: on a valid POST,
    ``action(form.cleaned_data)``'s result. None on a GET, on an invalid form, or when the
    service refused (its error is then on the form)."""
    result = _submit(request, form, action)
    return None if result is _NOTHING else result


def handle_form(request, form, action: Callable[[dict], Any], *, success,
                redirect_to=None):
    """A form page's POST: on a valid form, ``action(form.cleaned_data)``; if the service
    agrees, flash ``success`` and return a redirect to ``redirect_to`` (by default, the
    action's result: the object it made). None, for the view to render the page with its
    form again, on a GET, on an invalid form, or when the service refused (its error is
    then on the form)::

        return handle_form(...) or render(request, template, context)
    """
    result = _submit(request, form, action)
    if result is _NOTHING:
        return None
    messages.success(request, _of(success, result))
    return redirect(result if redirect_to is None else _of(redirect_to, result))


def handle_action(request, action: Callable[[], Any], *, success, redirect_to,
                  refused_to=None):
    """A button's POST: ``action()``; if the service agrees, flash ``success`` and redirect
    to ``redirect_to``. If it refuses (a DomainError), flash its detail as an error and
    redirect to ``refused_to`` (by default ``redirect_to``, which must then be a value)."""
    try:
        result = action()
    except DomainError as e:
        messages.error(request, e.detail)
        return redirect(redirect_to if refused_to is None else refused_to)
    messages.success(request, _of(success, result))
    return redirect(_of(redirect_to, result))


def from_htmx(request) -> bool:
    """Asked by htmx for a fragment of the page (``HX-Request``), not for the whole page."""
    return request.headers.get("HX-Request") == "true"


class EncodedChart:
    """A chart's figure encoded once as the JSON of its ``<script type="application/json">``
    (``registry/inc/chart.html``), for a figure shown many times unchanged: encoding the
    thousands of points of a SHAP chart cost more than the rest of its page.

    Encoded as ``json_script`` encodes, so the page is byte for byte the same."""

    __slots__ = ("json",)

    def __init__(self, figure):
        from django.core.serializers.json import DjangoJSONEncoder

        self.json = json.dumps(figure, cls=DjangoJSONEncoder).translate(_SCRIPT_ESCAPES)


_SCRIPT_ESCAPES = {ord(">"): "\\u003E", ord("<"): "\\u003C", ord("&"): "\\u0026"}  # json_script's


def chart_script(figure, element_id: str):
    """``json_script(figure, element_id)``, for a figure or an ``EncodedChart``."""
    if isinstance(figure, EncodedChart):
        return format_html('<script id="{}" type="application/json">{}</script>', element_id,
                           mark_safe(figure.json))  # noqa: S308 - JSON escaped as json_script does
    return json_script(figure, element_id)
