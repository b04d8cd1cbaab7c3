from django.urls import path

from portal.retraining import views

app_name = "retraining"

urlpatterns = [
    path("p/<slug:slug>/m/<str:name>/retraining/new/", views.rule_create, name="rule-create"),
    path("p/<slug:slug>/m/<str:name>/retraining/<int:pk>/toggle/", views.rule_toggle,
         name="rule-toggle"),
    path("p/<slug:slug>/m/<str:name>/retraining/<int:pk>/delete/", views.rule_delete,
         name="rule-delete"),
    path("retraining/triggers/<int:pk>/", views.trigger_detail, name="trigger"),
]
