from django.urls import include, path
from rest_framework.routers import DefaultRouter

from portal.accounts.api.views import ApiTokenViewSet, InvitationViewSet, MembershipViewSet
from portal.api.views import TokenLoginView
from portal.audit.api.views import AuditEventViewSet
from portal.experiments.api.views import ExperimentViewSet, FeedbackView
from portal.monitoring.api.views import AlertmanagerReceiver, AlertViewSet
from portal.notifications.api.views import WebhookViewSet
from portal.registry.api.views import (
    DatasetViewSet,
    ModelVersionViewSet,
    ProjectViewSet,
    RegisteredModelViewSet,
)
from portal.releases.api.views import (
    ApprovalRequestViewSet,
    DeploymentViewSet,
    EnvironmentViewSet,
)

app_name = "api"

router = DefaultRouter()
router.register("projects", ProjectViewSet, basename="project")
router.register("memberships", MembershipViewSet, basename="membership")
router.register("invitations", InvitationViewSet, basename="invitation")
router.register("models", RegisteredModelViewSet, basename="model")
router.register("versions", ModelVersionViewSet, basename="version")
router.register("datasets", DatasetViewSet, basename="dataset")
router.register("environments", EnvironmentViewSet, basename="environment")
router.register("approval-requests", ApprovalRequestViewSet, basename="approval-request")
router.register("deployments", DeploymentViewSet, basename="deployment")
router.register("webhooks", WebhookViewSet, basename="webhook")
router.register("alerts", AlertViewSet, basename="alert")
router.register("experiments", ExperimentViewSet, basename="experiment")
router.register("tokens", ApiTokenViewSet, basename="token")
router.register("audit-events", AuditEventViewSet, basename="audit-event")

urlpatterns = [
    path("auth/token/", TokenLoginView.as_view(), name="token-login"),
    path("alerts/alertmanager/", AlertmanagerReceiver.as_view(), name="alertmanager"),
    path("feedback/", FeedbackView.as_view(), name="feedback"),
    path("", include(router.urls)),
]
