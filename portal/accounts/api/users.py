"""``/api/v1/users/``: people, for staff only (``portal.accounts.users``).

List (``?is_active=``, ``?search=``), read, create (with a password, or with a link to set
one, shown once in the answer) and deactivate; never delete."""

import django_filters
from django.contrib.auth import get_user_model
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.settings import api_settings

from portal.accounts import users
from portal.accounts.choices import Role
from portal.accounts.models import project_model
from portal.api.fields import ReferenceField
from portal.api.views import PortalViewSet, validated


class StaffOnly(BasePermission):
    """403 ``staff_required`` (the error body's code) for anyone signed in but not staff."""

    def has_permission(self, request, view):
        users.require_staff(request.user)
        return True


class UserSerializer(serializers.ModelSerializer):
    class Meta:
        model = get_user_model()
        fields = ["id", "username", "email", "is_active", "is_staff", "date_joined",
                  "last_login"]
        read_only_fields = fields


class UserCreateSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    email = serializers.EmailField(required=False, allow_blank=True, default="")
    password = serializers.CharField(
        required=False, write_only=True, trim_whitespace=False,
        help_text="Left out: the account has no password and the answer carries a link to "
                  "set one (set_password_url), shown once")
    project = ReferenceField(queryset=project_model().objects.all(), required=False,
                             help_text="A project to make them a member of, with role")
    role = serializers.ChoiceField(choices=Role.choices, required=False,
                                   help_text="Their role in project (default viewer)")


class UserCreatedSerializer(UserSerializer):
    set_password_url = serializers.CharField(
        read_only=True, allow_null=True,
        help_text="A one-time link to set the password (null when one was given); valid "
                  "until used or for 3 days, and shown only here")

    class Meta(UserSerializer.Meta):
        fields = [*UserSerializer.Meta.fields, "set_password_url"]
        read_only_fields = fields


class UserFilterSet(django_filters.FilterSet):
    class Meta:
        model = get_user_model()
        fields = ["is_active", "is_staff", "username"]


class UserViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, PortalViewSet):
    """People (staff only): list, create, deactivate. Accounts are never deleted: their
    names stay in the audit trail and the release history."""

    serializer_class = UserSerializer
    filterset_class = UserFilterSet
    permission_classes = [*api_settings.DEFAULT_PERMISSION_CLASSES, StaffOnly]
    search_fields = ["username", "email"]
    ordering_fields = ["username", "date_joined", "last_login"]
    visible = staticmethod(lambda user: users.people())

    @extend_schema(request=UserCreateSerializer, responses={201: UserCreatedSerializer})
    def create(self, request):
        data = validated(UserCreateSerializer, request.data)
        user, link = users.create_user(
            request.user, username=data["username"], email=data["email"],
            password=data.get("password"), project=data.get("project"), role=data.get("role"))
        user.set_password_url = request.build_absolute_uri(link) if link else None
        return Response(UserCreatedSerializer(user).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=UserSerializer)
    @action(detail=True, methods=["post"], filter_backends=[])
    def deactivate(self, request, pk=None):
        """Deactivate the account: its sign-ins, sessions and API tokens stop working.
        Not your own (409 ``self_deactivation``)."""
        return Response(UserSerializer(users.deactivate_user(request.user,
                                                             self.get_object())).data)
