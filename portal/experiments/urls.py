from django.urls import path

from portal.experiments import views
from portal.releases import experiment_views

app_name = "experiments"

urlpatterns = [
    path("experiments/", views.experiment_list, name="experiments"),
    path("experiments/<int:pk>/", views.experiment_detail, name="experiment"),
    # A decision acts on the A/B test's rollout: its view is the releases app's.
    path("experiments/<int:pk>/decide/", experiment_views.experiment_decide,
         name="experiment-decide"),
]
