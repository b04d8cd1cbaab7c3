from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerSplitView,
)

from portal.accounts import oidc
from portal.web.health import healthz, readyz

admin.site.site_header = "Modelgate administration"
admin.site.site_title = "Modelgate admin"

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("oidc/authenticate/", oidc.SignIn.as_view(), name="oidc-sign-in"),
    path("oidc/callback/", oidc.Callback.as_view(), name="oidc-callback"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("portal.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves Swagger UI's own script from a URL: no inline script (CSP).
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="api-redoc"),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("", include("portal.registry.urls")),
    path("", include("portal.releases.urls")),
    path("", include("portal.notifications.urls")),
    path("", include("portal.monitoring.urls")),
    path("", include("portal.experiments.urls")),
    path("", include("portal.retraining.urls")),
    path("", include("portal.accounts.urls")),
    path("", include("portal.web.urls")),
]

handler400 = "portal.web.errors.bad_request"
handler403 = "portal.web.errors.permission_denied"
handler404 = "portal.web.errors.not_found"
handler500 = "portal.web.errors.server_error"
