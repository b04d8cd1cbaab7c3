from django.apps import AppConfig


class RetrainingConfig(AppConfig):
    name = "portal.retraining"
    verbose_name = "Retraining"

    def ready(self):
        from portal.retraining import checks, signals  # noqa: F401  (registers them)
