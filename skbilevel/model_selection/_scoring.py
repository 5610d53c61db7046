"""Fold models from the search's solutions, scored as GridSearchCV scores them.

No candidate is fit by scikit-learn during a search: every evaluated point's
fold models are the user's estimator (or Pipeline, its prefix steps fitted once
per fold) given the engine's solution as fitted attributes, and scikit-learn's
own ``_score`` scores them.
"""

import copy
import time
from inspect import getattr_static

import numpy as np
import scipy.sparse as sp
from scipy.special import expit, softmax
from sklearn.base import ClassifierMixin, RegressorMixin, clone
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline

from ..objectives._products import grouped
from ..utils._sklearn_compat import _check_method_params, _safe_indexing, _score
from ._adapters import LogisticRegressionAdapter, RidgeAdapter
from ._space import estimator_params

__all__ = ["FoldModels", "prediction_metrics"]

# Decisions of the validation folds computed by one product of a shared
# matrix, at most (several folds' coefficients at once; see _shared_products).
_GROUP_BYTES = 64 * 2**20


def _squared_errors(y, predictions):
    """Per-point, per-output sums of squared errors and of squared deviations.

    ``predictions`` has shape (n_points, n_samples, n_outputs); the sums have
    shape (n_points, n_outputs) and (n_outputs,).
    """
    y = y.reshape(len(y), -1)
    error = np.sum((predictions - y) ** 2, axis=1)
    total = np.sum((y - y.mean(axis=0)) ** 2, axis=0)
    return error, total, len(y)


def _r2(y, predictions, classes=None):
    # r2_score(multioutput="uniform_average", force_finite=True)
    error, total, _ = _squared_errors(y, predictions)
    constant = total == 0
    scores = np.where(
        constant,
        np.where(error == 0, 1.0, 0.0),
        1 - error / np.where(constant, 1.0, total),
    )
    return scores.mean(axis=1)


def _neg_mse(y, predictions, classes=None):
    error, _, n = _squared_errors(y, predictions)
    return -np.mean(error / n, axis=1)


def _neg_rmse(y, predictions, classes=None):
    error, _, n = _squared_errors(y, predictions)
    return -np.mean(np.sqrt(error / n), axis=1)


def _accuracy(y, decisions, classes):
    # LogisticRegression.predict: the sign of one decision, else the argmax
    if decisions.shape[2] == 1:
        predicted = classes[(decisions[..., 0] > 0).astype(int)]
    else:
        predicted = classes[np.argmax(decisions, axis=2)]
    return np.mean(predicted == y, axis=1)


def _neg_log_loss(y, decisions, classes):
    # log_loss(y, predict_proba): probabilities clipped to [eps, 1 - eps]
    if decisions.shape[2] == 1:
        positive = expit(decisions[..., 0])
        proba = np.stack([1 - positive, positive], axis=2)
    else:
        proba = softmax(decisions, axis=2)
    eps = np.finfo(proba.dtype).eps
    true = proba[:, np.arange(len(y)), np.searchsorted(classes, y)]
    return np.mean(np.log(np.clip(true, eps, 1 - eps)), axis=1)


# scorer name -> the metric as a function of (y_true, responses, classes),
# equal to scikit-learn's scorer of that name (unweighted): responses are the
# predictions of a regressor, the decision values of a classifier
_REGRESSION_METRICS = {
    "r2": _r2,
    "neg_mean_squared_error": _neg_mse,
    "neg_root_mean_squared_error": _neg_rmse,
}
_CLASSIFICATION_METRICS = {"accuracy": _accuracy, "neg_log_loss": _neg_log_loss}


def _inherited_score(estimator, owner):
    """Whether ``estimator.score`` is ``owner``'s (not overridden)."""
    return getattr_static(type(estimator), "score", None) is getattr_static(
        owner, "score"
    )


def prediction_metrics(scoring, estimator, adapter, score_params):
    """The metrics of ``scoring`` as functions of the fold models' responses.

    Every fold model is linear: its validation predictions (a regressor) or
    decision values (a classifier) follow from the search's fold solutions
    with one product per fold, without building the models, and the common
    metrics are computed for all points at once (as ``RidgeCV`` scores its
    alphas): ``r2`` (a regressor's default ``score``), the (root) mean
    squared error of ``Ridge``; ``accuracy`` (a classifier's default
    ``score``) and ``neg_log_loss`` of ``LogisticRegression`` (these classes
    exactly, alone or as the last step of a plain ``Pipeline``). Anything
    else (other metrics, callables, weighted scoring, subclasses and other
    estimators, validation folds of one sample) is scored through the fold
    models.

    Returns
    -------
    dict or None
        ``{None: metric}`` for a single metric, ``{name: metric}`` for several,
        None when the fold models must be scored.
    """
    final = estimator.steps[-1][1] if isinstance(estimator, Pipeline) else estimator
    if score_params or type(estimator) not in (Pipeline, type(final)):
        return None  # a Pipeline subclass may score or predict otherwise
    # the classes themselves: a registered subclass may predict otherwise
    if type(final) is Ridge and type(adapter) is RidgeAdapter:
        metrics, mixin, default = _REGRESSION_METRICS, RegressorMixin, _r2
    elif type(final) is LogisticRegression and type(adapter) is (
        LogisticRegressionAdapter
    ):
        metrics, mixin, default = _CLASSIFICATION_METRICS, ClassifierMixin, _accuracy
    else:
        return None
    if scoring is None:
        plain = _inherited_score(final, mixin) and (
            final is estimator or _inherited_score(estimator, Pipeline)
        )
        return {None: default} if plain else None
    if isinstance(scoring, str):
        names = {None: scoring}
    elif isinstance(scoring, (list, tuple, set)):
        names = {name: name for name in scoring}
    elif isinstance(scoring, dict):
        names = dict(scoring)
    else:
        return None
    if not all(isinstance(n, str) and n in metrics for n in names.values()):
        return None
    return {key: metrics[name] for key, name in names.items()}


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

    def _model(self, fold, params, solution, template=None):
        """The user's estimator fitted on ``fold`` from an engine solution
        (a copy of ``template``, the estimator cloned with ``params``, when
        given: one clone for many folds)."""
        if template is None:
            template = self._template(params)
        model = copy.deepcopy(template)
        final = model.steps[-1][1] if self.split.final_name is not None else model
        coef, intercept = solution
        self.adapter.set_solution(final, coef, intercept, self.encoding)
        final.n_features_in_ = fold.n_features_in
        if fold.feature_names_in is not None:
            final.feature_names_in_ = fold.feature_names_in
        if fold.prefix is not None:
            model.steps = list(fold.prefix.steps) + [model.steps[-1]]
        return model

    def _template(self, params):
        """The unfitted estimator with ``params`` set, to copy per fold."""
        return clone(self.estimator).set_params(
            **estimator_params(self.search.space, params)
        )

    def models(self, params, index):
        """The fitted fold models at evaluated point ``index`` (list per fold)."""
        template = self._template(params)
        return [
            self._model(fold, params, solution, template)
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
        if self.metrics is not None and not return_train_score:
            scored = self._score_responses(indices, y)
            if scored is not None:
                return scored
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

    def _responses(self, indices):
        """Every fold model's validation predictions (decision values of a
        classifier) at evaluated points ``indices``: per fold, an array of
        shape (n_points, n_val, n_outputs). One product per fold for all the
        points (a fold that reads its rows of a shared ``X`` in place
        multiplies all of ``X``: once, not once per point)."""
        offset = self.encoding.context.get("offset", 0.0)
        if hasattr(self.search, "predictions"):  # the closed form has them
            return [fold + offset for fold in self.search.predictions(indices)]
        # the iterative search's own, where it kept them at every point
        kept = getattr(self.search, "kept_predictions", None)
        found = None if kept is None else kept(indices)
        if found is not None:
            return [fold + offset for fold in found]
        kept = [self.search.solutions(index) for index in indices]
        per_fold = [
            [np.reshape(point[k][0], (point[k][0].shape[0], -1)) for point in kept]
            for k in range(len(self.folds))
        ]
        products = _shared_products(self.folds, per_fold)
        out = []
        for k, fold in enumerate(self.folds):
            coefs = per_fold[k]
            decisions = products[k]
            if decisions is None:
                decisions = fold.X_test @ np.hstack(coefs)
            # every point has one column per output, points side by side
            n_val, width = decisions.shape[0], coefs[0].shape[1]
            decisions = decisions.reshape(n_val, len(kept), width).transpose(1, 0, 2)
            if kept[0][k][1] is not None:
                intercepts = np.stack([point[k][1] for point in kept])
                decisions = decisions + intercepts.reshape(len(kept), 1, width)
            out.append(decisions + offset)
        return out

    def _score_responses(self, indices, y):
        """:meth:`score` from the fold models' responses, or None when a
        validation fold lacks a class (scikit-learn's log-loss then errs:
        the fold models give its ``error_score``).

        Every point of a fold is scored at once; ``score_time`` is the fold's
        share per point.
        """
        n_splits, n_points = len(self.folds), len(indices)
        history = self.search.history
        classes = self.encoding.context.get("classes_")
        # a NumPy y directly: _safe_indexing's dispatch costs more than the
        # indexing on small data
        y_folds = [
            y[fold.test]
            if isinstance(y, np.ndarray)
            else np.asarray(_safe_indexing(y, fold.test))
            for fold in self.folds
        ]
        if any(y_fold.shape[0] < 2 for y_fold in y_folds):
            return None  # r2 of one sample is undefined: scikit-learn's NaN
        if classes is not None:
            if any(np.unique(y_fold).size != classes.size for y_fold in y_folds):
                return None
        else:
            y_folds = [y_fold.astype(np.float64) for y_fold in y_folds]
        per_fold = self._responses(indices)
        out = [None] * (n_points * n_splits)
        for k, fold in enumerate(self.folds):
            start = time.perf_counter()
            scores = {
                key: metric(y_folds[k], per_fold[k], classes)
                for key, metric in self.metrics.items()
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


def _grouped_forward(source, blocks):
    """``source @ block`` for each block, one pass over ``source``, in float64.

    Float32 data (kept so on the host for a search on the GPU) are converted
    a band of rows at a time (at most :data:`_GROUP_BYTES`): NumPy's product
    of a float64 block with a transposed float32 matrix, the one-pass form of
    :func:`~skbilevel.objectives._products.grouped`, does not call BLAS
    (200,000 x 1000 rows, 15 columns: 2.43 s against 0.49 s converting
    first, with one BLAS thread; 3.28 s against 0.38 s with two), and a
    whole-matrix conversion would be the float64 copy of ``X`` the host was
    spared. (The folds' own rows, ``X_test @ coefs``, take BLAS's path
    either way.)
    """
    if sp.issparse(source) or source.dtype == np.float64 or not source.shape[0]:
        return grouped(source, source.T, "forward", blocks)
    step = max(1, _GROUP_BYTES // (8 * source.shape[1]))
    bands = []
    for start in range(0, source.shape[0], step):
        band = np.asarray(source[start : start + step], dtype=np.float64)
        bands.append(grouped(band, band.T, "forward", blocks))
    return [np.concatenate(parts) for parts in zip(*bands)]


def _shared_products(folds, per_fold):
    """Every fold's validation decisions ``X_test @ hstack(coefs)`` where the
    folds read their validation rows in place from one matrix: products of
    that matrix with several folds' coefficients at once (one pass over it
    for those folds instead of one each, at most :data:`_GROUP_BYTES` of
    decisions at a time), then each fold's rows. ``None`` per fold where the
    folds have rows of their own."""
    sources = [getattr(fold.X_test, "source", None) for fold in folds]
    if (
        len(folds) < 2
        or any(source is None or source is not sources[0] for source in sources)
        or not (isinstance(sources[0], np.ndarray) or sp.issparse(sources[0]))
    ):
        return [None] * len(folds)
    source = sources[0]
    blocks = [np.hstack(coefs) for coefs in per_fold]
    out, start = [], 0
    while start < len(blocks):
        stop, width = start + 1, blocks[start].shape[1]
        while (
            stop < len(blocks)
            and (width + blocks[stop].shape[1]) * source.shape[0] * 8 <= _GROUP_BYTES
        ):
            width += blocks[stop].shape[1]
            stop += 1
        products = _grouped_forward(source, blocks[start:stop])
        out += [
            product[fold.X_test.rows]
            for fold, product in zip(folds[start:stop], products)
        ]
        start = stop
    return out
