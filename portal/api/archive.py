"""The archive and restore actions a viewset of archivable objects shares (decision 58).

``POST …/{id}/archive/`` and ``POST …/{id}/restore/`` each call one service the viewset
names (``archive_service``, ``restore_service``: the app's functions, so this framework
module knows no app) and answer the object as it is then. Lists leave archived objects out
unless asked (``ArchivedFilter``, ``?archived=true``); ids reach them either way.
"""

from drf_spectacular.utils import extend_schema
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.settings import api_settings

from portal.api.filters import ArchivedFilter


class ArchiveActions:
    """Mixed into a ``PortalViewSet``; set ``archive_service`` and ``restore_service`` as
    ``staticmethod``s of ``(user, obj) -> obj``, and ``archived_lookups`` when the project's
    archive hides the object too (``("archived_at", "project__archived_at")``)."""

    archive_service = None
    restore_service = None
    archived_lookups = ("archived_at",)
    filter_backends = [*api_settings.DEFAULT_FILTER_BACKENDS, ArchivedFilter]

    def _answer(self, obj):
        return Response(self.get_serializer(self.get_queryset().get(pk=obj.pk)).data)

    @extend_schema(request=None, description="Archive it: hidden from lists (`?archived=true` "
                   "lists them), readable by id, refused as a container of anything new "
                   "(409 `archived`); 409 while something in progress forbids it. Archiving "
                   "an archived object changes nothing.")
    @action(detail=True, methods=["post"], filter_backends=[])
    def archive(self, request, pk=None):
        return self._answer(self.archive_service(request.user, self.get_object()))

    @extend_schema(request=None, description="Bring it back from the archive (an owner's "
                   "act). Restoring what is not archived changes nothing.")
    @action(detail=True, methods=["post"], filter_backends=[])
    def restore(self, request, pk=None):
        return self._answer(self.restore_service(request.user, self.get_object()))
