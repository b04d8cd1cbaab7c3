from django.urls import path

from portal.experiments import views

app_name = "experiments"

urlpatterns = [
    path("experiments/", views.experiment_list, name="experiments"),
    path("experiments/<int:pk>/", views.experiment_detail, name="experiment"),
    path("experiments/<int:pk>/decide/", views.experiment_decide, name="experiment-decide"),
]
