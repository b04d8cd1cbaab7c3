"""``reverse`` remembered per process: the same view name and arguments give the same
address for as long as the process runs its URL configuration, so each is worked out once.

Django's ``reverse`` matches the name against every pattern of that name and checks the
result with each converter's regex: 20-60 µs a call, and a model page links 60 times (its
version rows, their datasets, the frame's menu). The key holds all it depends on: the URL
configuration and script prefix in force on this thread, the name, the arguments (plain
strings and ints only; anything else is reversed as ever, every call) and the current
application. A name that does not reverse raises every time (nothing is kept)."""

from functools import lru_cache

from django.urls import get_script_prefix, get_urlconf
from django.urls import reverse as django_reverse


@lru_cache(maxsize=8192)
def _remembered(urlconf, prefix: str, viewname: str, args: tuple, kwargs: tuple,
                current_app) -> str:
    return django_reverse(viewname, urlconf=urlconf, args=args or None,
                          kwargs=dict(kwargs) or None, current_app=current_app)


def reverse(viewname, args=None, kwargs=None, current_app=None) -> str:
    args, kwargs = tuple(args or ()), dict(kwargs or {})
    plain = isinstance(viewname, str) and all(
        type(value) in (str, int) for value in (*args, *kwargs.values()))
    if not plain or not isinstance(current_app, (str, type(None))):
        return django_reverse(viewname, args=args or None, kwargs=kwargs or None,
                              current_app=current_app)
    return _remembered(get_urlconf(), get_script_prefix(), viewname, args,
                       tuple(sorted(kwargs.items())), current_app)
