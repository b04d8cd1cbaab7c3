"""Filters shared by the API's filter sets."""

from datetime import UTC, timedelta
from functools import reduce
from operator import or_

import django_filters
from django import forms
from django.db.models import Q
from django_filters.fields import IsoDateTimeField
from rest_framework.exceptions import ValidationError
from rest_framework.filters import BaseFilterBackend

MAX_OFFSET = timedelta(hours=14)  # the widest real time-zone offset (Kiribati)


class BoundedIsoDateTimeField(IsoDateTimeField):
    """An ISO 8601 date-time the database can compare with: a real time-zone offset and a
    UTC instant within years 1-9999 (PostgreSQL refuses others, which was a 500)."""

    def to_python(self, value):
        value = super().to_python(value)
        if value is None:
            return value
        offset = value.utcoffset()
        if offset is not None and abs(offset) > MAX_OFFSET:
            raise forms.ValidationError("time-zone offset beyond ±14:00", code="invalid")
        try:
            return value.astimezone(UTC) if offset is not None else value
        except (OverflowError, ValueError) as e:
            raise forms.ValidationError("date-time out of range", code="invalid") from e


class DateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = BoundedIsoDateTimeField


class InProjectFilterSet(django_filters.FilterSet):
    """Base of the filter sets of what belongs to one project (a ``project`` foreign key):
    ``?project=<id>`` or ``?project_slug=<slug>``."""

    project = django_filters.NumberFilter(field_name="project_id")
    project_slug = django_filters.CharFilter(field_name="project__slug")


class ArchivedFilter(BaseFilterBackend):
    """Lists leave archived objects out; ``?archived=true`` lists only them (decision 58).

    A viewset names what makes a row archived in ``archived_lookups`` (its own
    ``archived_at``, and its project's). Only lists are filtered: an archived object stays
    readable, archivable and restorable by id."""

    param = "archived"

    def filter_queryset(self, request, queryset, view):
        lookups = getattr(view, "archived_lookups", ())
        if getattr(view, "action", None) != "list" or not lookups:
            return queryset
        raw = request.query_params.get(self.param, "false").strip().lower()
        if raw not in ("true", "false", "1", "0"):
            raise ValidationError({self.param: ["give true or false"]})
        if raw in ("false", "0"):
            return queryset.filter(**{f"{lookup}__isnull": True for lookup in lookups})
        return queryset.filter(reduce(or_, (Q(**{f"{lookup}__isnull": False})
                                            for lookup in lookups)))

    def get_schema_operation_parameters(self, view):
        if not getattr(view, "archived_lookups", ()):
            return []
        return [{"name": self.param, "required": False, "in": "query",
                 "description": "true: only archived objects (or of an archived project); "
                                "false, the default: none of them",
                 "schema": {"type": "boolean", "default": False}}]
