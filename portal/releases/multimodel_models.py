"""Multi-model endpoints (decision 68): many registered models served by one model-server
process of an environment, each member a model with its alias (followed) or a pinned
version. Imported by ``portal.releases.models``."""

from django.conf import settings
from django.db import models

from portal.registry.models import ModelVersion, name_validator


class MultiModelEndpoint(models.Model):
    """One multi-model server of an environment and its memory budget.

    ``generation`` is bumped by every change of members or settings (under a row lock), so
    the catalog a worker applies is fenced like every plan (decision 51); ``applied`` is the
    generation the backend last accepted."""

    environment = models.ForeignKey("releases.Environment", on_delete=models.PROTECT,
                                    related_name="multimodel_endpoints")
    name = models.CharField(max_length=64, validators=[name_validator])
    memory_budget_mb = models.PositiveIntegerField(
        help_text="Memory the server may fill with loaded models; the least recently used "
                  "model is evicted to make room.")
    top_models = models.PositiveSmallIntegerField(
        default=20, help_text="Models by traffic that keep their own metric label; the rest "
                              "are counted as one.")
    generation = models.PositiveIntegerField(default=1)
    applied = models.PositiveIntegerField(default=0)
    status_detail = models.TextField(blank=True)
    port = models.PositiveIntegerField(null=True, blank=True, unique=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        app_label = "releases"
        ordering = ["environment_id", "name"]
        constraints = [
            models.UniqueConstraint(fields=["environment", "name"],
                                    name="multimodel_endpoint_unique_name"),
        ]

    def __str__(self):
        return f"{self.environment} {self.name}"

    @property
    def memory_budget(self) -> int:
        return self.memory_budget_mb * 1024 * 1024

    @property
    def backend_endpoint(self) -> str:
        """The endpoint's name on the platform: unique across projects (decision 44)."""
        return f"mme-{self.name}-env-{self.environment_id}"


class MultiModelMember(models.Model):
    """A registered model served by a multi-model endpoint, under its own name."""

    endpoint = models.ForeignKey(MultiModelEndpoint, on_delete=models.CASCADE,
                                 related_name="members")
    model = models.ForeignKey("registry.RegisteredModel", on_delete=models.PROTECT,
                              related_name="+")
    alias = models.CharField(max_length=64, blank=True, validators=[name_validator],
                             help_text="Serve the version this alias points at (followed)")
    version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.PROTECT,
                                related_name="+", help_text="Or serve this version")
    # What the endpoint's server serves for it: the version its catalog resolved to when it
    # was added, then what each applied catalog held (None: that catalog listed it unready).
    # An alias that moved since serves its old version until the new catalog is applied.
    served_version = models.ForeignKey(ModelVersion, null=True, blank=True,
                                       on_delete=models.SET_NULL, related_name="+",
                                       help_text="The version the applied catalog holds")
    memory_bytes = models.BigIntegerField(
        help_text="What the model is accounted for in the budget (the stated estimate)")
    added_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                 on_delete=models.SET_NULL, related_name="+")
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        app_label = "releases"
        ordering = ["model__name"]
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "model"],
                                    name="multimodel_member_unique_model"),
            models.CheckConstraint(
                condition=(models.Q(alias="", version__isnull=False)
                           | (~models.Q(alias="") & models.Q(version__isnull=True))),
                name="multimodel_member_alias_or_version"),
        ]

    def __str__(self):
        return f"{self.model.name}@{self.alias or self.version_id}"
