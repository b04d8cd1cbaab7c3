"""Release pages: the approvals queue, a request's page, environments."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from portal.accounts.choices import Role
from portal.accounts.services import has_role, require_role
from portal.errors import DomainError
from portal.registry import queries as registry_queries
from portal.registry.views import _project, archive_action, archive_context
from portal.releases import (
    comparison,
    deployments,
    forms,
    outcomes,
    queries,
    rollout_page,
    services,
    serving,
)
from portal.releases.choices import RequestStatus
from portal.views import handle_action, handle_form


def _on_its_field(action):
    """``action``, whose refusal naming a path inside a form's field (``settings.namespace``,
    ``strategy_params.steps[0].bake``: the API's field) is shown on that field."""
    def run(data):
        try:
            return action(data)
        except DomainError as e:
            e.field = e.field.split(".", 1)[0] if e.field else e.field
            raise
    return run


@login_required
def queue(request):
    status = request.GET.get("status", RequestStatus.OPEN)
    requests = queries.requests_for(request.user)
    if status != "all":
        requests = requests.filter(status=status)
    return render(request, "releases/queue.html", {
        "requests": requests[:200], "status": status, "statuses": RequestStatus.choices})


@login_required
def request_detail(request, pk):
    approval = get_object_or_404(queries.requests_for(request.user), pk=pk)
    project = approval.environment.project
    counted = services.approvals_counted(approval)
    can_review = (has_role(request.user, project, Role.APPROVER)
                  and approval.requested_by_id != request.user.pk
                  and approval.status == RequestStatus.OPEN
                  and not any(r.reviewer_id == request.user.pk for r in approval.reviews.all()
                              if approval.judged_at is None
                              or r.created_at >= approval.judged_at))
    return render(request, "releases/request_detail.html", {
        "approval": approval, "project": project, "version": approval.version,
        "deltas": comparison.metric_deltas(approval),
        "approvals": len(counted), "can_review": can_review, "form": forms.ReviewForm(),
        "own_request": approval.requested_by_id == request.user.pk,
        "outcome": outcomes.rollout_outcome(approval),
    })


@login_required
@require_POST
def request_review(request, pk):
    approval = get_object_or_404(queries.requests_for(request.user), pk=pk)
    form = forms.ReviewForm(request.POST)
    decision = request.POST.get("decision")
    if not form.is_valid():
        messages.error(request, "Write a comment: every decision needs a reason.")
        return redirect(approval)
    return handle_action(
        request,
        lambda: services.review(
            request.user, approval, decision, form.cleaned_data["comment"],
            acknowledge_breaking_change=form.cleaned_data["acknowledge_breaking_change"]),
        success=lambda reviewed: f"Your decision is recorded; the request is "
                                 f"{reviewed.get_status_display().lower()}.",
        redirect_to=approval)


@login_required
def request_create(request, slug, name, number):
    version = get_object_or_404(registry_queries.versions_for(request.user),
                                model__project__slug=slug, model__name=name, number=number)
    project = version.model.project
    require_role(request.user, project, Role.CONTRIBUTOR, "request releases")
    form = forms.RequestForm(request.POST or None, project=project, task=version.model.task)

    def ask(data):
        try:
            return services.request_approval(
                request.user, version, data["environment"], strategy=data["strategy"],
                strategy_params=data["strategy_params"], reason=data["reason"],
                breaking_change=data["breaking_change"])
        except DomainError as e:  # on the field the parameter came from
            e.field = form.field_of(e.field, e.detail)
            raise

    return handle_form(
        request, form, ask, success="Release requested; approvers can now review it.",
    ) or render(request, "releases/request_form.html", {
        "form": form, "title": f"Request release of {version.model.name} {version.display_name}",
        "project": project, "model": version.model, "version": version})


@login_required
def environment_list(request, slug):
    project = _project(request, slug)
    environments = queries.environments_for(request.user).filter(project=project)
    return render(request, "releases/environment_list.html", {
        "project": project,
        "environments": environments.filter(archived_at__isnull=True),
        "archived_environments": environments.filter(archived_at__isnull=False),
        "is_owner": has_role(request.user, project, Role.OWNER)})


@login_required
def environment_create(request, slug):
    project = _project(request, slug)
    require_role(request.user, project, Role.OWNER, "create environments")
    form = forms.EnvironmentForm(request.POST or None)
    return handle_form(
        request, form,
        _on_its_field(lambda data: services.create_environment(request.user, project, **data)),
        success="Environment created.",
        redirect_to=lambda _: reverse("releases:environments", args=[slug]),
    ) or render(request, "registry/form.html", {
        "form": form, "title": f"New environment in {project.name}", "submit": "Create",
        "project": project})


@login_required
def environment_detail(request, slug, name):
    environment = get_object_or_404(queries.environments_for(request.user),
                                    project__slug=slug, name=name)
    history = queries.deployments_for(request.user).filter(environment=environment)
    return render(request, "releases/environment_detail.html", {
        "environment": environment, "project": environment.project,
        "serving": serving.serving_now(environment), "history": history[:100],
        "requests": queries.requests_for(request.user).filter(environment=environment)[:50],
        "is_owner": has_role(request.user, environment.project, Role.OWNER),
        **archive_context(request.user, environment, "releases:environment", slug, name)})


@login_required
def environment_edit(request, slug, name):
    environment = get_object_or_404(queries.environments_for(request.user),
                                    project__slug=slug, name=name)
    require_role(request.user, environment.project, Role.OWNER, "change environments")
    form = forms.EnvironmentEditForm(request.POST or None, environment=environment)
    return handle_form(
        request, form,
        _on_its_field(lambda data: services.update_environment(request.user, environment,
                                                               **data)),
        success=f"Environment {environment.name} saved.", redirect_to=environment,
    ) or render(request, "registry/form.html", {
        "form": form, "title": f"Edit environment {environment.name}", "submit": "Save",
        "project": environment.project,
        "intro": "Gates and approvals apply to requests made from now on, and to reviews "
                 "of open ones; the audit trail keeps what they were."})


@login_required
@require_POST
def environment_archive(request, slug, name, restore=False):
    return archive_action(request, get_object_or_404(queries.environments_for(request.user),
                                                     project__slug=slug, name=name), restore)


@login_required
def deployment_detail(request, pk):
    deployment = get_object_or_404(queries.deployments_for(request.user)
                                   .select_related("model__project", "experiment"), pk=pk)
    registry_queries.attach_model(deployment.model, deployment.candidate, deployment.stable)
    project = deployment.environment.project
    events = list(deployment.events.all())
    active = deployment.status in deployments.ACTIVE
    template = ("partials/deployment_progress.html" if request.GET.get("partial")
                else "releases/deployment_detail.html")
    return render(request, template, {
        "deployment": deployment, "project": project, "events": events[::-1],
        **rollout_page.context(deployment, events, active), "active": active,
        "can_operate": active and has_role(request.user, project, Role.CONTRIBUTOR),
        "can_approve": active and has_role(request.user, project, Role.APPROVER),
        "state": deployment.state,
    })


@login_required
@require_POST
def deployment_command(request, pk):
    deployment = get_object_or_404(queries.deployments_for(request.user), pk=pk)
    name = request.POST.get("command", "")
    done = {"pause": "Paused: traffic stays as it is until someone resumes.",
            "resume": "Resumed.", "promote": "Promoted: the candidate serves all traffic.",
            "rollback": "Rolled back: the stable version serves all traffic.",
            "keep": "Kept the stable version; the candidate is removed."}
    comment = request.POST.get("comment", "").strip()
    if name in ("promote", "rollback") and not comment:
        messages.error(request, f"Say why you {name}: the reason is recorded in the audit "
                                "trail and the rollout's log.")
        return redirect(deployment)
    return handle_action(request, lambda: deployments.command(request.user, deployment, name,
                                                              comment=comment),
                         success=done.get(name, "Done."), redirect_to=deployment)
