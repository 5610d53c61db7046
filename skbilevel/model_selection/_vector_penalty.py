"""One penalty per feature or per group in BilevelSearchCV: folds and refit.

``BilevelSearchCV(estimator, param_space, penalty_groups=...)`` searches one
value of the parameter per feature (or group of features) of the final step
with the shared vector search (:mod:`skbilevel.search._vector`). Two things
differ from a scalar search:

- the features must be the same in every fold: "feature ``j``" is a column
  of the final step's input, after the Pipeline's earlier steps, and a
  feature selector or an encoder that sees other categories in another fold
  would give ``C_j`` a different meaning from fold to fold;
- scikit-learn's estimators take one ``C`` or ``alpha`` (``Ridge`` one per
  target), so the refit cannot be
  ``clone(estimator).set_params(**best_params_).fit(X, y)``. It is done as
  scikit-learn's Pipeline would fit, except the final step's solver: the
  earlier steps are fit on all the data by scikit-learn, then the final
  step's training problem (its loss, sample and class weights, unpenalized
  intercept, and the chosen penalty of each feature) is solved by the
  engine's Newton-CG to the search's ``polish_tol`` (scikit-learn's gradient
  test at the estimator's ``tol`` by default), warm-started from the mean of the folds'
  solutions at that point, as ``HOAGLogisticRegression`` refits; the squared
  loss with few features is solved exactly, by one factorization (the
  engine's direct path). The
  solution becomes ``coef_`` / ``intercept_`` of the user's final estimator,
  whose searched parameter keeps the value given (no value of it yields
  these coefficients).
"""

import time
import warnings
from typing import NamedTuple

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from ..objectives.quadratic import quadratic_moments
from ..search import split_estimator
from ..search._banded import banded_coefficients
from ..solvers.direct import direct_factor
from ..utils._sklearn_compat import _get_feature_names
from ._engine_refit import (
    final_step_input,
    final_step_problem,
    newton_solution,
    point_lam,
    set_solution,
)

__all__ = ["check_same_features", "refit_vector_penalty"]


def _feature_names(fitted_prefix, names):
    """Names of the final step's input features, or None when unknown.

    ``names`` (string column names of the transformed data, pandas output)
    first, else the prefix's ``get_feature_names_out`` when every step has
    one.
    """
    if names is not None or fitted_prefix is None:
        return names
    try:
        return np.asarray(fitted_prefix.get_feature_names_out(), dtype=object)
    except (AttributeError, TypeError, ValueError):
        return None


def check_same_features(folds, estimator_name):
    """Raise ValueError unless every fold gives the final step the same features.

    Parameters
    ----------
    folds : list of FoldData
        Materialized folds (Pipeline prefix fitted on each training fold).
    estimator_name : str
        Class of the final step, for the message.

    Returns
    -------
    ndarray of str or None
        The features' names where the prefix (or the data) names them.
    """
    counts = sorted({fold.n_features_in for fold in folds})
    if len(counts) > 1:
        raise ValueError(
            f"penalty_groups needs the same features in every fold, but the "
            f"Pipeline's earlier steps give {estimator_name} {counts} features "
            "depending on the training fold (an encoder or a selector fitted per "
            "fold): fix the features (e.g. OneHotEncoder(categories=...)) or use "
            "penalty_groups=None."
        )
    names = [_feature_names(fold.prefix, fold.feature_names_in) for fold in folds]
    known = [n for n in names if n is not None]
    for other in known[1:]:
        if not np.array_equal(other, known[0]):
            differ = np.flatnonzero(other != known[0])[:3]
            raise ValueError(
                "penalty_groups needs the same features in every fold, but the "
                f"Pipeline's earlier steps give {estimator_name} different "
                f"features depending on the training fold (e.g. "
                f"{list(known[0][differ])} against {list(other[differ])}): a "
                "selector or an encoder fitted per fold changes what each penalty "
                "applies to. Fix the features or use penalty_groups=None."
            )
    return known[0] if known else None


class _Exact(NamedTuple):
    """A solution computed exactly (the direct solve of a quadratic)."""

    x: np.ndarray
    converged: bool = True
    message: str = "exact"


def _banded_solution(inner, band_index, lam):
    """The exact minimizer (engine layout) at one penalty per target and group
    (``band_index``: each feature's group, as the search numbered them)."""
    model = inner.model
    moments = quadratic_moments(
        model.X, inner.y, inner.sample_weight, model.fit_intercept
    )
    coef = banded_coefficients(moments, band_index, lam.reshape(model.n_outputs, -1))
    parts = [coef.reshape(-1)]
    if model.fit_intercept:
        parts.append(moments.y_mean - moments.x_mean @ coef)
    return np.concatenate(parts)


def refit_vector_penalty(
    model, fold_models, index, X, y, fit_params, *, tol, max_iter, verbose
):
    """Fit ``model`` on all the data at evaluated point ``index`` of the search.

    Parameters
    ----------
    model : estimator instance
        A clone of the user's estimator (or Pipeline); fitted in place.
    fold_models : FoldModels
        The search's folds, adapter, target encoding and kept solutions.
    index : int
        The evaluated point (a row of ``cv_results_``).
    X : array-like or sparse matrix of shape (n_samples, n_features)
    y : array-like of shape (n_samples,) or (n_samples, n_targets)
    fit_params : dict
        The estimator's routed fit parameters (``sample_weight``, a prefix
        step's parameters).
    tol : float
        Tolerance of the largest gradient entry per unit of training weight
        (the search's ``polish_tol``: scikit-learn's test; a squared loss's is
        relative to its gradient at zero).
    max_iter : int
        Newton steps at most (``inner_max_iter``; at least
        ``REFIT_MIN_ITER``, see :func:`~skbilevel.search.newton_refit`).
    verbose : int
        Prints the refit's cost when positive.

    Returns
    -------
    model : estimator instance
        Its prefix steps fitted by scikit-learn, its final step carrying the
        engine's solution.
    """
    adapter = fold_models.adapter
    space = fold_models.search.space
    prefix, _, final = split_estimator(model)
    given = final_step_input(fold_models, X, y, fit_params, prefix)
    name, Xt = type(final).__name__, given.Xt
    n_features = given.X_engine.shape[1]
    fold_names = check_same_features(fold_models.folds, name)
    names = _feature_names(prefix, _get_feature_names(Xt))
    if n_features != fold_models.folds[0].n_features_in or (
        fold_names is not None
        and names is not None
        and not np.array_equal(fold_names, names)
    ):
        raise ValueError(
            f"The Pipeline's earlier steps, refit on all the data, give {name} "
            f"other features ({n_features}) than on the training folds "
            f"({fold_models.folds[0].n_features_in}): the penalties chosen per "
            "feature do not apply to them. Fix the features (e.g. "
            "OneHotEncoder(categories=...)) or use penalty_groups=None."
        )
    problem = final_step_problem(final, fold_models, given, y)
    inner = problem.inner
    lam = point_lam(fold_models, index)
    start = time.perf_counter()
    if space.structure == "output-groups":  # exact
        solution = _Exact(_banded_solution(inner, fold_models.search.band_index, lam))
    elif (factor := direct_factor(inner, lam)) is not None:
        # a quadratic with few features: one factorization
        solution = _Exact(factor.minimizer())
    else:
        solution = newton_solution(
            problem, fold_models, index, lam, tol=tol, max_iter=max_iter
        )
    if verbose > 0:
        how = (
            f"{solution.n_iter} Newton steps"
            if hasattr(solution, "n_iter")
            else "exact solve"
        )
        print(
            f"Refit of {name} on all {inner.model.n_samples} samples at "
            f"{space.describe(lam)}: {how}, {time.perf_counter() - start:.2f}s.",
            flush=True,
        )
    if not solution.converged:
        warnings.warn(
            f"The refit at the chosen {space.param} per {space.structure[:-1]} did "
            f"not converge ({solution.message}); increase inner_max_iter or scale "
            "the data.",
            ConvergenceWarning,
            stacklevel=3,
        )
    set_solution(problem, adapter, solution.x)
    final.n_features_in_ = n_features
    feature_names = _get_feature_names(Xt)
    if feature_names is not None:
        final.feature_names_in_ = feature_names
    return model
