"""Pieces the apps' read serializers share."""

from rest_framework import serializers


class CreatedByField(serializers.CharField):
    """Who created the object: their username, null when nobody (or a deleted account) is
    recorded."""

    def __init__(self, **kwargs):
        super().__init__(source="created_by.username", read_only=True, default=None,
                         allow_null=True, **kwargs)


def read_only_with(base: type[serializers.ModelSerializer], *extra: str) -> type:
    """The ``Meta`` of a read-only serializer showing ``base``'s fields, then ``extra``:
    ``class DetailSerializer(BaseSerializer): Meta = read_only_with(BaseSerializer, "x")``."""

    class Meta(base.Meta):
        fields = [*base.Meta.fields, *extra]
        read_only_fields = fields

    return Meta
