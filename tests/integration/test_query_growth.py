"""Every page and every API read costs the same number of queries whatever the number of
rows it shows: a list that reads a related row (or a deferred column) per item costs a
query per item, which passes every other test and slows the portal as a project grows.

The permission matrix's world (one of everything) gets a helping more of everything in the
same project (versions with parents, datasets and aliases; approval requests with reviews;
rollouts with their A/B test; alerts acknowledged and silenced; webhooks with deliveries;
members, tokens, audit events); every page and API read is measured as the owner, then
again after a second helping.
"""

from __future__ import annotations

import io
import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from ops import rollout
from portal.accounts import services as accounts
from portal.accounts.models import Invitation
from portal.accounts.services import create_token
from portal.experiments import services as experiments
from portal.monitoring.models import Alert
from portal.notifications.models import Delivery, Webhook
from portal.registry import services as registry
from portal.releases import deployments
from portal.releases import services as releases
from portal.releases.models import Deployment
from tests.integration.test_permission_matrix import operations, pages, world  # noqa: F401
from tests.portal_fixtures import make_user, metadata, random_classifier_bytes


def grow(w: dict, users: dict, round_: int) -> None:
    """Another helping of every kind of row, in the same project."""
    project, clf, environment = w["project"], w["model"], w["env"]
    owner, contributor, approver = users["owner"], users["contributor"], users["approver"]
    dataset = registry.upload_dataset(contributor, project, name=f"more-{round_}",
                                      file=io.BytesIO(f"a,b,target\n{round_},2,0\n3,4,1\n"
                                                      .encode()),
                                      filename="more.csv", target="target")
    versions = []
    for seed in (10 * round_ + 1, 10 * round_ + 2, 10 * round_ + 3):
        versions.append(registry.validate_version(registry.register_version(
            contributor, clf, io.BytesIO(random_classifier_bytes(seed)),
            metadata(dataset=w["dataset"].pk if seed % 2 else dataset.pk,
                     parent=(versions[-1] if versions else w["version"]).number,
                     tags=[f"t{seed}", "more"])).pk))
        registry.set_alias(approver, clf, f"extra-{seed}", versions[-1])
    for version in versions:
        request = releases.request_approval(contributor, version, environment,
                                            strategy="canary")
        releases.review(approver, request, "approve", "fine")
        releases.review(owner, request, "approve", "also fine")
    spec = deployments._spec("ab", {"split": 0.5, "duration_seconds": 3600}, clf.name,
                             versions[0], w["version"])
    for status in ("progressing", "paused", "awaiting_decision"):
        state = rollout.RolloutState(status=rollout.Status(status), generation=2,
                                     base_generation=1, step_started_at=time.time())
        deployment = Deployment.objects.create(
            environment=environment, model=clf, candidate=versions[0], stable=w["version"],
            endpoint=clf.name, strategy="ab", spec=spec.to_dict(), state=state.to_dict(),
            status=status)
    experiments.create_for(deployment, generation=2 + round_)  # the world's holds 2
    now = timezone.now()
    for i, (acknowledged, silenced) in enumerate(((owner, None), (None, approver),
                                                  (contributor, owner))):
        Alert.objects.create(
            fingerprint=f"{round_}{i}" * 32, name="ModelgateLatencyHigh", severity="critical",
            state="firing" if i else "resolved", source="prometheus", project=project,
            model=clf, environment=environment, endpoint=clf.name, variant="candidate",
            starts_at=now, ends_at=None if i else now, last_seen_at=now,
            acknowledged_by=acknowledged, acknowledged_at=now if acknowledged else None,
            silenced_by=silenced, silenced_until=now + timezone.timedelta(hours=1)
            if silenced else None)
    for name in (f"pager-{round_}", f"chat-{round_}"):
        webhook = Webhook.objects.create(project=project, name=name, secret="s" * 32,
                                         url=f"http://127.0.0.1:9/{name}",
                                         events=["release.approved"])
        for event in ("release.approved", "release.rejected"):
            Delivery.objects.create(webhook=webhook, event=event, payload={"n": 1})
    Delivery.objects.create(webhook=w["webhook"], event="release.approved", payload={})
    for username in (f"mo-{round_}", f"ny-{round_}"):
        member = make_user(username)
        accounts.invite(owner, project, username, "viewer")
        accounts.accept_invitation(member, Invitation.objects.get(user=member))
    # Open invitations the owner sees on the members page (to an account and to none), and
    # invitations to the owner, from a project of someone else's.
    make_user(f"pending-{round_}")
    for username in (f"pending-{round_}", f"nobody-{round_}"):
        accounts.invite(owner, project, username, "contributor")
    elsewhere = registry.create_project(users["outsider"], name=f"Elsewhere {round_}",
                                        slug=f"elsewhere-{round_}")
    users["outsider"].__dict__.pop("_modelgate_roles", None)  # cached before "elsewhere-N"
    accounts.invite(users["outsider"], elsewhere, owner.username, "viewer")
    for label in ("ci", "laptop"):
        create_token(owner, label)


def costs(client, paths) -> dict[str, int]:
    counts = {}
    for path in paths:
        with CaptureQueriesContext(connection) as queries:
            answer = client.get(path)
        assert answer.status_code in (200, 404), (path, answer.status_code)
        counts[path] = len(queries.captured_queries)
    return counts


@pytest.mark.django_db(transaction=True)
def test_no_page_or_api_read_costs_a_query_per_row(world, client, api, users,  # noqa: F811
                                                    settings):
    """Measured after one helping (so every kind of related row exists, and every prefetch
    runs) and again after a second; the A/B readout computed each time, not from the cache."""
    settings.MODELGATE_AB_READOUT_SECONDS = 0
    client.force_login(users["owner"])
    owner_api = api("owner").client
    page_paths = [path for _, path, _ in pages(world)]
    api_paths = [path for method, path, body, *_ in operations(world)
                 if method == "GET" and body is None and "/artifact/" not in path]
    staff_paths = [path for path in api_paths if path.startswith("/api/v1/users/")]
    api_paths = [path for path in api_paths if path not in staff_paths]  # staff only
    staff_api = api("staff").client
    grow(world, users, 1)
    before = (costs(client, page_paths) | costs(owner_api, api_paths)
              | costs(staff_api, staff_paths))
    grow(world, users, 2)
    after = (costs(client, page_paths) | costs(owner_api, api_paths)
             | costs(staff_api, staff_paths))
    grown = {path: (before[path], after[path]) for path in before
             if after[path] > before[path]}
    assert not grown, "queries before and after the project grew: " + ", ".join(
        f"{path} {b} -> {a}" for path, (b, a) in grown.items())
