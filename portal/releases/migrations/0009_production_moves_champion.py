"""Existing environments named production move the champion alias on a successful release,
as new ones do (``portal.releases.release_alias.DEFAULT_RELEASE_ALIASES``)."""

from django.db import migrations

# A copy: migrations never import the code they outlive.
DEFAULTS = {"production": "champion"}


def set_defaults(apps, schema_editor):
    Environment = apps.get_model("releases", "Environment")
    for name, alias in DEFAULTS.items():
        Environment.objects.filter(name=name, release_alias="").update(release_alias=alias)


def clear_defaults(apps, schema_editor):
    Environment = apps.get_model("releases", "Environment")
    for name, alias in DEFAULTS.items():
        Environment.objects.filter(name=name, release_alias=alias).update(release_alias="")


class Migration(migrations.Migration):

    dependencies = [
        ("releases", "0008_environment_release_alias"),
    ]

    operations = [
        migrations.RunPython(set_defaults, clear_defaults),
    ]
