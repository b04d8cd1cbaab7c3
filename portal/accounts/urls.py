from django.urls import path

from portal.accounts import views

app_name = "accounts"

urlpatterns = [
    path("tokens/", views.tokens, name="tokens"),
    path("tokens/<int:pk>/revoke/", views.token_revoke, name="token-revoke"),
    path("p/<slug:slug>/invitations/", views.invitation_create, name="invitation-create"),
    path("invitations/", views.invitations, name="invitations"),
    path("invitations/<int:pk>/accept/", views.invitation_accept, name="invitation-accept"),
    path("invitations/<int:pk>/decline/", views.invitation_decline, name="invitation-decline"),
    path("invitations/join/<str:key>/", views.invitation_join, name="invitation-join"),
    path("invitations/<int:pk>/revoke/", views.invitation_revoke, name="invitation-revoke"),
    path("members/<int:pk>/", views.member_change, name="member-change"),
    path("password/set/<uidb64>/<token>/", views.SetPasswordView.as_view(), name="set-password"),
]
