"""Serializer fields shared by the API's writes."""

from rest_framework import serializers

from portal.errors import NOT_FOUND, NotFound


class ReferenceField(serializers.PrimaryKeyRelatedField):
    """An id in a request body naming another object (a project, a version, an environment).

    An id that names nothing answers the same 404 ``not_found`` as one naming an object of
    a project the caller is not a member of (the services' role checks): DRF's usual 400
    "object does not exist" against a 404 for the others would tell which ids exist.
    """

    def fail(self, key, **kwargs):
        if key == "does_not_exist":
            raise NotFound(NOT_FOUND)
        super().fail(key, **kwargs)
