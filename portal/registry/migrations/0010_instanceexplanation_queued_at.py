from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('registry', '0009_live_version_uniqueness'),
    ]

    operations = [
        migrations.AddField(
            model_name='instanceexplanation',
            name='queued_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
