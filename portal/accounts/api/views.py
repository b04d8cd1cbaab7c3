import django_filters
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.response import Response

from portal.accounts import services
from portal.accounts.api.serializers import (
    ApiTokenCreatedSerializer,
    ApiTokenSerializer,
    MembershipSerializer,
    MembershipUpdateSerializer,
)
from portal.accounts.models import ApiToken, Membership
from portal.api.views import PortalViewSet, validated


class ApiTokenViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, PortalViewSet):
    throttle_scopes = {"create": "tokens"}

    """Your own API tokens. Creating one returns its key once; DELETE revokes it."""

    serializer_class = ApiTokenSerializer
    queryset = ApiToken.objects.all()
    filterset_class = None
    search_fields = ["name"]
    ordering_fields = ["created_at", "last_used_at"]

    def scope(self, queryset):
        return queryset.filter(user=self.request.user)

    @extend_schema(request=ApiTokenSerializer, responses={201: ApiTokenCreatedSerializer})
    def create(self, request):
        data = validated(ApiTokenSerializer, request.data)
        token, key = services.create_token(request.user, data["name"], data.get("expires_at"),
                                           data.get("scopes"))
        token.token = key
        return Response(ApiTokenCreatedSerializer(token).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={204: None})
    def destroy(self, request, pk=None):
        services.revoke_token(request.user, self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class MembershipFilterSet(django_filters.FilterSet):
    project = django_filters.NumberFilter(field_name="project_id")
    username = django_filters.CharFilter(field_name="user__username")

    class Meta:
        model = Membership
        fields = ["project", "username", "role"]


class MembershipViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, PortalViewSet):
    """Who holds which role in the projects you see; owners add, change and remove members."""

    serializer_class = MembershipSerializer
    queryset = Membership.objects.select_related("user", "project")
    filterset_class = MembershipFilterSet
    ordering_fields = ["created_at", "role"]

    def scope(self, queryset):
        return services.filter_visible(queryset, self.request.user, "project")

    def create(self, request):
        data = validated(MembershipSerializer, request.data)
        membership = services.add_member(request.user, data["project"],
                                         data["user"]["username"], data["role"])
        return Response(MembershipSerializer(membership).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=MembershipUpdateSerializer, responses=MembershipSerializer)
    def partial_update(self, request, pk=None):
        membership = self.get_object()
        data = validated(MembershipUpdateSerializer, request.data)
        services.change_role(request.user, membership, data["role"])
        return Response(MembershipSerializer(membership).data)

    def destroy(self, request, pk=None):
        services.remove_member(request.user, self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)
