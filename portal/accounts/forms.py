from django import forms

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
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=Role.choices)


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)
