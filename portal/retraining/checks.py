"""System check of the operator's retraining targets."""

from django.core.checks import Error, register


@register()
def check_retraining_targets(app_configs, **kwargs):
    from portal.retraining.targets import problems

    return [Error(problem, id="modelgate.E040",
                  hint="See docs/operations.md § Retraining targets.")
            for problem in problems()]
