# One live import per MLflow source and model; a follow names an alias or a tag (decision 66).

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('registry', '0012_mlflow_imports'),
    ]

    operations = [
        migrations.AddConstraint(
            model_name='mlflowfollow',
            constraint=models.UniqueConstraint(fields=('model', 'tracking_uri', 'registered_name', 'alias', 'tag_key', 'tag_value'), name='mlflow_follow_unique'),
        ),
        migrations.AddConstraint(
            model_name='mlflowfollow',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(models.Q(('alias', ''), _negated=True), ('tag_key', '')), models.Q(('alias', ''), models.Q(('tag_key', ''), _negated=True)), _connector='OR'), name='mlflow_follow_alias_or_tag'),
        ),
        migrations.AddConstraint(
            model_name='mlflowimport',
            constraint=models.UniqueConstraint(condition=models.Q(('status', 'failed'), _negated=True), fields=('model', 'tracking_uri', 'source'), name='mlflow_import_unique_live'),
        ),
    ]
