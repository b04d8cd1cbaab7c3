def navigation(request):
    match = getattr(request, "resolver_match", None)
    return {"nav_section": match.url_name if match else ""}
