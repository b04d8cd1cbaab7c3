"""The registry's model and version routes, whose detail says what serves now: that is
the backends' observation (``portal.releases.serving``), so these viewsets are the releases
app's; the router serves them at ``/api/v1/models/`` (through monitoring's, which adds the
thresholds) and ``/api/v1/versions/``. Only one object asks its backends: lists stay cheap."""

from portal.registry.api import views as registry
from portal.releases.api.serializers import ModelDetailSerializer, VersionDetailSerializer


class RegisteredModelViewSet(registry.RegisteredModelViewSet):
    __doc__ = registry.RegisteredModelViewSet.__doc__  # the API documentation's text

    def get_serializer_class(self):
        if self.action == "retrieve":
            return ModelDetailSerializer
        return super().get_serializer_class()


class ModelVersionViewSet(registry.ModelVersionViewSet):
    __doc__ = registry.ModelVersionViewSet.__doc__

    def get_serializer_class(self):
        if self.action == "retrieve":
            return VersionDetailSerializer
        return super().get_serializer_class()
