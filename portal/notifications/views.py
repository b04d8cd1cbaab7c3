"""Webhook pages: a project's webhooks (owners add and remove them) and each delivery log."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from portal.accounts.choices import Role
from portal.accounts.services import has_role, require_role
from portal.notifications import forms, queries, services
from portal.notifications.choices import DeliveryStatus
from portal.registry.views import _project
from portal.views import handle_action, submit_form


def _webhook(request, slug, pk):
    return get_object_or_404(queries.webhooks_for(request.user), project__slug=slug, pk=pk)


@login_required
def webhook_list(request, slug):
    project = _project(request, slug)
    is_owner = has_role(request.user, project, Role.OWNER)
    form = forms.WebhookForm(request.POST or None) if is_owner else None
    created, secret = None, None
    if request.method == "POST":
        require_role(request.user, project, Role.OWNER, "manage webhooks")
        made = submit_form(request, form,
                           lambda data: services.create_webhook(request.user, project, **data))
        if made:
            created, secret = made
            form = forms.WebhookForm()
    response = render(request, "notifications/webhook_list.html", {
        "project": project, "is_owner": is_owner, "form": form,
        "webhooks": queries.webhooks_for(request.user).filter(project=project),
        "new_webhook": created, "new_secret": secret,
    })
    if secret:
        response["Cache-Control"] = "no-store"  # the secret, shown once: keep no copy
    return response


@login_required
def webhook_detail(request, slug, pk):
    webhook = _webhook(request, slug, pk)
    status = request.GET.get("status", "")
    deliveries = queries.deliveries_of(webhook)
    if status in DeliveryStatus.values:
        deliveries = deliveries.filter(status=status)
    return render(request, "notifications/webhook_detail.html", {
        "webhook": webhook, "project": webhook.project, "deliveries": deliveries[:200],
        "status": status, "statuses": DeliveryStatus.choices,
        "is_owner": has_role(request.user, webhook.project, Role.OWNER),
    })


@login_required
@require_POST
def webhook_test(request, slug, pk):
    webhook = _webhook(request, slug, pk)
    return handle_action(request, lambda: services.ping_webhook(request.user, webhook),
                         success="Ping queued: its delivery appears below in a moment.",
                         redirect_to=webhook)


@login_required
@require_POST
def webhook_toggle(request, slug, pk):
    webhook = _webhook(request, slug, pk)
    services.update_webhook(request.user, webhook, active=not webhook.active)
    messages.success(request, "Webhook activated: new events are sent to it." if webhook.active
                     else "Webhook deactivated: nothing more is sent to it.")
    return redirect(webhook)


@login_required
@require_POST
def webhook_delete(request, slug, pk):
    webhook = _webhook(request, slug, pk)
    services.delete_webhook(request.user, webhook)  # a member without the role gets a 403 page
    messages.success(request, f"Webhook {webhook.name} deleted, with its delivery log.")
    return redirect("notifications:webhooks", slug)
