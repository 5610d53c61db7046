"""Fold models from the search's solutions, scored as GridSearchCV scores them.

No candidate is fit by scikit-learn during a search: every evaluated point's
fold models are the user's estimator (or Pipeline, its prefix steps fitted once
per fold) given the engine's solution as fitted attributes, and scikit-learn's
own ``_score`` scores them.
"""

import time

from sklearn.base import clone

from ..utils._sklearn_compat import _check_method_params, _safe_indexing, _score

__all__ = ["FoldModels"]


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

    def _model(self, fold, params, solution):
        """The user's estimator fitted on ``fold`` from an engine solution."""
        model = clone(self.estimator).set_params(**params)
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
