"""Shared behaviour of the API's viewsets, and the token login endpoint."""

from django.contrib.auth import authenticate
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status, viewsets
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle
from rest_framework.views import APIView

from portal.accounts.services import create_token
from portal.accounts.signals import record_sign_in


def validated(serializer_class, data, **kwargs):
    """Validate request data with a serializer; DRF's ValidationError becomes a 400."""
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class PortalViewSet(viewsets.GenericViewSet):
    """Base of every viewset: querysets are cut to what the user may see by ``scope``."""

    lookup_value_regex = "[0-9]+"  # ids are integers: anything else is no such path (404)

    def scope(self, queryset):
        return queryset

    def get_queryset(self):
        return self.scope(super().get_queryset())


class LoginThrottle(AnonRateThrottle):
    rate = "30/min"


class TokenLoginSerializer(serializers.Serializer):
    username = serializers.CharField()
    password = serializers.CharField(trim_whitespace=False)
    name = serializers.CharField(required=False, allow_blank=True, max_length=100)


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
        token, key = create_token(user, data.get("name") or "API login")
        return Response({"token": key, "name": token.name, "prefix": token.prefix},
                        status=status.HTTP_201_CREATED)
