from rest_framework import serializers

from portal.accounts.choices import InvitationStatus, Role, TokenScope
from portal.accounts.models import ApiToken, Invitation, Membership, project_model
from portal.api.fields import ReferenceField


class ApiTokenSerializer(serializers.ModelSerializer):
    active = serializers.BooleanField(source="is_active", read_only=True)
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=TokenScope.choices), required=False,
        help_text="read, write, approve; default read and write")

    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "scopes", "created_at", "expires_at",
                  "last_used_at", "revoked_at", "active"]
        read_only_fields = ["id", "prefix", "created_at", "last_used_at", "revoked_at", "active"]


class ApiTokenCreatedSerializer(ApiTokenSerializer):
    token = serializers.CharField(read_only=True, help_text="Shown once; store it now")

    class Meta(ApiTokenSerializer.Meta):
        fields = ApiTokenSerializer.Meta.fields + ["token"]


class MembershipSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username")
    role = serializers.ChoiceField(choices=Role.choices)

    class Meta:
        model = Membership
        fields = ["id", "project", "username", "role", "created_at"]
        read_only_fields = ["id", "created_at"]
        validators = []


class MembershipUpdateSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Role.choices)


class InvitationSerializer(serializers.ModelSerializer):
    """An invitation as its invited person and the project's owners see it. ``username`` is
    as the owner typed it; nothing tells whether an account of that name exists."""

    project_slug = serializers.CharField(source="project.slug", read_only=True)
    project_name = serializers.CharField(source="project.name", read_only=True)
    invited_by = serializers.CharField(source="invited_by.username", read_only=True,
                                       allow_null=True)
    status = serializers.ChoiceField(source="state", choices=InvitationStatus.choices,
                                     read_only=True,
                                     help_text="open until accepted, declined, revoked or "
                                               "past expires_at (expired)")

    class Meta:
        model = Invitation
        fields = ["id", "project", "project_slug", "project_name", "username", "by_email",
                  "role", "invited_by", "created_at", "expires_at", "status", "responded_at"]
        read_only_fields = fields


class InvitationCreateSerializer(serializers.Serializer):
    """Whom to invite: a ``username``, or an ``email`` address (exactly one of them)."""

    project = ReferenceField(queryset=project_model().objects.all())
    username = serializers.CharField(max_length=150, required=False)
    email = serializers.EmailField(max_length=150, required=False,
                                   help_text="Invite an address: the person gets a one-time "
                                             "link to create an account (or use theirs) and "
                                             "join")
    role = serializers.ChoiceField(choices=Role.choices)

    def validate(self, attrs):
        if ("username" in attrs) == ("email" in attrs):
            raise serializers.ValidationError("give a username or an e-mail address, "
                                              "one of them")
        return attrs


class InvitedSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="The same whether or not the account exists")
    accept_url = serializers.URLField(
        required=False,
        help_text="Inviting an e-mail address with no mail configured: the one-time link "
                  "to hand over, shown only in this answer")


class TokenLoginSerializer(serializers.Serializer):
    username = serializers.CharField()
    password = serializers.CharField(trim_whitespace=False)
    name = serializers.CharField(required=False, allow_blank=True, max_length=100)
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=TokenScope.choices), required=False,
        help_text="read, write, approve; default read and write. approve (reviews, "
                  "promote/resume/keep, A/B decisions, the champion) only for an approver")
