"""The A/B test page's decision form (``/experiments/<pk>/decide/``, routed by
``portal/experiments/urls.py`` under its own name): a decision acts on the rollout
(``experiment_decisions``)."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_POST

from portal.experiments import queries
from portal.releases import experiment_decisions
from portal.views import handle_action


@login_required
@require_POST
def experiment_decide(request, pk):
    experiment = get_object_or_404(queries.experiments_for(request.user), pk=pk)
    decision = request.POST.get("decision", "")
    hours = request.POST.get("extend_hours") or None
    try:
        hours = float(hours) if hours is not None else None
    except ValueError:
        messages.error(request, "Extend by a number of hours.")
        return redirect(experiment)
    done = {"promote": "Promoted: B now serves all traffic and the test has ended.",
            "keep": "Kept A: B is removed and the test has ended.",
            "extend": f"Extended: the test runs {hours:g} more hours." if hours else ""}
    return handle_action(
        request, lambda: experiment_decisions.decide(request.user, experiment, decision,
                                                     request.POST.get("comment", ""), hours),
        success=done.get(decision, "Done."), redirect_to=experiment)
