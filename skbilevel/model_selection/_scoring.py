"""Fold models from the search's solutions, scored as GridSearchCV scores them.

No candidate is fit by scikit-learn during a search: every evaluated point's
fold models are the user's estimator (or Pipeline, its prefix steps fitted once
per fold) given the engine's solution as fitted attributes, and scikit-learn's
own ``_score`` scores them.
"""

import time

import numpy as np
from sklearn.base import RegressorMixin, clone, is_regressor
from sklearn.pipeline import Pipeline

from ..utils._sklearn_compat import _check_method_params, _safe_indexing, _score
from ._adapters import RidgeAdapter
from ._space import estimator_params

__all__ = ["FoldModels", "prediction_metrics"]


def _squared_errors(y, predictions):
    """Per-point, per-output sums of squared errors and of squared deviations.

    ``predictions`` has shape (n_points, n_samples, n_outputs); the sums have
    shape (n_points, n_outputs) and (n_outputs,).
    """
    y = y.reshape(len(y), -1)
    error = np.sum((predictions - y) ** 2, axis=1)
    total = np.sum((y - y.mean(axis=0)) ** 2, axis=0)
    return error, total, len(y)


def _r2(y, predictions):
    # r2_score(multioutput="uniform_average", force_finite=True)
    error, total, _ = _squared_errors(y, predictions)
    constant = total == 0
    scores = np.where(
        constant,
        np.where(error == 0, 1.0, 0.0),
        1 - error / np.where(constant, 1.0, total),
    )
    return scores.mean(axis=1)


def _neg_mse(y, predictions):
    error, _, n = _squared_errors(y, predictions)
    return -np.mean(error / n, axis=1)


def _neg_rmse(y, predictions):
    error, _, n = _squared_errors(y, predictions)
    return -np.mean(np.sqrt(error / n), axis=1)


# scorer name -> the metric as a function of (y_true, predictions), equal to
# scikit-learn's scorer of that name (unweighted)
_PREDICTION_METRICS = {
    "r2": _r2,
    "neg_mean_squared_error": _neg_mse,
    "neg_root_mean_squared_error": _neg_rmse,
}


def prediction_metrics(scoring, estimator, adapter, score_params):
    """The metrics of ``scoring`` as functions of the validation predictions.

    A closed-form search knows every fold model's validation predictions
    without building the models; the squared-error metrics of a regressor
    (``r2``, the default ``estimator.score`` of a regressor, and the
    (root) mean squared error) are then computed for all points at once, as
    ``RidgeCV`` scores its alphas. Anything else (other metrics, callables,
    weighted scoring, classifiers, custom adapters) is scored through the
    fold models.

    Returns
    -------
    dict or None
        ``{None: metric}`` for a single metric, ``{name: metric}`` for several,
        None when the fold models must be scored.
    """
    final = estimator.steps[-1][1] if isinstance(estimator, Pipeline) else estimator
    if score_params or type(adapter) is not RidgeAdapter or not is_regressor(final):
        return None
    if scoring is None:
        default = type(final).score is RegressorMixin.score and (
            final is estimator or type(estimator).score is Pipeline.score
        )
        return {None: _r2} if default else None
    if isinstance(scoring, str):
        names = {None: scoring}
    elif isinstance(scoring, (list, tuple, set)):
        names = {name: name for name in scoring}
    elif isinstance(scoring, dict):
        names = dict(scoring)
    else:
        return None
    if not all(isinstance(n, str) and n in _PREDICTION_METRICS for n in names.values()):
        return None
    return {key: _PREDICTION_METRICS[name] for key, name in names.items()}


class FoldModels:
    """The fold models of every point a search evaluated.

    Parameters
    ----------
    estimator : estimator instance
        The user's estimator or Pipeline, unfitted.
    split : SplitEstimator
    adapter : EstimatorAdapter
    encoding : TargetEncoding
    folds : list of FoldData
    search : GradientSearch
        The search, created with ``keep_solutions=True``.
    """

    def __init__(self, estimator, split, adapter, encoding, folds, search):
        self.estimator, self.split = estimator, split
        self.adapter, self.encoding = adapter, encoding
        self.folds, self.search = folds, search
        # set by the owner when the metrics follow from the predictions
        self.metrics = None

    def _model(self, fold, params, solution):
        """The user's estimator fitted on ``fold`` from an engine solution."""
        model = clone(self.estimator).set_params(
            **estimator_params(self.search.space, params)
        )
        final = model.steps[-1][1] if self.split.final_name is not None else model
        coef, intercept = solution
        self.adapter.set_solution(final, coef, intercept, self.encoding)
        final.n_features_in_ = fold.n_features_in
        if fold.feature_names_in is not None:
            final.feature_names_in_ = fold.feature_names_in
        if fold.prefix is not None:
            model.steps = list(fold.prefix.steps) + [model.steps[-1]]
        return model

    def models(self, params, index):
        """The fitted fold models at evaluated point ``index`` (list per fold)."""
        return [
            self._model(fold, params, solution)
            for fold, solution in zip(self.folds, self.search.solutions(index))
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
        return_train_score,
        error_score,
    ):
        """Score evaluated points like ``_fit_and_score`` results, without fitting.

        Returns
        -------
        list of dict
            One per (candidate, split), candidates outer, in the format of
            scikit-learn's ``_fit_and_score`` (``fit_time`` is the point's
            evaluation time shared evenly among the folds).
        """
        n_splits = len(self.folds)
        history = self.search.history
        if (
            self.metrics is not None
            and not return_train_score
            and hasattr(self.search, "predictions")
        ):
            return self._score_predictions(indices, y)
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
                model = self._model(fold, params, self.search.solutions(index)[k])
                entry = {
                    "fit_error": None,
                    "n_test_samples": fold.test.size,
                    "fit_time": history[index]["time"] / n_splits,
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

    def _score_predictions(self, indices, y):
        """:meth:`score` from the search's validation predictions.

        Every point of a fold is scored at once; ``score_time`` is the fold's
        share per point.
        """
        n_splits, n_points = len(self.folds), len(indices)
        history = self.search.history
        offset = self.encoding.context.get("offset", 0.0)
        per_point = [self.search.predictions(index) for index in indices]
        out = [None] * (n_points * n_splits)
        for k, fold in enumerate(self.folds):
            start = time.perf_counter()
            y_true = np.asarray(_safe_indexing(y, fold.test), dtype=np.float64)
            stacked = np.stack([point[k] for point in per_point])
            stacked = stacked.reshape(n_points, len(y_true), -1) + offset
            scores = {
                key: metric(y_true, stacked) for key, metric in self.metrics.items()
            }
            score_time = (time.perf_counter() - start) / n_points
            for i, index in enumerate(indices):
                point = {key: float(values[i]) for key, values in scores.items()}
                out[i * n_splits + k] = {
                    "fit_error": None,
                    "n_test_samples": fold.test.size,
                    "fit_time": history[index]["time"] / n_splits,
                    "test_scores": point.pop(None) if None in point else point,
                    "score_time": score_time,
                }
        return out
