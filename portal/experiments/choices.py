from django.db import models


class OutcomeKind(models.TextChoices):
    BINARY = "binary", "Binary (converted or not)"
    NUMERIC = "numeric", "Numeric (a value per unit)"


class DecisionChoice(models.TextChoices):
    PROMOTE = "promote", "Promote B"
    KEEP = "keep", "Keep A"
    EXTEND = "extend", "Extend the test"
