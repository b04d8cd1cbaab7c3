from django.db import models


class Task(models.TextChoices):
    CLASSIFICATION = "classification", "Classification"
    REGRESSION = "regression", "Regression"


class VersionStatus(models.TextChoices):
    PENDING = "pending", "Validating"
    READY = "ready", "Ready"
    INVALID = "invalid", "Invalid"
    ARCHIVED = "archived", "Archived"


class ArtifactFormat(models.TextChoices):
    SKOPS = "skops", "skops (safe)"
    PICKLE = "pickle", "pickle/joblib (unsafe)"
    XGBOOST = "xgboost", "XGBoost JSON/UBJSON (safe)"
    LIGHTGBM = "lightgbm", "LightGBM text model (safe)"
    ONNX = "onnx", "ONNX (safe)"


class DatasetFormat(models.TextChoices):
    CSV = "csv", "CSV"
    PARQUET = "parquet", "Parquet"


class DatasetPurpose(models.TextChoices):
    REFERENCE = "reference", "Training / reference"
    EVALUATION = "evaluation", "Evaluation (held out)"


class EvaluationStatus(models.TextChoices):
    PENDING = "pending", "Being measured"
    READY = "ready", "Measured"
    FAILED = "failed", "Could not be measured"


class ProfileStatus(models.TextChoices):
    PENDING = "pending", "Profiling"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"


class ExplanationStatus(models.TextChoices):
    PENDING = "pending", "Being computed"
    READY = "ready", "Ready"
    FAILED = "failed", "Could not be computed"


class SchemaSource(models.TextChoices):
    """Where a version's input schema came from."""

    DECLARED = "declared", "declared by the uploader"
    ARTIFACT = "artifact", "the artifact's feature names (feature_names_in_)"
    PARENT = "parent", "the parent version's schema"
    DATASET = "dataset", "the dataset's columns"
    AUTO = "auto", "to be read from the artifact by the worker"


class ImportStatus(models.TextChoices):
    """An import from MLflow (decision 66); the version it made has its own status."""

    PENDING = "pending", "Importing"
    DONE = "done", "Imported"
    FAILED = "failed", "Failed"
