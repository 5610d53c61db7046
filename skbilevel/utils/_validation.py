"""Input checks that scikit-learn leaves to NumPy, with readable errors."""

import numpy as np
from sklearn.utils.multiclass import check_classification_targets

__all__ = ["check_classification_labels"]


def check_classification_labels(y):
    """scikit-learn's ``check_classification_targets``, with a readable error
    for labels that cannot be sorted.

    scikit-learn sorts class labels with ``np.unique``: labels that mix
    strings and numbers fail inside NumPy with "'<' not supported between
    instances of 'int' and 'str'". The error type stays TypeError, as
    scikit-learn raises it; the message says what is wrong with ``y``.

    Parameters
    ----------
    y : array-like
        Class labels.
    """
    try:
        check_classification_targets(y)
    except TypeError:
        kinds = sorted({type(label).__name__ for label in np.ravel(y)})
        if len(kinds) < 2:
            raise
        raise TypeError(
            "The labels in y must all be of one kind (all strings or all "
            f"numbers), so that they can be sorted; got a mix of {kinds}. "
            "Convert them, e.g. with y.astype(str)."
        ) from None
