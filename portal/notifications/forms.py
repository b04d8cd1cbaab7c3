from django import forms

from portal.notifications.choices import Event


class WebhookForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="e.g. slack-releases, pagerduty")
    url = forms.CharField(label="URL", max_length=500,
                          help_text="Events are POSTed here as signed JSON (http or https)")
    events = forms.MultipleChoiceField(
        choices=Event.choices, required=False, widget=forms.CheckboxSelectMultiple,
        help_text="Tick none to receive every event, including ones added later")
