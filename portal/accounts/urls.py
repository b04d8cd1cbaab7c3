from django.urls import path

from portal.accounts import views

app_name = "accounts"

urlpatterns = [
    path("tokens/", views.tokens, name="tokens"),
    path("tokens/<int:pk>/revoke/", views.token_revoke, name="token-revoke"),
    path("p/<slug:slug>/members/", views.member_add, name="member-add"),
    path("members/<int:pk>/", views.member_change, name="member-change"),
]
