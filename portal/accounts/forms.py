from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from portal.accounts.choices import Role, TokenScope


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What it is for, e.g. 'ci pipeline'")
    expires_at = forms.DateTimeField(required=False, label="Expires at (default: in 90 days)",
                                     widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    scopes = forms.MultipleChoiceField(choices=TokenScope.choices, initial=["read", "write"],
                                       required=False,
                                       widget=forms.CheckboxSelectMultiple,
                                       help_text="None ticked: read and write. A token never "
                                                 "does more than your roles allow")


class InviteForm(forms.Form):
    """A username or an e-mail address, and a role. A value in ``username`` that is an
    e-mail address is taken as one (the project page has a single field for both)."""

    username = forms.CharField(max_length=150, required=False,
                               label="Username or e-mail address")
    email = forms.EmailField(max_length=150, required=False)
    role = forms.ChoiceField(choices=Role.choices)

    def clean(self):
        data = super().clean()
        username, email = data.get("username", "").strip(), data.get("email", "")
        if username and not email and "@" in username:
            try:
                validate_email(username)
            except ValidationError:
                pass  # a username with an @ in it
            else:
                username, email = "", username
        if bool(username) == bool(email):
            raise ValidationError("Give a username or an e-mail address.")
        data["username"], data["email"] = username, email
        return data


class JoinForm(forms.Form):
    """A new account, made with an invitation link (validated by the service)."""

    username = forms.CharField(max_length=150)
    password = forms.CharField(widget=forms.PasswordInput, strip=False)


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)
