from django.urls import path

from portal.registry import (
    audit_views,
    compare_views,
    dataset_views,
    explain_views,
    mlflow_views,
    views,
)
from portal.retraining import model_views

app_name = "registry"

urlpatterns = [
    path("projects/", views.project_list, name="projects"),
    path("projects/new/", views.project_create, name="project-create"),
    path("p/<slug:slug>/", views.project_detail, name="project"),
    path("p/<slug:slug>/settings/", views.project_settings, name="project-settings"),
    path("p/<slug:slug>/archive/", views.project_archive, name="project-archive"),
    path("p/<slug:slug>/audit/", audit_views.project_audit, name="project-audit"),
    path("p/<slug:slug>/restore/", views.project_archive, {"restore": True},
         name="project-restore"),
    path("p/<slug:slug>/models/new/", views.model_create, name="model-create"),
    path("p/<slug:slug>/datasets/new/", views.dataset_create, name="dataset-create"),
    path("models/", views.model_list, name="models"),
    # What serves a model or a version now is the backends' word: the releases app's views
    # add it to the registry's pages, and retraining's add its rules and lineage to those.
    path("p/<slug:slug>/m/<str:name>/", model_views.model_detail, name="model"),
    path("p/<slug:slug>/m/<str:name>/versions/new/", views.version_create, name="version-create"),
    path("p/<slug:slug>/m/<str:name>/import-mlflow/", mlflow_views.mlflow_import,
         name="mlflow-import"),
    path("p/<slug:slug>/m/<str:name>/mlflow-follows/", mlflow_views.mlflow_follow,
         name="mlflow-follow"),
    path("p/<slug:slug>/m/<str:name>/mlflow-follows/<int:pk>/delete/",
         mlflow_views.mlflow_unfollow, name="mlflow-unfollow"),
    path("p/<slug:slug>/m/<str:name>/compare/", compare_views.version_compare, name="compare"),
    path("p/<slug:slug>/m/<str:name>/aliases/", views.alias_set, name="alias-set"),
    path("p/<slug:slug>/m/<str:name>/archive/", views.model_archive, name="model-archive"),
    path("p/<slug:slug>/m/<str:name>/restore/", views.model_archive, {"restore": True},
         name="model-restore"),
    path("p/<slug:slug>/m/<str:name>/v/<int:number>/", model_views.version_detail,
         name="version"),
    path("p/<slug:slug>/m/<str:name>/v/<int:number>/archive/", views.version_archive,
         name="version-archive"),
    path("p/<slug:slug>/m/<str:name>/v/<int:number>/restore/", views.version_archive,
         {"restore": True}, name="version-restore"),
    path("p/<slug:slug>/m/<str:name>/v/<int:number>/explanation/",
         explain_views.explanation_detail, name="version-explanation"),
    path("p/<slug:slug>/m/<str:name>/v/<int:number>/explain/", explain_views.explain_rows,
         name="version-explain"),
    path("p/<slug:slug>/m/<str:name>/v/<int:number>/explain/<int:pk>/",
         explain_views.explained_rows, name="version-explained"),
    path("datasets/<int:pk>/", views.dataset_detail, name="dataset"),
    path("datasets/<int:pk>/download/", dataset_views.dataset_download, name="dataset-download"),
    path("datasets/<int:pk>/archive/", views.dataset_archive, name="dataset-archive"),
    path("datasets/<int:pk>/restore/", views.dataset_archive, {"restore": True},
         name="dataset-restore"),
]
