"""Hyperparameter search: BilevelSearchCV and the estimator adapters."""

from ._adapters import (
    EstimatorAdapter,
    LogisticRegressionAdapter,
    RidgeAdapter,
    RidgeClassifierAdapter,
    TargetEncoding,
    get_adapter,
    register_adapter,
)
from ._search import BilevelSearchCV

__all__ = [
    "BilevelSearchCV",
    "EstimatorAdapter",
    "LogisticRegressionAdapter",
    "RidgeAdapter",
    "RidgeClassifierAdapter",
    "TargetEncoding",
    "get_adapter",
    "register_adapter",
]
