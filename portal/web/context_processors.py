from django.conf import settings


def navigation(request):
    from portal.accounts.oidc import enabled

    match = getattr(request, "resolver_match", None)
    return {"nav_section": match.url_name if match else "",
            "sso_name": settings.MODELGATE_OIDC_NAME if enabled() else ""}
