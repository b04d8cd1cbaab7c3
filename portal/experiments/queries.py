from portal.accounts.services import visible_project_ids
from portal.experiments.models import Experiment


def experiments_for(user):
    """A/B experiments of the user's projects (staff: all), newest first."""
    if not getattr(user, "is_authenticated", False):
        return Experiment.objects.none()
    experiments = Experiment.objects.select_related(
        "deployment__environment__project", "deployment__model", "deployment__candidate",
        "deployment__stable")
    ids = visible_project_ids(user)
    if ids is not None:
        experiments = experiments.filter(deployment__environment__project_id__in=ids)
    return experiments
