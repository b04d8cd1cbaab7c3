from django.urls import include, path
from rest_framework.routers import DefaultRouter

from portal.accounts.api.users import UserViewSet
from portal.accounts.api.views import (
    ApiTokenViewSet,
    AuditEventViewSet,
    InvitationViewSet,
    MembershipViewSet,
    TokenLoginView,
)
from portal.api.about import AboutView
from portal.api.permissions import APPROVE, READ, ROUTE_SCOPES, WRITE
from portal.experiments.api.views import FeedbackView
from portal.monitoring.api.incidents import IncidentViewSet
from portal.monitoring.api.views import (
    AlertmanagerReceiver,
    AlertViewSet,
    RegisteredModelViewSet,  # the registry's, with each model's monitoring thresholds
)
from portal.notifications.api.views import WebhookViewSet
from portal.registry.api.mlflow import (
    MlflowFollowViewSet,
    MlflowImportViewSet,
    MlflowWebhookReceiver,
)
from portal.registry.api.views import DatasetViewSet, ProjectViewSet, alias_scope
from portal.releases.api.experiments import ExperimentViewSet  # with decide
from portal.releases.api.multimodel import MultiModelEndpointViewSet  # decision 68
from portal.releases.api.registry import ModelVersionViewSet  # the registry's, with serving
from portal.releases.api.views import (
    ApprovalRequestViewSet,
    DeploymentViewSet,
    EnvironmentViewSet,
)
from portal.retraining.api.views import RetrainingRuleViewSet, RetrainingTriggerViewSet

app_name = "api"

router = DefaultRouter()
router.register("projects", ProjectViewSet, basename="project")
router.register("memberships", MembershipViewSet, basename="membership")
router.register("invitations", InvitationViewSet, basename="invitation")
router.register("models", RegisteredModelViewSet, basename="model")
router.register("versions", ModelVersionViewSet, basename="version")
router.register("datasets", DatasetViewSet, basename="dataset")
router.register("mlflow-imports", MlflowImportViewSet, basename="mlflow-import")
router.register("mlflow-follows", MlflowFollowViewSet, basename="mlflow-follow")
router.register("environments", EnvironmentViewSet, basename="environment")
router.register("multimodel-endpoints", MultiModelEndpointViewSet,
                basename="multimodel-endpoint")
router.register("approval-requests", ApprovalRequestViewSet, basename="approval-request")
router.register("deployments", DeploymentViewSet, basename="deployment")
router.register("webhooks", WebhookViewSet, basename="webhook")
router.register("retraining-rules", RetrainingRuleViewSet, basename="retraining-rule")
router.register("retraining-triggers", RetrainingTriggerViewSet,
                basename="retraining-trigger")
router.register("alerts", AlertViewSet, basename="alert")
router.register("incidents", IncidentViewSet, basename="incident")
router.register("experiments", ExperimentViewSet, basename="experiment")
router.register("tokens", ApiTokenViewSet, basename="token")
router.register("audit-events", AuditEventViewSet, basename="audit-event")
router.register("users", UserViewSet, basename="user")

urlpatterns = [
    path("auth/token/", TokenLoginView.as_view(), name="token-login"),
    path("alerts/alertmanager/", AlertmanagerReceiver.as_view(), name="alertmanager"),
    path("feedback/", FeedbackView.as_view(), name="feedback"),
    # MLflow's webhooks, signed with the follow's secret (decision 66).
    path("mlflow-follows/<int:pk>/webhook/", MlflowWebhookReceiver.as_view(),
         name="mlflow-webhook"),
    path("about/", AboutView.as_view(), name="about"),
    path("", include(router.urls)),
]

# The token scope each route's actions need (portal.api.permissions.ROUTE_SCOPES, checked
# by portal.accounts.permissions.TokenScopes), next to the routes.
ROUTE_SCOPES.update({
    # Archive and restore (decision 58): the roles decide who (owners restore).
    "project": {"list": READ, "retrieve": READ, "create": WRITE, "partial_update": WRITE,
                "archive": WRITE, "restore": WRITE},
    "membership": {"list": READ, "retrieve": READ, "partial_update": WRITE, "destroy": WRITE},
    # Members join by invitation: owners invite and revoke, the invited person answers.
    "invitation": {"list": READ, "retrieve": READ, "create": WRITE, "revoke": WRITE,
                   "accept": WRITE, "decline": WRITE},
    "model": {"list": READ, "retrieve": READ, "create": WRITE, "partial_update": WRITE,
              "versions": WRITE, "aliases": READ, "alias": alias_scope,
              "monitoring": APPROVE, "archive": WRITE, "restore": WRITE,
              "import_mlflow": WRITE},
    "version": {"list": READ, "retrieve": READ, "artifact": READ, "lineage": READ,
                "explanation": READ, "explain": WRITE, "explain_result": READ,
                "archive": WRITE, "restore": WRITE, "evaluations": READ},
    "dataset": {"list": READ, "retrieve": READ, "create": WRITE, "archive": WRITE,
                "restore": WRITE},
    "mlflow-import": {"list": READ, "retrieve": READ},
    "mlflow-follow": {"list": READ, "retrieve": READ, "create": WRITE, "destroy": WRITE},
    "environment": {"list": READ, "retrieve": READ, "create": WRITE, "partial_update": WRITE,
                    "archive": WRITE, "restore": WRITE},
    "multimodel-endpoint": {"list": READ, "retrieve": READ, "create": WRITE,
                            "members": WRITE, "member": WRITE, "apply": WRITE},
    "approval-request": {"list": READ, "retrieve": READ, "create": WRITE, "cancel": WRITE,
                         "approve": APPROVE, "reject": APPROVE},
    "deployment": {"list": READ, "retrieve": READ, "pause": WRITE, "rollback": WRITE,
                   "resume": APPROVE, "promote": APPROVE, "keep": APPROVE},
    "webhook": {"list": READ, "retrieve": READ, "create": WRITE, "partial_update": WRITE,
                "destroy": WRITE, "deliveries": READ, "test": WRITE},
    "alert": {"list": READ, "retrieve": READ, "acknowledge": WRITE, "silence": WRITE,
              "unsilence": WRITE},
    "incident": {"list": READ, "retrieve": READ, "acknowledge": WRITE, "silence": WRITE,
                 "unsilence": WRITE},
    "experiment": {"list": READ, "retrieve": READ, "readout": READ, "decide": APPROVE},
    "retraining-rule": {"list": READ, "retrieve": READ, "create": WRITE,
                        "partial_update": WRITE, "destroy": WRITE},
    "retraining-trigger": {"list": READ, "retrieve": READ},
    # Tokens also have a ceiling: a token only creates tokens with scopes it holds
    # (accounts.services.create_token).
    "token": {"list": READ, "retrieve": READ, "create": WRITE, "destroy": WRITE},
    "audit-event": {"list": READ, "retrieve": READ},
    # Staff only, whatever the scope (portal.accounts.api.users).
    "user": {"list": READ, "retrieve": READ, "create": WRITE, "deactivate": WRITE},
    "feedback": {"post": WRITE},
    "api-root": {"get": READ},
    "about": {"get": READ},  # what the server runs (modelgate versions)
})
