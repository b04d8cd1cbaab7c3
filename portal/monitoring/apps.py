from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "portal.monitoring"
    label = "monitoring"
    verbose_name = "Monitoring"

    def ready(self):
        from portal.monitoring import checks  # noqa: F401  (registers system checks)
