"""Every scikit-learn import that is not part of its public API, in one place."""

import numpy as np
from sklearn.base import _fit_context
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import _check_sample_weight

__all__ = [
    "class_weight_per_sample",
    "HasMethods",
    "Interval",
    "StrOptions",
    "_check_sample_weight",
    "_fit_context",
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
