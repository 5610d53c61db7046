"""The refit of a closed-form ridge search, from the products the folds shared.

A closed-form search of ``Ridge`` on the rows of one dense array computes the
Gram matrix of all the rows (more samples than features) or their kernel
(more features), and each fold's system as a block of it. The ridge solution
on all the rows is then one factorization away: ``Ridge.fit`` would compute
the same product again, a pass over the data that costs as much as all the
folds' products together (on a 50000 x 500 problem, a quarter of the search).

So the refit of ``best_estimator_`` is taken from the search when that gives
exactly what ``Ridge(alpha=best).fit(X, y, sample_weight)`` computes: a
``Ridge`` itself (a subclass may fit otherwise), by an exact solver
(``"auto"`` or ``"cholesky"``: the normal equations, or the kernel's when
there are more features than samples), not ``positive``, on dense data, with
no other fit parameter than ``sample_weight``, and every row in some training
fold with the data's own weight and target. The fitted attributes are those
``Ridge.fit`` sets, with its shapes and dtypes. Anything else falls back to
``fit``.
"""

import numpy as np
import scipy.sparse as sp
from sklearn import get_config
from sklearn.linear_model import Ridge
from sklearn.utils.validation import validate_data

from ..utils._sklearn_compat import _check_sample_weight

__all__ = ["refit_from_search"]

_EXACT_SOLVERS = ("auto", "cholesky")


def refit_from_search(estimator, fold_models, index, X, y, fit_params):
    """Fit ``estimator`` at point ``index`` of the search without a pass over
    the data, when the search's products give its exact solution.

    Parameters
    ----------
    estimator : estimator
        The clone to fit, its parameters set to the point's.
    fold_models : FoldModels
        The search's folds: its search (a closed-form ridge search offers
        ``all_rows_solution``) and the targets' encoding (the engine fits
        the targets less their mean, ``context["offset"]``). Called by
        ``RidgeAdapter.refit_from_search`` (so also for ``RidgeClassifier``,
        which this declines: it is not a ``Ridge``).
    index : int
        The point in the search's history.
    X, y : array-like
        The data of the search.
    fit_params : dict
        Parameters routed to ``estimator.fit``.

    Returns
    -------
    bool
        Whether ``estimator`` is now fitted; False leaves it to its ``fit``.
    """
    if (
        type(estimator) is not Ridge
        or estimator.solver not in _EXACT_SOLVERS
        or estimator.positive
        or set(fit_params) - {"sample_weight"}
        or sp.issparse(X)
        or not hasattr(fold_models.search, "all_rows_solution")
    ):
        return False
    if not get_config()["skip_parameter_validation"]:
        estimator._validate_params()  # as fit would, before any work
    found = fold_models.search.all_rows_solution(index)
    if found is None:
        return False
    coef, intercept, weights, targets = found
    X, y = validate_data(
        estimator,
        X,
        y,
        dtype=[np.float64, np.float32],
        multi_output=True,
        y_numeric=True,
    )
    sample_weight = fit_params.get("sample_weight")
    own_weights = _check_sample_weight(sample_weight, X, dtype=np.float64)
    offset = fold_models.encoding.context.get("offset", 0.0)
    own_targets = (np.asarray(y, dtype=np.float64) - offset).reshape(X.shape[0], -1)
    if not (
        np.array_equal(weights, own_weights) and np.array_equal(targets, own_targets)
    ):
        return False
    # Ridge.fit's shapes: one target's coef_ is 1-D (y of shape (n, 1)
    # included), its intercept_ a scalar for 1-D y; dtype of X
    coef = coef.astype(X.dtype, copy=False)
    intercept = (intercept + offset).astype(X.dtype, copy=False)
    if coef.shape[0] == 1:
        coef = coef[0]
        if y.ndim == 1:
            intercept = intercept[0]
    estimator.coef_ = coef
    estimator.intercept_ = intercept if estimator.fit_intercept else 0.0
    estimator.n_iter_ = None
    estimator.solver_ = "cholesky"
    return True
