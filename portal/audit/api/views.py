import django_filters
from rest_framework import mixins

from portal.accounts.services import visible_project_ids
from portal.api.filters import DateTimeFilter
from portal.api.views import PortalViewSet
from portal.audit.api.serializers import AuditEventSerializer
from portal.audit.models import AuditEvent


class AuditEventFilterSet(django_filters.FilterSet):
    project = django_filters.NumberFilter(field_name="project_id")
    actor = django_filters.CharFilter(field_name="actor_name")
    after = DateTimeFilter(field_name="created_at", lookup_expr="gte")
    before = DateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = AuditEvent
        fields = ["project", "object_type", "object_id", "action", "actor", "after", "before"]


class AuditEventViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, PortalViewSet):
    """The audit trail of the projects you see (staff: everything)."""

    serializer_class = AuditEventSerializer
    queryset = AuditEvent.objects.all()
    filterset_class = AuditEventFilterSet
    ordering_fields = ["id", "created_at"]

    def scope(self, queryset):
        ids = visible_project_ids(self.request.user)
        return queryset if ids is None else queryset.filter(project_id__in=ids)
