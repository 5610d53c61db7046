"""The final step's training problem on all the data, solved by the engine.

Two refits of :class:`~skbilevel.BilevelSearchCV` need it:

- a many-penalty point (``penalty_groups``), which no value of the
  estimator's parameter gives: the engine's solution becomes the final step's
  ``coef_`` / ``intercept_`` (:mod:`._vector_penalty`);
- a single-value point of an estimator that can continue from ``coef_``
  (``warm_start``): :func:`warm_started_refit` gives the engine's solution to
  the estimator's own ``fit`` as its start (``refit_warm_start=True``).

In both, the Pipeline's earlier steps are fitted on all the data by
scikit-learn first, and the solve is Newton-CG from the mean of the folds'
solutions at that point (:func:`~skbilevel.search.newton_refit`).
"""

import time
from typing import NamedTuple

import numpy as np
from sklearn.base import clone

from ..objectives import InnerObjective
from ..search import (
    as_engine_array,
    fit_steps,
    newton_refit,
    route_fit_params,
    split_estimator,
)
from ..utils._sklearn_compat import _check_sample_weight

__all__ = [
    "final_step_input",
    "final_step_problem",
    "newton_solution",
    "point_lam",
    "set_solution",
    "warm_started_refit",
]


class FinalInput(NamedTuple):
    """The final step's input on all the data (its earlier steps fitted)."""

    Xt: object  # the prefix's output (X itself without a prefix)
    X_engine: object  # the same, as the engine computes on it
    final_params: dict  # the final step's routed fit parameters


class FinalProblem(NamedTuple):
    """The final step's training problem on all the data."""

    final: object  # the final step, fitted in place
    inner: InnerObjective
    encoding: object  # TargetEncoding


def final_step_input(fold_models, X, y, fit_params, prefix):
    """Fit ``prefix`` (the Pipeline's earlier steps, or None) on all the data.

    Returns
    -------
    FinalInput
    """
    prefix_params, final_params = route_fit_params(
        fold_models.estimator, fold_models.split, fit_params
    )
    Xt = X if prefix is None else fit_steps(prefix.steps, X, y, prefix_params)
    return FinalInput(Xt, as_engine_array(Xt), final_params)


def final_step_problem(final, fold_models, given, y):
    """The training problem of ``final`` (the final step) on ``given``
    (:func:`final_step_input`): its loss, penalty, sample and class weights.

    Returns
    -------
    FinalProblem
    """
    adapter = fold_models.adapter
    X_engine = given.X_engine
    sample_weight = given.final_params.get("sample_weight")
    if sample_weight is not None:
        sample_weight = _check_sample_weight(
            sample_weight, X_engine, dtype=np.float64, ensure_non_negative=True
        )
    encoding = adapter.encode_targets(final, y)
    n_outputs = encoding.n_outputs
    inner = InnerObjective(
        X_engine,
        encoding.y,
        encoding.loss,
        fold_models.search.space.penalty(X_engine.shape[1], n_outputs),
        n_outputs,
        adapter.fit_intercept(final),
        adapter.training_weights(final, np.asarray(y), sample_weight),
    )
    return FinalProblem(final, inner, encoding)


def _mean_fold_solution(solutions):
    """Mean of the folds' ``(coef, intercept)`` in the engine's flat layout."""
    flat = [
        np.concatenate([coef.reshape(-1)] + ([] if b is None else [b.reshape(-1)]))
        for coef, b in solutions
    ]
    return np.mean(flat, axis=0)


def point_lam(fold_models, index):
    """``lambda`` of evaluated point ``index`` (float64, shape (n_hyper,))."""
    return np.asarray(fold_models.search.history[index]["lam"], dtype=np.float64)


def newton_solution(problem, fold_models, index, lam, *, tol, max_iter):
    """Newton-CG on ``problem`` at evaluated point ``index`` (its ``lam``),
    from the mean of the folds' solutions there
    (:func:`~skbilevel.search.newton_refit`)."""
    return newton_refit(
        problem.inner,
        lam,
        _mean_fold_solution(fold_models.search.solutions(index)),
        tol=tol,
        max_iter=max_iter,
    )


def set_solution(problem, adapter, x):
    """Give the final step the engine's flat solution ``x`` as its fitted
    coefficients and intercepts."""
    coef, intercept = problem.inner.model.split(x)
    adapter.set_solution(
        problem.final,
        np.array(coef),
        None if intercept is None else np.array(intercept),
        problem.encoding,
    )


def warm_started_refit(
    model, fold_models, index, X, y, fit_params, *, fit_input, tol, max_iter, verbose
):
    """``model.fit(*fit_input)``, its final step warm-started from the engine's
    solution at evaluated point ``index`` on ``X, y``.

    The engine solves the final step's training problem on all the data by
    Newton-CG from the mean of the folds' solutions (to ``tol`` and the step
    test of :func:`~skbilevel.search.newton_refit`), sets it as the step's
    ``coef_`` / ``intercept_`` with ``warm_start=True``, and the estimator's
    own ``fit`` then goes on from there to its own ``tol`` (often with no
    iteration left to do); ``warm_start`` is given back its value, also when
    the fit raises. In a Pipeline the engine's problem is built on clones of
    the earlier steps fitted on all the data, and ``Pipeline.fit`` then fits
    the model's own (so the earlier steps are fitted twice). Where the
    earlier steps give other features on all the data than on some fold (an
    encoder that sees more categories), the folds' solutions are no start:
    the fit starts from scratch.

    Parameters
    ----------
    model : estimator instance
        A clone of the user's estimator (or Pipeline) at the point's
        parameters, whose final step has a ``warm_start`` parameter; fitted in
        place.
    fold_models : FoldModels
        The search's folds, adapter and kept solutions.
    index : int
        The evaluated point (a row of ``cv_results_``).
    X : array-like or sparse matrix of shape (n_samples, n_features)
        The data, on the host (the search's).
    y : array-like of shape (n_samples,)
        The targets, on the host.
    fit_params : dict
        The estimator's routed fit parameters, on the host.
    fit_input : tuple (X, y, fit_params)
        What the model is fitted on: the same, or the user's array-API input
        (a NumPy start serves scikit-learn's fit on any device: it moves
        ``coef_`` to the host for its start).
    tol : float
        The Newton solve's gradient tolerance (``polish_tol``).
    max_iter : int
        Newton steps at most (``inner_max_iter``; at least
        ``REFIT_MIN_ITER``, see :func:`~skbilevel.search.newton_refit`).
    verbose : int
        Prints the engine solve's cost when positive.

    Returns
    -------
    model : estimator instance
        Fitted by its own ``fit`` on ``fit_input``.
    """
    prefix, _, final = split_estimator(model)
    _start_from_engine(
        final, prefix, fold_models, index, X, y, fit_params, tol, max_iter, verbose
    )
    warm_start = final.warm_start
    final.set_params(warm_start=True)
    try:
        X_fit, y_fit, params_fit = fit_input
        model.fit(X_fit, y_fit, **params_fit)
    finally:
        final.set_params(warm_start=warm_start)
    return model


def _start_from_engine(
    final, prefix, fold_models, index, X, y, fit_params, tol, max_iter, verbose
):
    """Set the engine's solution on all the data as ``final``'s coefficients
    (:func:`warm_started_refit`), unless the earlier steps give other
    features than on the folds. Its arrays (the engine's copy of the data,
    the objective, the solution) are released on return, before the
    estimator's own fit."""
    # (fitted on its own copy: the Pipeline's fit fits the model's)
    prefix = None if prefix is None else clone(prefix)
    start = time.perf_counter()
    given = final_step_input(fold_models, X, y, fit_params, prefix)
    n_features = given.X_engine.shape[1]
    if any(fold.n_features_in != n_features for fold in fold_models.folds):
        return
    problem = final_step_problem(final, fold_models, given, y)
    solution = newton_solution(
        problem,
        fold_models,
        index,
        point_lam(fold_models, index),
        tol=tol,
        max_iter=max_iter,
    )
    set_solution(problem, fold_models.adapter, solution.x)
    if verbose > 0:
        print(
            f"Refit of {type(final).__name__} warm-started from the engine's "
            f"solution on all {problem.inner.model.n_samples} samples "
            f"({solution.n_iter} Newton steps, "
            f"{time.perf_counter() - start:.2f}s)",
            flush=True,
        )
