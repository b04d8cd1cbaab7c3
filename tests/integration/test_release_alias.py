"""A release that succeeds moves its environment's alias (production: champion) to the
version released, in the transaction that records the success; one that does not succeed
moves nothing. Real model servers on the local backend, as in test_deployments.py."""

from __future__ import annotations

import pytest

from portal.audit.models import AuditEvent
from portal.errors import ValidationFailed
from portal.registry import services as registry
from portal.registry.models import Alias
from portal.releases import deployments
from portal.releases import services as releases
from tests.integration.local_fixtures import free_port
from tests.integration.test_deployments import (  # noqa: F401 - the world fixture
    FAST_CANARY,
    Traffic,
    _release,
    _version,
    drive,
    world,
)
from tests.portal_fixtures import random_classifier_bytes

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _points_at(model, name: str) -> int | None:
    alias = Alias.objects.filter(model=model, name=name).select_related("version").first()
    return alias.version.number if alias else None


def test_a_first_release_to_production_moves_the_champion(world):  # noqa: F811
    assert world["env"].release_alias == "champion"  # production's default
    assert _points_at(world["model"], "champion") == world["v1"].number
    deployment = world["v1"].approval_requests.get().deployment
    moved = AuditEvent.objects.get(action="alias.set")
    assert moved.actor is None and moved.project_id == world["env"].project_id
    assert moved.changes == {"version": {"from": None, "to": world["v1"].number},
                             "via": f"deployment {deployment.pk}"}
    logged = deployment.events.get(event="release_alias")
    assert logged.reason == f"the champion alias points at v{world['v1'].number}"


def test_a_canary_that_succeeds_moves_the_champion(world):  # noqa: F811
    v2 = _version(world["users"], world["model"], random_classifier_bytes(2))
    with Traffic(world["url"]):
        deployment = drive(_release(world["users"], v2, world["env"], "canary", FAST_CANARY))
    assert deployment.status == "succeeded", [e.reason for e in deployment.events.all()]
    assert _points_at(world["model"], "champion") == v2.number
    moved = AuditEvent.objects.filter(action="alias.set").order_by("-pk").first()
    assert moved.changes["version"] == {"from": world["v1"].number, "to": v2.number}
    assert moved.changes["via"] == f"deployment {deployment.pk}"


def test_a_rolled_back_release_leaves_the_champion(world):  # noqa: F811
    v2 = _version(world["users"], world["model"], random_classifier_bytes(3))
    deployment = _release(world["users"], v2, world["env"], "canary", {
        **FAST_CANARY, "steps": [{"weight": 0.5, "bake_seconds": 600},
                                 {"weight": 1.0, "bake_seconds": 1}]})
    deployments.command(world["users"]["contributor"], deployment, "rollback")
    deployment.refresh_from_db()
    assert deployment.status == "rolled_back"
    assert _points_at(world["model"], "champion") == world["v1"].number
    assert not deployment.events.filter(event="release_alias").exists()
    assert AuditEvent.objects.filter(action="alias.set").count() == 1  # v1's release only


def test_an_environment_with_no_release_alias_moves_nothing(world):  # noqa: F811
    releases.update_environment(world["users"]["owner"], world["env"], release_alias="")
    changed = AuditEvent.objects.get(action="environment.update")
    assert changed.changes == {"release_alias": {"from": "champion", "to": ""}}
    v2 = _version(world["users"], world["model"], random_classifier_bytes(4))
    deployment = drive(_release(world["users"], v2, world["env"], "direct"))
    assert deployment.status == "succeeded"
    assert _points_at(world["model"], "champion") == world["v1"].number
    assert not deployment.events.filter(event="release_alias").exists()


def test_staging_moves_the_alias_it_names(world, settings):  # noqa: F811
    port = free_port()
    settings.MODELGATE_TARGETS = {**settings.MODELGATE_TARGETS,
                                  "second": {"backend": "local", "ports": f"{port}-{port}"}}
    staging = releases.create_environment(world["users"]["owner"], world["env"].project,
                                          name="staging", target="second",
                                          release_alias="staging")
    v2 = _version(world["users"], world["model"], random_classifier_bytes(5))
    deployment = drive(_release(world["users"], v2, staging, "canary"))
    assert deployment.status == "succeeded" and deployment.strategy == "direct"  # its first
    assert _points_at(world["model"], "staging") == v2.number
    assert _points_at(world["model"], "champion") == world["v1"].number


def test_a_release_never_moves_an_alias_of_another_model(world):  # noqa: F811
    other = registry.create_model(world["users"]["owner"], world["env"].project,
                                  name="other-model", task="classification")
    with pytest.raises(ValidationFailed, match="not a version of other-model"):
        registry.move_alias_for_release(other, "champion", world["v1"], via="deployment 1")
    assert not Alias.objects.filter(model=other).exists()
