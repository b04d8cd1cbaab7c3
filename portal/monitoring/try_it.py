"""The endpoint page's "Try it" box: one row sent to the model serving the endpoint, its answer
shown with the explanation of the version that answered (as SageMaker Studio's test
inference does). The row goes through the model server like any request, so it is counted
in the endpoint's metrics.

Only endpoints the portal can reach answer here (the local backend's model servers); for
the others the box says so. The explanation is ``request_instance_explanation``'s, the
API's ``POST /versions/{id}/explain/``, with its permission check.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import get_object_or_404, render

from ops.schema import parse_input_schema
from portal.accounts.choices import Role
from portal.accounts.services import require_role
from portal.errors import DomainError, ValidationFailed
from portal.monitoring.endpoints import served_endpoints
from portal.registry.explain_views import answers_context, example_text, served_answer
from portal.registry.models import Explanation
from portal.releases import queries as release_queries
from portal.views import from_htmx

TIMEOUT = 10


def _served(request, slug, name, endpoint):
    environment = get_object_or_404(release_queries.environments_for(request.user),
                                    project__slug=slug, name=name)
    served = next((s for s in served_endpoints([environment]) if s.endpoint == endpoint), None)
    if served is None or not served.variants:
        raise Http404("nothing is served under this name here")
    return environment, served


def _inputs(served) -> list[dict]:
    """The form's fields: each input of the served model, filled with the first row of
    its explained sample (zeros without one)."""
    version = next(iter(served.variants.values()))
    names = [f.name for f in parse_input_schema(version.input_schema)]
    explanation = Explanation.objects.filter(version__in=list(served.variants.values()),
                                             status="ready").first()
    example = example_text(version, explanation).splitlines()
    values = example[1].split(",") if len(example) > 1 else ["0"] * len(names)
    return [{"name": n, "field": f"f{i}", "value": v}
            for i, (n, v) in enumerate(zip(names, values, strict=False))]


def _row(post, fields: list[dict]) -> list[float]:
    row = []
    for field in fields:
        text = (post.get(field["field"]) or "").strip()
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if value != value or value in (float("inf"), float("-inf")):
            raise ValidationFailed(f"{field['name']}: {text[:40]!r} is not a number.",
                                   field=field["name"])
        row.append(value)
    return row


def send(served, row: list[float]) -> dict:
    """The endpoint's answer for ``row``: predicted label, its probability, the variant."""
    if not served.address:
        raise ValidationFailed(f"The portal cannot send rows to a {served.environment.backend}"
                               " endpoint; call it with the API or the CLI.",
                               code="unreachable")
    body = json.dumps({"instances": [row]}).encode()
    request = urllib.request.Request(
        f"http://{served.address}/v2/models/{served.endpoint}/infer", data=body,
        headers={"Content-Type": "application/json"})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:
            document = json.loads(answer.read())
    except urllib.error.HTTPError as e:
        try:
            detail = json.loads(e.read()).get("error") or e.reason
        except ValueError:
            detail = e.reason
        raise ValidationFailed(f"The endpoint refused the row ({e.code}): {detail}",
                               code="refused") from e
    except (OSError, ValueError) as e:
        raise ValidationFailed(f"The endpoint did not answer: {e}", code="unreachable") from e
    outputs = {o["name"]: o for o in document.get("outputs", [])}
    variant = (document.get("parameters") or {}).get("variant")
    proba = outputs.get("predict_proba", {}).get("data")
    return {"prediction": (outputs.get("predict", {}).get("data") or [None])[0],
            "probability": max(proba) if proba else None, "variant": variant,
            "seconds": time.perf_counter() - started}


@login_required
def try_it(request, slug, name, endpoint):
    """GET: the box (fragment for htmx, else a page); POST: the answer and its explanation."""
    from portal.registry.services import request_instance_explanation

    environment, served = _served(request, slug, name, endpoint)
    fields = _inputs(served)
    context = {"environment": environment, "project": environment.project,
               "endpoint": endpoint, "served": served, "fields": fields}
    htmx = from_htmx(request)
    if request.method != "POST":
        template = "monitoring/inc/try_it.html" if htmx else "monitoring/try_it_page.html"
        return render(request, template, context)
    answer, version = None, next(iter(served.variants.values()))
    try:
        require_role(request.user, environment.project, Role.VIEWER, "try endpoints")
        row = _row(request.POST, fields)
        answer = send(served, row)
        version = served.variants.get(answer["variant"]) or version
        item = request_instance_explanation(request.user, version, [row])
        item.refresh_from_db()
        result = answers_context(version, item, served=answer)  # polled with the answer
    except DomainError as e:  # what the endpoint answered stays shown
        result = {"error": e.detail, "version": version,
                  "served": served_answer(answer, version) if answer else None}
    if htmx:
        return render(request, "registry/inc/row_answers.html", result)
    return render(request, "monitoring/try_it_page.html", {**context, "answer": result})
