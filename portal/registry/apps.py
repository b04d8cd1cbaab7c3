from django.apps import AppConfig


class RegistryConfig(AppConfig):
    name = "portal.registry"
    label = "registry"
    verbose_name = "Model registry"

    def ready(self):
        from portal.registry import checks  # noqa: F401  (registers system checks)
