from django import forms

from portal.accounts.choices import Role


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What it is for, e.g. 'ci pipeline'")
    expires_at = forms.DateTimeField(required=False, label="Expires at (optional)",
                                     widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))


class MemberForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=Role.choices)


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)
