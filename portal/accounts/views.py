from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from portal.accounts import forms, services
from portal.accounts.choices import InvitationStatus
from portal.accounts.models import ApiToken, Invitation, Membership, project_model
from portal.errors import DomainError


@login_required
def tokens(request):
    form = forms.TokenForm(request.POST or None)
    new_key = None
    if request.method == "POST" and form.is_valid():
        try:
            token, new_key = services.create_token(request.user, form.cleaned_data["name"],
                                                   form.cleaned_data["expires_at"],
                                                   form.cleaned_data["scopes"] or None)
        except DomainError as e:
            form.add_error(e.field if e.field in form.fields else None, e.detail)
        else:
            form = forms.TokenForm()
    return render(request, "accounts/tokens.html", {
        "form": form, "new_key": new_key,
        "tokens": ApiToken.objects.filter(user=request.user).order_by("-created_at"),
    })


@login_required
@require_POST
def token_revoke(request, pk):
    token = get_object_or_404(ApiToken, pk=pk, user=request.user)
    services.revoke_token(request.user, token)
    messages.success(request, f"Token {token.name} revoked; it no longer authenticates.")
    return redirect("accounts:tokens")


@login_required
@require_POST
def invitation_create(request, slug):
    project = get_object_or_404(project_model(), slug=slug)
    if services.role_in(request.user, project) is None:
        raise Http404("no such project")  # outsiders learn nothing, not even that it exists
    form = forms.InviteForm(request.POST)
    if form.is_valid():
        try:
            services.invite(request.user, project, form.cleaned_data["username"],
                            form.cleaned_data["role"])
        except DomainError as e:
            messages.error(request, e.detail)
        else:
            # The same words whatever the username: nothing tells whether the account exists.
            messages.success(request, f"{services.INVITED} Its holder becomes a member only "
                                      "on accepting, on their Invitations page.")
    else:
        messages.error(request, "Give a username and a role.")
    return redirect(project)


@login_required
def invitations(request):
    """The invitations to you: accept or decline the open ones."""
    mine = services.invitations_to(request.user).select_related("project", "invited_by")
    still_open = {"status": InvitationStatus.OPEN, "expires_at__gt": timezone.now()}
    return render(request, "accounts/invitations.html", {
        "open": mine.filter(**still_open),
        "answered": mine.exclude(**still_open)[:20],
    })


def _respond(request, pk, respond, said, then):
    # Only the invited person finds it: anyone else gets 404, as for something that is not.
    invitation = get_object_or_404(Invitation, pk=pk, user=request.user)
    try:
        invitation = respond(request.user, invitation)
    except DomainError as e:
        messages.error(request, e.detail)
        return redirect("accounts:invitations")
    messages.success(request, said(invitation))
    return redirect(then(invitation))


@login_required
@require_POST
def invitation_accept(request, pk):
    return _respond(request, pk, services.accept_invitation,
                    lambda i: f"You are now {i.role} of {i.project.name}.",
                    lambda i: i.project)


@login_required
@require_POST
def invitation_decline(request, pk):
    return _respond(request, pk, services.decline_invitation,
                    lambda i: f"Invitation to {i.project.name} declined.",
                    lambda i: "accounts:invitations")


@login_required
@require_POST
def invitation_revoke(request, pk):
    invitation = get_object_or_404(Invitation.objects.select_related("project"), pk=pk)
    if services.role_in(request.user, invitation.project) is None:
        raise Http404("no such invitation")
    try:
        services.revoke_invitation(request.user, invitation)
    except DomainError as e:
        messages.error(request, e.detail)
    else:
        messages.success(request, f"Invitation of {invitation.username} revoked.")
    return redirect(invitation.project)


@login_required
@require_POST
def member_change(request, pk):
    membership = get_object_or_404(Membership.objects.select_related("project", "user"), pk=pk)
    if services.role_in(request.user, membership.project) is None:
        raise Http404("no such membership")
    form = forms.RoleForm(request.POST)
    try:
        if request.POST.get("remove"):
            services.remove_member(request.user, membership)
            messages.success(request, f"{membership.user.username} removed.")
        elif form.is_valid():
            services.change_role(request.user, membership, form.cleaned_data["role"])
            messages.success(request, f"{membership.user.username} is now {membership.role}.")
    except DomainError as e:
        messages.error(request, e.detail)
    return redirect(membership.project)
