from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, render

from explainability.abtest import p_text
from explainability.charts import ab_outcome_over_time
from portal.accounts.choices import Role
from portal.accounts.services import has_role
from portal.experiments import queries, services
from portal.experiments.choices import DecisionChoice, OutcomeKind
from portal.registry.queries import attach_model


@login_required
def experiment_list(request):
    page = Paginator(queries.experiments_for(request.user), 25).get_page(request.GET.get("page"))
    return render(request, "experiments/experiment_list.html", {
        "page": page, "rows": [(e, services.status_of(e)) for e in page.object_list]})


@login_required
def experiment_detail(request, pk):
    experiment = get_object_or_404(queries.experiments_for(request.user)
                                   .select_related("deployment__model__project"), pk=pk)
    deployment = experiment.deployment
    attach_model(deployment.model, deployment.candidate, deployment.stable)
    found = services.results(experiment)
    readout = found["readout"]
    binary = experiment.kind == OutcomeKind.BINARY
    names = dict(zip(services.VARIANTS, services.variant_names(experiment), strict=True))
    finished = services.is_finished(experiment)
    if finished:  # the result as it stood at the end, not "yet"
        readout.verdict = _as_ended(readout.verdict)
    return render(request, "experiments/experiment_detail.html", {
        "ended": _ended(experiment) if finished else None,
        "experiment": experiment, "deployment": deployment,
        "project": deployment.environment.project, "status": services.status_of(experiment),
        "r": readout, "shown": _shown(readout, binary, experiment.higher_is_better),
        "binary": binary, "names": names, "finished": finished,
        "chart": ab_outcome_over_time(found["over_time"], names, experiment.metric,
                                      percent=binary),
        "explanations": found["explanations"],
        "decisions": experiment.decisions.select_related("decided_by"),
        "can_decide": not finished and has_role(request.user, deployment.environment.project,
                                                Role.APPROVER),
        "choices": DecisionChoice.choices,
    })


def _as_ended(verdict: str) -> str:
    for word in ("evidence", "data"):
        verdict = verdict.replace(f"Not enough {word} yet", f"Not enough {word} by the end",
                                  1)
    return verdict.replace("would settle", "would have settled")


def _ended(experiment) -> dict:
    """When and why an ended test ended: the person's final decision, else the rollout's
    reason (rolled back by an alert, failed)."""
    deployment = experiment.deployment
    decision = experiment.decisions.exclude(decision="extend").select_related(
        "decided_by").last()
    if decision is not None:
        what = decision.get_decision_display()
        why = f"{decision.decided_by.username} chose to {what[0].lower()}{what[1:]}: " \
              f"{decision.comment}"
    else:
        why = (deployment.state or {}).get("reason") or "the rollout ended"
    return {"at": deployment.finished_at or deployment.updated_at, "why": why}


def _shown(r, binary: bool, higher_is_better: bool) -> dict:
    """The readout's numbers as a stakeholder reads them (rates in %, differences in
    percentage points), and the tone of the verdict."""
    def value(v):
        if v is None:
            return "—"
        return f"{100 * v:.1f}%" if binary else f"{v:.4g}"

    def signed(v, unit=""):
        return "—" if v is None else f"{v:+.2f}{unit}" if binary else f"{v:+.3g}{unit}"

    def side(d):
        key = "rate" if binary else "mean"
        low, high = d["interval"] if d["interval"] else (None, None)
        return {"value": value(d.get(key)), "interval": f"{value(low)} to {value(high)}"
                if low is not None else "—", "units": d["units"]}

    scale = 100 if binary else 1
    unit = " pts" if binary else ""
    diff = r.difference
    interval = r.difference_interval
    tone = "neutral"
    if r.srm_broken:
        tone = "bad"
    elif r.significant and diff is not None:
        tone = "good" if (diff > 0) == higher_is_better else "bad"
    return {
        "control": side(r.control), "treatment": side(r.treatment),
        "difference": signed(diff * scale if diff is not None else None, unit),
        "difference_interval": (f"{signed(interval[0] * scale, unit)} to "
                                f"{signed(interval[1] * scale, unit)}") if interval else "",
        "relative": f"{r.relative_lift:+.1%}" if r.relative_lift is not None else "—",
        "relative_interval": (f"{r.relative_interval[0]:+.1%} to {r.relative_interval[1]:+.1%}"
                              if r.relative_interval else ""),
        "p_value": p_text(r.p_value) if r.p_value is not None else "—",
        "sequential_p": p_text(r.sequential_p) if r.sequential_p is not None else "—",
        "mde": (f"{r.mde * scale:.2f}{unit}" if binary else f"{r.mde:.3g}")
        if r.mde is not None else "—",
        "srm_p": p_text(r.srm_p),
        "tone": tone,
    }
