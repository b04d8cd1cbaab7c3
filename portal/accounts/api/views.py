import django_filters
from django.contrib.auth import authenticate
from django.db.models import Q
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle
from rest_framework.views import APIView

from portal.accounts import services
from portal.accounts.api.serializers import (
    ApiTokenCreatedSerializer,
    ApiTokenSerializer,
    InvitationCreateSerializer,
    InvitationSerializer,
    InvitedSerializer,
    MembershipSerializer,
    MembershipUpdateSerializer,
    TokenLoginSerializer,
)
from portal.accounts.choices import InvitationStatus, Role
from portal.accounts.models import ApiToken, Invitation, Membership
from portal.accounts.signals import record_sign_in
from portal.api.filters import DateTimeFilter
from portal.api.views import PortalViewSet, validated
from portal.audit.api.serializers import AuditEventSerializer
from portal.audit.models import AuditEvent


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
        """Signed in, any scopes; with an API token, only scopes that token holds (its
        scopes are a ceiling: 403 ``scope_ceiling``) and no later expiry than its own."""
        data = validated(ApiTokenSerializer, request.data)
        via = request.auth if isinstance(request.auth, ApiToken) else None
        token, key = services.create_token(request.user, data["name"], data.get("expires_at"),
                                           data.get("scopes"), via=via)
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
    """Who holds which role in the projects you see; owners change roles and remove
    members. New members join by invitation (``/api/v1/invitations/``)."""

    serializer_class = MembershipSerializer
    queryset = Membership.objects.select_related("user", "project")
    filterset_class = MembershipFilterSet
    ordering_fields = ["created_at", "role"]

    def scope(self, queryset):
        return services.filter_visible(queryset, self.request.user, "project")

    @extend_schema(request=MembershipUpdateSerializer, responses=MembershipSerializer)
    def partial_update(self, request, pk=None):
        membership = self.get_object()
        data = validated(MembershipUpdateSerializer, request.data)
        services.change_role(request.user, membership, data["role"])
        return Response(MembershipSerializer(membership).data)

    def destroy(self, request, pk=None):
        services.remove_member(request.user, self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class InvitationFilterSet(django_filters.FilterSet):
    project = django_filters.NumberFilter(
        field_name="project_id",
        help_text="The project's invitations, for its owners (without it: those to you)")
    status = django_filters.ChoiceFilter(choices=InvitationStatus.choices, method="by_status")

    class Meta:
        model = Invitation
        fields = ["project", "status", "role"]

    def by_status(self, queryset, name, value):
        now = timezone.now()
        if value == InvitationStatus.OPEN:
            return queryset.filter(status=value, expires_at__gt=now)
        if value == InvitationStatus.EXPIRED:
            return queryset.filter(Q(status=value) | Q(status=InvitationStatus.OPEN,
                                                        expires_at__lte=now))
        return queryset.filter(status=value)


class InvitationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, PortalViewSet):
    """Invitations to projects. Owners invite by username or e-mail address with a role
    (the answer is the same whether or not the account exists) and revoke open invitations;
    the invited person accepts (and only then is a member, with that role) or declines. An
    address is sent a one-time link to create an account and join (with no mail configured,
    the owner is given it once, as ``accept_url``).

    The list shows the invitations to you; with ``?project=<id>``, that project's
    invitations, if you own it (an empty list otherwise)."""

    serializer_class = InvitationSerializer
    queryset = Invitation.objects.select_related("project", "invited_by")
    filterset_class = InvitationFilterSet
    ordering_fields = ["created_at", "expires_at"]

    def scope(self, queryset):
        user = self.request.user
        if self.action == "list":
            if "project" in self.request.query_params:
                return queryset & services.invitations_sent_by_projects_of(user)
            return queryset & services.invitations_to(user)
        if self.action in ("accept", "decline"):
            return queryset & services.invitations_to(user)
        # Revoking (and reading) someone else's invitation: members find it, and the service
        # asks for the owner role (403); outsiders get 404.
        return (queryset & services.invitations_to(user)) | \
            services.filter_visible(queryset, user)

    @extend_schema(parameters=[OpenApiParameter(
        "project", OpenApiTypes.INT, description="A project you own: its invitations")])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    def retrieve(self, request, pk=None):
        invitation = self.get_object()
        if invitation.user_id != request.user.pk:
            services.require_role(request.user, invitation.project, Role.OWNER,
                                  "see the project's invitations")
        return Response(self.get_serializer(invitation).data)

    @extend_schema(request=InvitationCreateSerializer, responses={201: InvitedSerializer})
    def create(self, request):
        """Invite a username or an e-mail address to a project with a role (owners). The
        same 201 and body whether the account exists, is a member already or is invited;
        for an address with no mail configured, the body has the link to hand over
        (``accept_url``), shown this once."""
        data = validated(InvitationCreateSerializer, request.data)
        if "email" in data:
            answer = services.invite_by_email(request.user, data["project"], data["email"],
                                              data["role"],
                                              site_url=request.build_absolute_uri("/"))
            if answer.accept_url is None:
                return Response({"detail": answer.detail}, status=status.HTTP_201_CREATED)
            return Response({"detail": answer.detail, "accept_url": answer.accept_url},
                            status=status.HTTP_201_CREATED,
                            headers={"Cache-Control": "no-store"})  # a key: keep no copy
        services.invite(request.user, data["project"], data["username"], data["role"])
        return Response({"detail": services.INVITED}, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=InvitationSerializer)
    @action(detail=True, methods=["post"], filter_backends=[])
    def accept(self, request, pk=None):
        """Become a member with the invited role (the invited person only; 409
        ``invitation_expired``, ``invitation_revoked``... when it is no longer open)."""
        invitation = services.accept_invitation(request.user, self.get_object())
        return Response(self.get_serializer(invitation).data)

    @extend_schema(request=None, responses=InvitationSerializer)
    @action(detail=True, methods=["post"], filter_backends=[])
    def decline(self, request, pk=None):
        invitation = services.decline_invitation(request.user, self.get_object())
        return Response(self.get_serializer(invitation).data)

    @extend_schema(request=None, responses=InvitationSerializer)
    @action(detail=True, methods=["post"], filter_backends=[])
    def revoke(self, request, pk=None):
        """Withdraw an open invitation (owners of its project)."""
        invitation = services.revoke_invitation(request.user, self.get_object())
        return Response(self.get_serializer(invitation).data)


class LoginThrottle(AnonRateThrottle):
    rate = "30/min"


class TokenLoginView(APIView):
    """Exchange a username and password for a new API token (shown once)."""

    permission_classes = [AllowAny]
    authentication_classes = []
    throttle_classes = [LoginThrottle]

    @extend_schema(
        request=TokenLoginSerializer,
        responses={201: inline_serializer("TokenIssued", {
            "token": serializers.CharField(), "name": serializers.CharField(),
            "prefix": serializers.CharField()})},
        tags=["auth"],
    )
    def post(self, request):
        # A serializer, not request.data.get: the body may be any JSON value (a bare
        # `false` reached .get and failed with a 500, found by schemathesis).
        data = validated(TokenLoginSerializer, request.data)
        user = authenticate(request, username=data["username"], password=data["password"])
        if getattr(request, "axes_locked_out", False):
            return Response({"code": "locked_out",
                             "detail": "too many failed sign-ins for this account from here; "
                                       "try again later"},
                            status=status.HTTP_429_TOO_MANY_REQUESTS)
        if user is None:
            return Response({"code": "authentication_failed",
                             "detail": "wrong username or password"},
                            status=status.HTTP_401_UNAUTHORIZED,
                            headers={"WWW-Authenticate": "Token"})
        record_sign_in(request, user)  # audited like a session sign-in (account.login)
        token, key = services.create_token(user, data.get("name") or "API login",
                                           scopes=services.login_scopes(user,
                                                                        data.get("scopes")))
        return Response({"token": key, "name": token.name, "prefix": token.prefix},
                        status=status.HTTP_201_CREATED)


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

    # Here rather than in portal.audit: who sees which project is the memberships' to say,
    # and the audit trail sits below them.

    serializer_class = AuditEventSerializer
    queryset = AuditEvent.objects.all()
    filterset_class = AuditEventFilterSet
    ordering_fields = ["id", "created_at"]

    def scope(self, queryset):
        ids = services.visible_project_ids(self.request.user)
        return queryset if ids is None else queryset.filter(project_id__in=ids)
