from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "portal.monitoring"
    label = "monitoring"
    verbose_name = "Monitoring"

    def ready(self):
        from portal.monitoring import checks  # noqa: F401  (registers system checks)
        from portal.monitoring.multimodel import endpoint_section
        from portal.releases.multimodel_views import add_section

        # A multi-model endpoint's page shows its members' drift and its alerts.
        add_section("monitoring", endpoint_section)
