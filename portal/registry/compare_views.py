"""The compare page: two or more versions of a model side by side (``compare``)."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from portal.registry import compare
from portal.registry.views import _model


@login_required
def version_compare(request, slug, name):
    """``?v=1&v=3``: the versions chosen on the model page (up to ``MAX_COMPARED``)."""
    model = _model(request, slug, name)
    numbers = compare.chosen_numbers(request.GET.getlist("v"))
    versions = compare.versions_to_compare(request.user, model, numbers) \
        if len(numbers) > 1 else []
    context = {"model": model, "project": model.project, "versions": versions,
               "asked": numbers, "max_compared": compare.MAX_COMPARED,
               "missing": sorted(set(numbers) - {v.number for v in versions})}
    if len(versions) > 1:
        context |= compare.comparison(versions)
    return render(request, "registry/version_compare.html", context)
