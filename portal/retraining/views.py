"""Retraining pages: a model's rules (added, paused and deleted from its page) and a
trigger's evidence and state."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_POST

from portal.accounts.choices import Role
from portal.accounts.services import require_role
from portal.registry.views import _model
from portal.retraining import forms, queries, services
from portal.views import handle_action, submit_form


def _rule(request, slug, name, pk):
    return get_object_or_404(queries.rules_for(request.user), model__project__slug=slug,
                             model__name=name, pk=pk)


@login_required
def rule_create(request, slug, name):
    model = _model(request, slug, name)
    require_role(request.user, model.project, Role.CONTRIBUTOR, "manage retraining rules")
    form = forms.RuleForm(request.POST or None, model=model)
    made = submit_form(request, form,
                       lambda data: services.create_rule(request.user, model, **data))
    if made:
        rule, secret = made
        response = render(request, "retraining/rule_created.html", {
            "rule": rule, "secret": secret, "model": model, "project": model.project})
        response["Cache-Control"] = "no-store"  # the secret, shown once: keep no copy
        return response
    return render(request, "registry/form.html", {
        "form": form, "title": f"New retraining rule of {model.name}", "submit": "Add rule",
        "project": model.project, "model": model,
        "intro": "When the condition holds, a trigger starts a training run on the target with "
                 "the evidence (the alert, the drifted features and their statistics, the "
                 "window, the serving version): once per incident, at most once per cooldown."})


@login_required
@require_POST
def rule_toggle(request, slug, name, pk):
    rule = _rule(request, slug, name, pk)
    return handle_action(
        request, lambda: services.update_rule(request.user, rule, active=not rule.active),
        success=lambda r: f"Rule {r.name} {'resumed' if r.active else 'paused'}.",
        redirect_to=rule.model)


@login_required
@require_POST
def rule_delete(request, slug, name, pk):
    rule = _rule(request, slug, name, pk)
    model = rule.model
    return handle_action(request, lambda: services.delete_rule(request.user, rule),
                         success=f"Rule {rule.name} deleted; its triggers stay listed.",
                         redirect_to=model)


@login_required
def trigger_detail(request, pk):
    trigger = get_object_or_404(queries.triggers_for(request.user), pk=pk)
    return render(request, "retraining/trigger_detail.html", {
        "trigger": trigger, "model": trigger.model, "project": trigger.model.project,
        "versions": [link.version for link in trigger.versions.all()],
        "attempts": queries.attempts_of(trigger)})
