from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.messages.views import SuccessMessageMixin
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse_lazy
from django.utils import timezone
from django.views.decorators.http import require_POST

from portal.accounts import forms, services
from portal.accounts.choices import InvitationStatus
from portal.accounts.models import ApiToken, Invitation, Membership, project_model
from portal.views import handle_action, submit_form


@login_required
def tokens(request):
    form = forms.TokenForm(request.POST or None)
    new_key = None
    created = submit_form(request, form, lambda data: services.create_token(
        request.user, data["name"], data["expires_at"], data["scopes"] or None))
    if created:
        _token, new_key = created
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
    if not form.is_valid():
        messages.error(request, "Give a username and a role.")
        return redirect(project)
    return handle_action(
        request, lambda: services.invite(request.user, project, form.cleaned_data["username"],
                                         form.cleaned_data["role"]),
        # The same words whatever the username: nothing tells whether the account exists.
        success=f"{services.INVITED} Its holder becomes a member only on accepting, on their "
                "Invitations page.",
        redirect_to=project)


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
    return handle_action(request, lambda: respond(request.user, invitation), success=said,
                         redirect_to=then, refused_to="accounts:invitations")


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
    return handle_action(request, lambda: services.revoke_invitation(request.user, invitation),
                         success=f"Invitation of {invitation.username} revoked.",
                         redirect_to=invitation.project)


@login_required
@require_POST
def member_change(request, pk):
    membership = get_object_or_404(Membership.objects.select_related("project", "user"), pk=pk)
    if services.role_in(request.user, membership.project) is None:
        raise Http404("no such membership")
    form = forms.RoleForm(request.POST)
    if request.POST.get("remove"):
        return handle_action(request, lambda: services.remove_member(request.user, membership),
                             success=f"{membership.user.username} removed.",
                             redirect_to=membership.project)
    if form.is_valid():
        return handle_action(
            request, lambda: services.change_role(request.user, membership,
                                                  form.cleaned_data["role"]),
            success=lambda _: f"{membership.user.username} is now {membership.role}.",
            redirect_to=membership.project)
    return redirect(membership.project)


class SetPasswordView(SuccessMessageMixin, auth_views.PasswordResetConfirmView):
    """The one-time link to set a password, for a person staff created without one
    (``portal.accounts.users.set_password_path``): Django's reset token, dead once used."""

    template_name = "accounts/set_password.html"
    success_url = reverse_lazy("login")
    success_message = "Your password is set: sign in with it."
