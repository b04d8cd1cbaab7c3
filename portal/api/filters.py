"""Filters shared by the API's filter sets."""

from datetime import UTC, timedelta

import django_filters
from django import forms
from django_filters.fields import IsoDateTimeField

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
