from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "portal.accounts"
    label = "accounts"
    verbose_name = "Accounts and roles"

    def ready(self):
        from portal.accounts import checks, signals  # noqa: F401 - system checks; sign-ins in the audit trail
