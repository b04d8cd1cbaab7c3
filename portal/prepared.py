"""Querysets whose SQL is compiled once per process, then run with each call's values.

Django compiles a queryset's SQL anew at every evaluation: on the portal's busiest pages
that was about a quarter of a request's CPU (0.3-0.6 ms a query, a dozen queries a page;
``benchmarks/portal_load.py --costs``), for the same statement with other values. Django
has no way to keep a compiled statement, and the one library that tries (django-query-doctor's
QueryTurbo, which fingerprints every query at run time) cost as much as it saved here. So
this is written by hand, narrowly:

- ``Prepared(build)`` wraps a function that builds a queryset from plain values only
  (ints, strings, aware datetimes, tuples of ints, None). The first call of each *shape* (which arguments are
  None, how long each tuple is, and the values of the first ``literal`` arguments, which
  Django writes into the SQL: a page's offset) builds it with marker values, compiles it,
  and finds where each marker landed among the statement's parameters. Later calls bind their values there
  and run the same SQL; rows become model instances as Django's own iterables make them,
  and ``prefetch_related`` lookups run as usual.
- What cannot be bound safely is not prepared: a marker Django transformed (``contains``
  wraps it in ``%``), put into the SQL text (a slice bound), or dropped (an out-of-range
  int makes the lookup empty); a queryset tied to an instance (a related manager's). Such a
  shape runs the ordinary way, every time, and says why once in the log.
- The first ``VERIFY_CALLS`` real calls of every shape also compile the ordinary way and
  compare SQL and parameters; a difference (a build reading the clock or anything but its
  arguments) retires the shape to the ordinary way for good, logged as an error.
  ``MODELGATE_PREPARED=all`` compares on every call; ``strict`` (the test suite's
  setting, ``tests/conftest.py``) also raises on a difference; ``off`` runs every query the
  ordinary way (the baseline ``benchmarks/portal_load.py --costs`` serves beside it).

Nothing is cached but SQL text: every call reads the database, so nothing shown is stale.
Why, and what was measured: ``docs/architecture.md``, decision 70.
"""

from __future__ import annotations

import copy
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.exceptions import EmptyResultSet, FullResultSet
from django.db import connections
from django.db.models import QuerySet

log = logging.getLogger(__name__)

VERIFY_CALLS = 2
# Markers, in two sets (a shape is compiled with each, and prepared only when both give the
# same SQL with the markers in the same places). Ints: far from any real id or version
# number, far apart, inside a 32-bit column's range (Django turns an out-of-range int into
# an empty lookup) and positive (for positive fields). Strings: what escaping (LIKE's % _ \),
# case folding, stripping or normalising (e + combining acute) would change.
_INT_MARKERS = (2_000_000_000, 1_000_000_007)
_INT_STEP = 1000
_STR_MARKER = " \x00Mg%_\\e\u0301-prepared-{}-{}\x00 "
_TIME_MARKER = datetime(2999, 1, 1, tzinfo=UTC)  # plus days per set, seconds per marker


EVERY: list[Prepared] = []  # for tests: every prepared query of the process


def unprepared() -> dict[str, str]:
    """{query name and shape: why it runs the ordinary way} over every shape used so far."""
    return {f"{p.name}{key}": reason for p in EVERY for key, reason in p.reasons().items()}


class PreparedMismatch(AssertionError):
    """A prepared statement differed from Django's own (``strict`` verification only)."""


def _mode() -> str:
    return os.environ.get("MODELGATE_PREPARED", "").strip().lower()


@dataclass
class _Shape:
    """One compiled shape: the SQL, and per parameter where its value comes from."""
    # None: run the ordinary way. Never shown: its repr would run it, with the markers.
    queryset: QuerySet | None = field(repr=False)
    sql: str = ""
    # Per parameter: (True, (argument, index in a tuple or None), the marker's type) for a
    # bound value, (False, (None, None), value) for a constant of the statement.
    slots: list = field(default_factory=list)
    compiler: Any = field(default=None, repr=False)
    ops: Any = field(default=None, repr=False)  # the database's operations (adapting values)
    verified: int = 0
    reason: str = ""


def _canonical(value):
    """Tuples of ids as a sorted tuple without repeats (Django's ``__in`` drops repeats,
    which would change the statement's parameter count)."""
    if isinstance(value, (list, tuple, set, frozenset)):
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise TypeError("a prepared query's sequence arguments hold ints only")
        return tuple(sorted(set(value)))
    if value is None or isinstance(value, str) or (isinstance(value, int)
                                                   and not isinstance(value, bool)):
        return value
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value
    raise TypeError(f"a prepared query takes ints, strings, aware datetimes, tuples of ints "
                    f"and None, not {type(value).__name__}")


MAX_SHAPES = 64  # per query; past it, a new shape runs the ordinary way (literal arguments)


def _shape_key(args: tuple, literal: int) -> tuple:
    return args[:literal] + tuple(
        "n" if a is None else (len(a) if isinstance(a, tuple) else type(a).__name__)
        for a in args[literal:])


class Prepared:
    """A queryset shape compiled once per process (see the module's notes)."""

    def __init__(self, build: Callable[..., QuerySet], *, literal: int = 0):
        self.build = build
        self.literal = literal
        self.name = f"{build.__module__}.{build.__qualname__}"
        self._shapes: dict[tuple, _Shape] = {}
        self._lock = threading.Lock()
        EVERY.append(self)

    # -- use -------------------------------------------------------------------------------

    def rows(self, *args) -> list:
        """The rows the built queryset gives for ``args``, as evaluating it would."""
        args = tuple(_canonical(a) for a in args)
        mode = _mode()
        if mode == "off":
            return list(self.build(*args))
        key = _shape_key(args, self.literal)
        shape = self._shapes.get(key) or self._prepare(key, args)
        # One read of the shape: another thread may retire it (a new entry, never a change).
        queryset = shape.queryset if shape is not None else None
        if queryset is None:
            return list(self.build(*args))
        params = _bind(shape.slots, args, shape.ops)
        if params is None:  # a value out of its column's range: Django decides, as ever
            return list(self.build(*args))
        if shape.verified < VERIFY_CALLS or mode in {"all", "strict"}:
            if not self._same(key, shape, args, params):
                return list(self.build(*args))
        return list(_bound(queryset, shape.sql, shape.compiler, params))

    def reasons(self) -> dict[tuple, str]:
        """{shape: why it runs the ordinary way} for the shapes used so far."""
        return {key: shape.reason for key, shape in list(self._shapes.items())
                if shape.queryset is None}

    def first(self, *args):
        rows = self.rows(*args)
        return rows[0] if rows else None

    # -- preparing -------------------------------------------------------------------------

    def _prepare(self, key: tuple, args: tuple) -> _Shape | None:
        with self._lock:
            shape = self._shapes.get(key)
            if shape is None:
                if len(self._shapes) >= MAX_SHAPES:
                    return None
                shape = self._compile(args)
                if shape.queryset is None:
                    log.info("%s runs unprepared for shape %s: %s", self.name, key, shape.reason)
                self._shapes[key] = shape
        return shape

    def _compile(self, args: tuple) -> _Shape:
        shapes = [self._compile_with(args, salt) for salt in (0, 1)]
        first, second = shapes
        if first.queryset is None or second.queryset is None:
            return first if first.queryset is None else second
        if first.sql != second.sql or first.slots != second.slots:
            return _Shape(None, reason="its SQL depends on the arguments' values")
        return first

    def _compile_with(self, args: tuple, salt: int) -> _Shape:
        markers, marked = _markers(args[self.literal:], start=self.literal, salt=salt)
        queryset = self.build(*args[:self.literal], *marked)
        if not isinstance(queryset, QuerySet):
            raise TypeError(f"{self.name} must return a QuerySet")
        if queryset._known_related_objects or queryset._result_cache is not None:
            return _Shape(None, reason="the queryset is tied to an instance or evaluated")
        compiler = queryset.query.get_compiler(using=queryset.db)
        try:
            sql, params = compiler.as_sql()
        except (EmptyResultSet, FullResultSet):
            return _Shape(None, reason="the markers make the lookup empty or total")
        # SQLite's backend passes datetimes as text: their markers are looked for as such.
        ops = connections[queryset.db].ops
        adapted = {ops.adapt_datetimefield_value(m): hit for m, hit in markers.items()
                   if isinstance(m, datetime)}
        adapted = {text: hit for text, hit in adapted.items() if isinstance(text, str)}
        slots, seen = [], set()
        for param in params:
            # Django's PostgreSQL backend wraps integers in psycopg's Int2/Int4/Int8.
            plain = isinstance(param, (int, str, datetime)) and not isinstance(param, bool)
            hit = markers.get(param) if plain else None
            kind = type(param)
            if hit is None and isinstance(param, str) and param in adapted:
                hit, kind = adapted[param], _AdaptedDatetime
            if hit is not None:
                slots.append((True, hit, kind))
                seen.add(hit)
            else:
                slots.append((False, (None, None), param))
        if any(hit not in seen for hit in markers.values()):
            return _Shape(None, reason="an argument is not a plain parameter of the SQL")
        if any(str(m.year if isinstance(m, datetime) else m) in sql for m in markers):
            return _Shape(None, reason="an argument is written into the SQL text")
        return _Shape(queryset, sql=sql, slots=slots, compiler=compiler, ops=ops)

    def _same(self, key: tuple, shape: _Shape, args: tuple, params: list) -> bool:
        """Compile the ordinary way and compare; retire the shape on a difference."""
        queryset = self.build(*args)
        try:
            sql, expected = queryset.query.get_compiler(using=queryset.db).as_sql()
        except (EmptyResultSet, FullResultSet):
            sql, expected = None, None
        if sql == shape.sql and list(expected) == params:
            shape.verified += 1
            return True
        if _mode() == "strict":
            raise PreparedMismatch(f"{self.name}{args!r}: prepared {shape.sql!r} {params!r}, "
                                   f"Django's {sql!r} {expected!r}")
        log.error("%s: prepared SQL differs from Django's for %r; running it unprepared "
                  "from now on", self.name, args)
        self._shapes[key] = _Shape(None, reason="retired: its SQL differed from Django's")
        return False


_RANGES = {"Int2": 2 ** 15, "Int4": 2 ** 31}


class _AdaptedDatetime:
    """The kind of a slot holding a datetime as the backend adapts it (SQLite: text)."""


def _bind(slots: list, args: tuple, ops) -> list | None:
    """The statement's parameters for ``args``, each of the type the marker had; None for
    a negative int or one past its column type's range, which Django may turn into a lookup
    that matches nothing (a positive field's range starts at 0): the ordinary way decides."""
    params = []
    for is_arg, (i, j), value in slots:
        if not is_arg:
            params.append(value)
            continue
        kind, given = value, (args[i] if j is None else args[i][j])
        if kind is str or kind is datetime:
            params.append(given)
            continue
        if kind is _AdaptedDatetime:
            params.append(ops.adapt_datetimefield_value(given))
            continue
        bound = _RANGES.get(kind.__name__, 2 ** 63)
        if not 0 <= given < bound:
            return None
        params.append(given if kind is int else kind(given))
    return params


def _markers(args: tuple, start: int = 0, salt: int = 0) -> tuple[dict, list]:
    """({marker: (argument's position from ``start``, index in a tuple or None)}, the
    arguments as markers of the set ``salt``)."""
    markers, marked = {}, []

    def marker_for(value, where):
        if isinstance(value, datetime):
            marker = _TIME_MARKER + timedelta(days=1000 * salt, seconds=len(markers))
        elif isinstance(value, int):
            marker = _INT_MARKERS[salt] + _INT_STEP * len(markers)
        else:
            marker = _STR_MARKER.format(salt, len(markers))
        markers[marker] = where
        return marker

    for i, value in enumerate(args, start=start):
        if isinstance(value, tuple):
            marked.append(tuple(marker_for(v, (i, j)) for j, v in enumerate(value)))
        elif value is None:
            marked.append(None)
        else:
            marked.append(marker_for(value, (i, None)))
    return markers, marked


def _bound(prepared: QuerySet, sql: str, compiled, params: list) -> QuerySet:
    """A private clone of a shape's queryset whose compiler (a copy of ``compiled``)
    answers with the prepared SQL and these parameters, on this thread's connection."""
    queryset = prepared._chain()
    query = copy.copy(queryset.query)

    def get_compiler(using=None, connection=None, elide_empty=True):
        compiler = copy.copy(compiled)
        compiler.connection = connections[using or queryset.db]
        compiler.query = query
        compiler.as_sql = lambda *args, **kwargs: (sql, params)
        return compiler

    query.get_compiler = get_compiler
    queryset._query = query  # not the setter: it would turn a values_list into values
    return queryset
