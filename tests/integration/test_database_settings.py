"""How the portal connects to PostgreSQL: prepared statements with generic plans."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from django.db import connection

pytestmark = pytest.mark.integration

SHOW_OPTIONS = ("import django, json; django.setup(); from django.conf import settings; "
                "print(json.dumps(settings.DATABASES['default'].get('OPTIONS', {})))")


def _options(**env) -> dict:
    answer = subprocess.run(
        [sys.executable, "-c", SHOW_OPTIONS], capture_output=True, text=True, check=True,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "portal.settings", **env})
    return json.loads(answer.stdout.strip().splitlines()[-1])


@pytest.mark.django_db
def test_connections_use_generic_plans():
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only")
    with connection.cursor() as cursor:
        cursor.execute("SHOW plan_cache_mode")
        assert cursor.fetchone()[0] == "force_generic_plan"


def test_url_options_are_kept_and_generic_plans_can_be_turned_off():
    url = "postgres://u@db.example:5432/portal?options=-c%20search_path%3Dportal"
    options = _options(DATABASE_URL=url)
    assert options["options"] == "-c search_path=portal -c plan_cache_mode=force_generic_plan"
    assert options["prepare_threshold"] == 5
    options = _options(DATABASE_URL=url, MODELGATE_DB_GENERIC_PLANS="false")
    assert options["options"] == "-c search_path=portal"
    assert "prepare_threshold" not in _options(DATABASE_URL=url,
                                               MODELGATE_DB_PREPARED_STATEMENTS="false")
