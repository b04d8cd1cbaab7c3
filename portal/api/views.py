"""Shared behaviour of the API's viewsets."""

from rest_framework import viewsets


def validated(serializer_class, data, **kwargs):
    """Validate request data with a serializer; DRF's ValidationError becomes a 400."""
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class PortalViewSet(viewsets.GenericViewSet):
    """Base of every viewset: querysets are cut to what the user may see, by ``visible``
    (the app's ``queries.<things>_for(user)``) or else by ``scope`` (of ``queryset``)."""

    lookup_value_regex = "[0-9]+"  # ids are integers: anything else is no such path (404)
    visible = None  # staticmethod(queries.<things>_for): the request's user's queryset

    def scope(self, queryset):
        return queryset

    def get_queryset(self):
        if self.visible is not None:
            return self.visible(self.request.user)
        return self.scope(super().get_queryset())
