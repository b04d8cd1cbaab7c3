"""The dashboard counts a viewer's projects, not project x model rows (review of the
cheaper dashboard query)."""

import pytest

from portal.registry import services

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def test_the_dashboard_counts_projects_not_models(client, users, clf):
    for n in range(2):
        services.create_model(users["contributor"], clf.project, name=f"other-{n}",
                              task="classification")
    client.force_login(users["viewer"])
    page = client.get("/")
    assert page.context["model_count"] == 3
    assert page.context["project_count"] == 1
