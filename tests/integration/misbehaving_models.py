"""Estimators that misbehave on purpose, for rollouts that must roll back.

They are pickled (the project allows unsafe artifacts in these tests) and loaded by real
model-server processes, which import this module from the repository root.
"""

import time

import numpy as np


class FailingClassifier:
    """Answers like a classifier but raises on about ``share`` of the rows it sees."""

    def __init__(self, n_features: int, share: float = 0.2):
        self.n_features_in_ = n_features
        self.classes_ = np.array([0, 1])
        self.share = share
        self._seen = 0

    def _check(self, X):
        self._seen += 1
        if (self._seen % round(1 / self.share)) == 0:
            raise RuntimeError("simulated failure")

    def predict(self, X):
        self._check(X)
        return np.zeros(len(X), dtype=int)

    def predict_proba(self, X):
        self._check(X)
        return np.tile([0.5, 0.5], (len(X), 1))


class SlowClassifier:
    """A correct but slow classifier: every predict call takes ``seconds``."""

    def __init__(self, n_features: int, seconds: float = 0.05):
        self.n_features_in_ = n_features
        self.classes_ = np.array([0, 1])
        self.seconds = seconds

    def predict(self, X):
        time.sleep(self.seconds)
        return np.zeros(len(X), dtype=int)

    def predict_proba(self, X):
        time.sleep(self.seconds)
        return np.tile([0.5, 0.5], (len(X), 1))


class NonFiniteClassifier(FailingClassifier):
    """Like ``FailingClassifier``, but answers NaN probabilities instead of raising."""

    def predict(self, X):
        return np.zeros(len(X), dtype=int)

    def predict_proba(self, X):
        try:
            self._check(X)
        except RuntimeError:
            return np.full((len(X), 2), np.nan)
        return np.tile([0.5, 0.5], (len(X), 1))
