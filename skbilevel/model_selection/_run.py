"""One search: the materialized folds, the engine problem, every evaluated point.

:class:`SearchRun` holds what one ``BilevelSearchCV.fit`` needs between the
gradient search and the scoring: the folds (prefix fitted once), the engine's
cross-validated problem, and the per-fold solution at every point HOAG
evaluated, so that each point becomes a row of ``cv_results_`` without fitting
anything again.
"""

import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from ..hypergrad import get_linear_solver
from ..outer import CrossValidatedProblem, hoag
from ..outer._progress import describe_values
from ..utils._array_api import to_numpy
from ..utils._sklearn_compat import (
    _check_method_params,
    _check_sample_weight,
    _safe_indexing,
    _score,
)
from ._folds import engine_folds, fold_model, materialize_folds, route_fit_params

__all__ = ["SearchRun"]

# Relative gradient-norm tolerance of the re-solves at a best point: its fold
# models then match scikit-learn fits at tol=1e-10 to ~5e-7 in the weights
# (measured on breast_cancer, digits, diabetes); the search's own solves start
# at 1e-4, where validation losses err by up to ~1e-3 relative on digits.
_POLISH_TOL = 1e-8
# Coarse bracket of the starting point when no start is given, as in
# HOAGLogisticRegression: strongest penalty first, stops past the minimum.
_BRACKET = 5


class SearchRun:
    """The state of one search (one call to ``fit``).

    Parameters
    ----------
    estimator : estimator instance
        The user's estimator or Pipeline.
    split : SplitEstimator
    adapter : EstimatorAdapter
    space : SearchSpace
    X, y : indexable
        All the data given to ``fit``.
    splits : list of (ndarray, ndarray)
        The fixed train / validation indices.
    fit_params : dict
        Fit parameters routed to the estimator.
    hypergradient : str or LinearSolver
    n_jobs : int or None
    device : {None, "cpu", "cuda"}, default=None
        Where the engine computes.
    """

    def __init__(
        self,
        estimator,
        split,
        adapter,
        space,
        X,
        y,
        splits,
        fit_params,
        *,
        hypergradient,
        n_jobs,
        device=None,
    ):
        self.estimator, self.split, self.adapter = estimator, split, adapter
        prefix_params, final_params = route_fit_params(estimator, split, fit_params)
        unexpected = sorted(set(final_params) - set(adapter.fit_params))
        if unexpected:
            raise TypeError(
                f"{type(split.final).__name__}.fit got unexpected parameters "
                f"{unexpected}; BilevelSearchCV forwards {list(adapter.fit_params)}."
            )
        self.encoding = adapter.encode_targets(split.final, y)
        self.space = (
            space.resize(self.encoding.n_outputs) if space.per_output else space
        )
        self.folds = materialize_folds(split, X, y, splits, prefix_params, n_jobs)
        weights = self._fold_weights(X, y, final_params.get("sample_weight"))
        self.problem = CrossValidatedProblem(
            engine_folds(
                self.folds,
                self.encoding,
                weights,
                fit_intercept=adapter.fit_intercept(split.final),
                per_output=space.per_output,
                device=device,
            ),
            get_linear_solver(hypergradient),
            n_jobs=n_jobs,
        )
        self.solutions = []
        self.history = []
        self.polished = set()
        self.verbose = 0

    def _fold_weights(self, X, y, sample_weight):
        """(training-loss weights, validation weights) of each fold."""
        if sample_weight is not None:
            sample_weight = _check_sample_weight(
                sample_weight, X, dtype=np.float64, ensure_non_negative=True
            )
        y = np.asarray(y)
        weights = []
        for fold in self.folds:
            train_weight = None if sample_weight is None else sample_weight[fold.train]
            test_weight = None if sample_weight is None else sample_weight[fold.test]
            train_weight = self.adapter.training_weights(
                self.split.final, y[fold.train], train_weight
            )
            weights.append((train_weight, test_weight))
        return weights

    # -- the search -----------------------------------------------------------
    def value(self, lam):
        """The parameter's value at ``lam``: a float, or an array per output."""
        value = self.adapter.from_lambda(lam)
        return value if self.space.per_output else float(value[0])

    def _snapshot(self):
        """Copy of every fold's current solution as (coef, intercept)."""
        snapshot = []
        for fold, w in zip(self.problem.folds, self.problem.solutions()):
            coef, intercept = fold.inner.model.split(w)
            snapshot.append(
                (
                    np.array(to_numpy(coef), dtype=np.float64),
                    None if intercept is None else np.array(to_numpy(intercept)),
                )
            )
        return snapshot

    def search(self, *, max_iter, tol, callback=None, verbose=0):
        """Run HOAG; keep the fold solutions of every evaluated point.

        Returns
        -------
        OuterResult
            Its history has one record per evaluated point, in order, with the
            parameter's value added under its name.
        """
        space, name = self.space, self.space.param
        self.verbose = verbose

        def on_evaluation(record):
            self.solutions.append(self._snapshot())
            record[name] = self.value(record["lam"])
            return callback is not None and bool(callback(record))

        if space.lam_start is None:
            lam0, bracket = (space.lam_low + space.lam_high) / 2, _BRACKET
        else:
            lam0, bracket = space.lam_start, 0
        result = hoag(
            self.problem,
            lam0,
            bounds=(space.lam_low, space.lam_high),
            max_iter=max_iter,
            tol=tol,
            bracket=bracket,
            callback=on_evaluation,
            verbose=verbose,
            describe=self.describe,
        )
        self.history = result.history
        self.polish(self.best_outer_index())
        return result

    def best_outer_index(self):
        """Evaluated point with the lowest outer loss (HOAG's best)."""
        return int(np.argmin([record["value"] for record in self.history]))

    def describe(self, lam):
        """``lam`` as the parameter's value(s), for verbose lines."""
        return describe_values(self.space.param, self.adapter.from_lambda(lam))

    def polish(self, index):
        """Re-solve the folds at evaluated point ``index`` to a tight tolerance.

        The search's solves are inexact by design (their tolerance decreases
        along the outer iterations), and their validation losses err, in either
        direction, by up to ~1e-3 relative (digits): a point reported as best
        deserves fold models as precise as a scikit-learn fit.
        """
        record = self.history[index]
        evaluation = self.problem.evaluate(
            record["lam"], inner_tol=_POLISH_TOL, gradient=False
        )
        self.solutions[index] = self._snapshot()
        self.polished.add(index)
        record["value"] = evaluation.value
        record["fold_values"] = evaluation.fold_values
        record["time"] += evaluation.time
        if self.verbose > 0:
            print(
                f"Re-solved the folds of evaluation {index} "
                f"({self.describe(record['lam'])}) to tol {_POLISH_TOL:g}: "
                f"CV loss {evaluation.value:.6g}, {evaluation.inner_iter} inner "
                f"iterations, {evaluation.time:.2f}s.",
                flush=True,
            )
        if not evaluation.inner_converged:
            warnings.warn(
                f"The fold fits at {self.space.param}={record[self.space.param]!r} "
                f"did not reach the tolerance {_POLISH_TOL:g}; scale the data or "
                "narrow the bounds of the search.",
                ConvergenceWarning,
                stacklevel=4,
            )

    # -- scoring --------------------------------------------------------------
    def _fold_model(self, fold, params, solution):
        """The user's estimator fitted on ``fold`` from an engine solution."""
        return fold_model(
            self.estimator,
            self.split,
            fold,
            self.adapter,
            self.encoding,
            params,
            solution,
        )

    def fold_models(self, params, index):
        """The fitted fold models at evaluated point ``index`` (list per fold)."""
        return [
            self._fold_model(fold, params, solution)
            for fold, solution in zip(self.folds, self.solutions[index])
        ]

    def score(
        self,
        candidate_params,
        indices,
        X,
        y,
        *,
        scorer,
        score_params,
        fit_times,
        return_train_score,
        error_score,
    ):
        """Score evaluated points like ``_fit_and_score`` results, without fitting.

        Returns
        -------
        list of dict
            One per (candidate, split), candidates outer, in the format of
            scikit-learn's ``_fit_and_score`` (``fit_time`` is the candidate's
            evaluation time shared evenly among the folds).
        """
        n_splits = len(self.folds)
        out = [None] * (len(candidate_params) * n_splits)
        for k, fold in enumerate(self.folds):
            data = {"test": fold.test}
            if return_train_score:
                data["train"] = fold.train
            sets = {
                kind: (
                    _safe_indexing(X, rows),
                    _safe_indexing(y, rows),
                    _check_method_params(X, params=score_params, indices=rows),
                )
                for kind, rows in data.items()
            }
            for i, (params, index) in enumerate(zip(candidate_params, indices)):
                model = self._fold_model(fold, params, self.solutions[index][k])
                entry = {
                    "fit_error": None,
                    "n_test_samples": fold.test.size,
                    "fit_time": fit_times[i] / n_splits,
                }
                for kind, (X_part, y_part, part_params) in sets.items():
                    start = time.perf_counter()
                    entry[f"{kind}_scores"] = _score(
                        model, X_part, y_part, scorer, part_params, error_score
                    )
                    if kind == "test":
                        entry["score_time"] = time.perf_counter() - start
                out[i * n_splits + k] = entry
        return out
