from django.urls import path

from portal.releases import multimodel_views, rollout_views, views

app_name = "releases"

urlpatterns = [
    path("releases/", views.queue, name="queue"),
    path("releases/<int:pk>/", views.request_detail, name="request"),
    path("releases/<int:pk>/review/", views.request_review, name="request-review"),
    path("p/<slug:slug>/m/<str:name>/v/<int:number>/release/", views.request_create,
         name="request-create"),
    path("rollouts/", rollout_views.rollout_list, name="rollouts"),
    path("deployments/<int:pk>/", views.deployment_detail, name="deployment"),
    path("deployments/<int:pk>/command/", views.deployment_command, name="deployment-command"),
    path("p/<slug:slug>/environments/", views.environment_list, name="environments"),
    path("p/<slug:slug>/environments/new/", views.environment_create, name="environment-create"),
    path("p/<slug:slug>/environments/<str:name>/", views.environment_detail, name="environment"),
    path("p/<slug:slug>/environments/<str:name>/edit/", views.environment_edit,
         name="environment-edit"),
    path("p/<slug:slug>/environments/<str:name>/archive/", views.environment_archive,
         name="environment-archive"),
    path("p/<slug:slug>/environments/<str:name>/restore/", views.environment_archive,
         {"restore": True}, name="environment-restore"),
    # Multi-model endpoints (decision 68).
    path("p/<slug:slug>/environments/<str:name>/multimodel/new/",
         multimodel_views.endpoint_create, name="multimodel-create"),
    path("p/<slug:slug>/environments/<str:name>/multimodel/<str:endpoint>/",
         multimodel_views.endpoint_detail, name="multimodel"),
    path("p/<slug:slug>/environments/<str:name>/multimodel/<str:endpoint>/members/"
         "<int:member_id>/remove/", multimodel_views.member_remove,
         name="multimodel-member-remove"),
]
