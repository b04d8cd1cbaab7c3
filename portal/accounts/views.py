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
from portal.accounts.choices import InvitationStatus, Role
from portal.accounts.models import ApiToken, Invitation, Membership, project_model
from portal.errors import DomainError, NotFound, ValidationFailed
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
        messages.error(request, "Give a username or an e-mail address, and a role.")
        return redirect(project)
    if form.cleaned_data["email"]:
        return _invite_by_email(request, project, form.cleaned_data)
    return handle_action(
        request, lambda: services.invite(request.user, project, form.cleaned_data["username"],
                                         form.cleaned_data["role"]),
        # The same words whatever the username: nothing tells whether the account exists.
        success=f"{services.INVITED} Its holder becomes a member only on accepting, on their "
                "Invitations page.",
        redirect_to=project)


def _invite_by_email(request, project, data):
    try:
        answer = services.invite_by_email(request.user, project, data["email"], data["role"],
                                          site_url=request.build_absolute_uri("/"))
    except DomainError as e:
        messages.error(request, e.detail)
        return redirect(project)
    if answer.accept_url is None:
        messages.success(request, f"{answer.detail} Its holder becomes a member only on "
                                  "accepting.")
        return redirect(project)
    # Shown in this answer only (not redirected, not stored): the link is a key.
    response = render(request, "accounts/invitation_link.html", {
        "project": project, "email": data["email"], "role": data["role"],
        "note": answer.detail, "accept_url": answer.accept_url})
    response["Cache-Control"] = "no-store"
    return response


def invitation_join(request, key):
    """An invitation link: the project and role; a form to create an account and join, or,
    signed in, a button to join with one's account. A used, revoked or expired link says so."""
    try:
        invitation = services.invitation_by_link(key)
    except NotFound as e:
        raise Http404("no such invitation link") from e
    signed_in = request.user.is_authenticated
    form = forms.JoinForm(request.POST or None) if not signed_in else None
    refusal = None
    try:
        services.require_open_link(invitation)
    except DomainError as e:
        refusal = e.detail
    if request.method == "POST" and refusal is None:
        if signed_in:
            return handle_action(
                request, lambda: services.join_by_link(key, actor=request.user),
                success=lambda r: f"You are now {r[0].role} of {r[0].project.name}.",
                redirect_to=lambda r: r[0].project, refused_to=request.path)
        if submit_form(request, form, lambda data: services.join_by_link(
                key, username=data["username"], password=data["password"])):
            messages.success(request, f"Your account is made and you are "
                                      f"{invitation.role} of {invitation.project.name}: "
                                      "sign in with it.")
            return redirect("login")
    response = render(request, "accounts/invitation_join.html", {
        "invitation": invitation, "form": form, "refusal": refusal},
        status=409 if refusal else 200)
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"  # the key is in this page's address
    return response


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
        return handle_action(request, lambda: _remove(request.user, membership,
                                                      request.POST.get("comment", "")),
                             success=f"{membership.user.username} removed.",
                             redirect_to=membership.project)
    if form.is_valid():
        return handle_action(
            request, lambda: services.change_role(request.user, membership,
                                                  form.cleaned_data["role"]),
            success=lambda _: f"{membership.user.username} is now {membership.role}.",
            redirect_to=membership.project)
    return redirect(membership.project)


def _remove(actor, membership, comment: str) -> None:
    """The page's Remove asks why, as promote and roll back do: refused without a reason
    (after the role, so who may not remove anyone learns that first)."""
    if not comment.strip():
        services.require_role(actor, membership.project, Role.OWNER, "manage members")
        raise ValidationFailed("Say why they are removed: the reason is kept in the audit "
                               "trail.", field="comment")
    services.remove_member(actor, membership, comment)


class SetPasswordView(SuccessMessageMixin, auth_views.PasswordResetConfirmView):
    """The one-time link to set a password, for a person staff created without one
    (``portal.accounts.users.set_password_path``): Django's reset token, dead once used."""

    template_name = "accounts/set_password.html"
    success_url = reverse_lazy("login")
    success_message = "Your password is set: sign in with it."
