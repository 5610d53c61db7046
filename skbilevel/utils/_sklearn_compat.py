"""Every scikit-learn import that is not part of its public API, in one place."""

import numpy as np
from sklearn.base import _fit_context
from sklearn.linear_model._base import LinearClassifierMixin
from sklearn.metrics._scorer import _MultimetricScorer
from sklearn.model_selection._search import BaseSearchCV
from sklearn.model_selection._validation import _score
from sklearn.utils import _safe_indexing
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import (
    _check_method_params,
    _check_sample_weight,
    _get_feature_names,
)

__all__ = [
    "BaseSearchCV",
    "class_weight_per_sample",
    "HasMethods",
    "Interval",
    "LinearClassifierMixin",
    "StrOptions",
    "_check_method_params",
    "_check_sample_weight",
    "_fit_context",
    "_get_feature_names",
    "_MultimetricScorer",
    "_safe_indexing",
    "_score",
    "pipeline_routed_params",
]


def class_weight_per_sample(class_weight, classes, y, sample_weight):
    """Weight of each sample's class, as ``LogisticRegression`` computes it.

    scikit-learn >= 1.7 lets ``sample_weight`` enter the ``"balanced"`` class
    weights; older versions count samples only.
    """
    from sklearn.utils.class_weight import compute_class_weight

    try:
        weights = compute_class_weight(
            class_weight, classes=classes, y=y, sample_weight=sample_weight
        )
    except TypeError:
        weights = compute_class_weight(class_weight, classes=classes, y=y)
    return weights[np.searchsorted(classes, y)]


def pipeline_routed_params(pipeline, fit_params):
    """Per-step fit parameters of ``pipeline``, routed as ``Pipeline.fit`` does.

    ``step__param`` keys without metadata routing, the steps' requests with it.
    Returns a mapping step name -> {"fit": {...}, "fit_transform": {...}, ...}.
    """
    return pipeline._check_method_params(method="fit", props=fit_params)
