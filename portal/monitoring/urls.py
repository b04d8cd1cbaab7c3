from django.urls import path

from portal.monitoring import try_it, views

app_name = "monitoring"

urlpatterns = [
    path("metrics", views.metrics, name="metrics"),
    path("alerts/", views.alert_list, name="alerts"),
    path("alerts/<int:pk>/", views.alert_detail, name="alert"),
    path("alerts/<int:pk>/<str:action>/", views.alert_action, name="alert-action"),
    # pk: the id of any alert of the incident (an incident is named by its alerts').
    path("alerts/<int:pk>/incident/<str:action>/", views.incident_action,
         name="incident-action"),
    # path: an endpoint named by an alert's label may hold "/" (it reversed to a 500 before).
    path("p/<slug:slug>/environments/<str:name>/try/<path:endpoint>/", try_it.try_it,
         name="endpoint-try"),
    path("p/<slug:slug>/environments/<str:name>/monitoring/<path:endpoint>/",
         views.endpoint_monitoring, name="endpoint"),
]
