from django.urls import path

from portal.notifications import views

app_name = "notifications"

urlpatterns = [
    path("p/<slug:slug>/webhooks/", views.webhook_list, name="webhooks"),
    path("p/<slug:slug>/webhooks/<int:pk>/", views.webhook_detail, name="webhook"),
    path("p/<slug:slug>/webhooks/<int:pk>/test/", views.webhook_test, name="webhook-test"),
    path("p/<slug:slug>/webhooks/<int:pk>/toggle/", views.webhook_toggle,
         name="webhook-toggle"),
    path("p/<slug:slug>/webhooks/<int:pk>/delete/", views.webhook_delete,
         name="webhook-delete"),
]
