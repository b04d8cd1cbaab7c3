"""Owners could allow pickle artifacts for their own projects until now; that is staff's
decision on instances whose operator allows pickles at all (decision 43). Every flag set
before is cleared: staff allow again the projects they vouch for."""

from django.db import migrations


def clear_flags(apps, schema_editor):
    Project = apps.get_model("registry", "Project")
    Project.objects.filter(allow_unsafe_artifacts=True).update(allow_unsafe_artifacts=False)


class Migration(migrations.Migration):
    dependencies = [("registry", "0004_version_converted_artifact")]

    operations = [migrations.RunPython(clear_flags, migrations.RunPython.noop)]
