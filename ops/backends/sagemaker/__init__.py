"""The Amazon SageMaker backend: one real-time SageMaker endpoint per serving plan.

How a plan maps onto SageMaker (names are sanitised to SageMaker's ``[a-zA-Z0-9](-*[a-zA-Z0-9])*``,
at most 63 characters; a name that had to change gets a short hash of the original so two
endpoints never collide):

- **Endpoint** ``<endpoint>``, tagged ``modelgate:endpoint`` (the plan's own name) and
  ``modelgate:generation`` (the generation it serves now; read back by ``observe``).
- **EndpointConfig** ``<base>-g<generation>`` per plan generation that changes the *set* of
  variants: one ProductionVariant per live variant, ``VariantName`` = the plan's variant
  name, ``InitialVariantWeight`` = its normalised weight, ``InitialInstanceCount`` =
  ``max(replicas, initial_instance_count)``, ``InstanceType`` = ``instance_type``.
  ``<base>`` is the endpoint name, cut to 40 characters (with a hash) when longer.
- **Model** ``<base>-v<version_id>-<digest8>`` per version, with the model-server image and
  ``ModelDataUrl`` = ``s3://<bucket>/<prefix>/<base>/<model>/model.tar.gz``. The tarball
  holds the artifact (``artifact.<suffix>``) and a ``plan.json`` serving only that variant
  (weight 1, generation 1, the artifact as a path relative to the plan), so the container
  finds both under ``/opt/ml/model``. ``digest8`` is a hash of that ``plan.json`` (and of
  the prediction-id key in the container's environment, when there is one): a Model is
  never changed after creation, and the same name always means the same content. The
  inner plan keeps the plan's variant name, so the container answers as ``stable`` or
  ``candidate`` like every other backend; a version that comes back under the other name
  in a later rollout gets a second Model. Every artifact is copied from its ``file://`` or
  ``s3://`` uri and its sha256 checked against the plan before anything is created.

Converging (``apply``): the same plan twice makes no changing call. A change of weights
or replica counts of the variants already deployed is one
``UpdateEndpointWeightsAndCapacities``; a change of the set of variants (a canary adds the
candidate, promote or rollback removes one) creates the generation's EndpointConfig and
calls ``UpdateEndpoint``. On AWS that is always what happens: SageMaker swaps the
configuration in place and the endpoint keeps serving. While SageMaker is still
``Creating`` or ``Updating``, a plan that needs a further change raises
``BackendUnavailable`` (retry later); a ``Failed`` endpoint raises ``BackendError``.
An update SageMaker could not make (it rolls back to the config before and stays
``InService`` with a ``FailureReason``) or a ``Failed`` endpoint is reported by ``observe``
as ``refused`` ("SageMaker refused plan N: <FailureReason>"), with the generation in the
name of the config it kept as the one served; applying that same plan again raises
``BackendError`` instead of updating to its config again, and waiting for it ends there.

Fenced by generation: an endpoint recording a newer generation (its tag, or the config it
runs or moves to) refuses an older plan with ``StalePlan`` before anything is created, and a
plan of its generation with another digest with ``PlanConflict``; the check is made again
right before ``UpdateEndpoint``. SageMaker has no compare-and-set (tags are last-writer-wins),
so two applies racing each other can both pass it; AWS refuses an update while another is in
progress, and the next apply of the newer plan converges the endpoint.

**Test emulators only:** moto's server does not implement ``UpdateEndpoint`` (it answers an
HTML 500). When the API at ``endpoint_url`` answers that way *and* the environment's
settings say ``allow_recreate=True``, the endpoint is deleted and created again with the
new configuration, which on a real endpoint would mean downtime. Without the setting the
plan is refused with ``BackendError``. With no ``endpoint_url`` (real AWS) the fallback can
never trigger, whatever the settings say.

Not supported: shadow variants (refused with ``BackendError``; SageMaker's
``ShadowProductionVariants`` would fit, but the emulator ignores them, so nothing could test
them). ``sticky`` plans are accepted, but SageMaker splits traffic per request: callers who
need a unit to stay on one variant pass ``TargetVariant`` to ``InvokeEndpoint``.

``apply`` does not wait for SageMaker (creating an endpoint takes minutes) unless
``ready_timeout`` is set (and ``wait`` is not False; it also stops once a newer plan is
recorded); it returns what it observes, with the calls it made in
``extra["actions"]``. Older EndpointConfigs and Models of an endpoint stay until
``delete``. Credentials come from the process environment (the usual boto3 chain:
variables, profile, instance role), never from the environment's settings.

The package: ``names.py`` (names and tags), ``config.py`` (plan to endpoint configuration
and back), ``packaging.py`` (the verified tarballs), ``client.py`` (boto3, errors
translated), ``backend.py`` (``SageMakerBackend``: converging, observing, deleting) and
``cloudwatch.py`` (``CloudWatchAnalyzer``: rollouts measured from SageMaker's own metrics).
"""

from ops.backends.sagemaker.backend import SageMakerBackend
from ops.backends.sagemaker.client import not_found, translate
from ops.backends.sagemaker.cloudwatch import SAGEMAKER_NAMESPACE, CloudWatchAnalyzer
from ops.backends.sagemaker.config import container_plan
from ops.backends.sagemaker.names import sagemaker_name

# The names these had when the backend was one module.
_sagemaker_name = sagemaker_name
_translate = translate
_not_found = not_found
_container_plan = container_plan

__all__ = ["SAGEMAKER_NAMESPACE", "CloudWatchAnalyzer", "SageMakerBackend", "container_plan",
           "sagemaker_name", "translate"]
