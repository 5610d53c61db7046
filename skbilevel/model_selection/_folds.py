"""The cross-validation splits, materialized once for the whole search.

The searched parameter belongs to the last step of the estimator, so every
earlier Pipeline step (scaling, feature extraction...) is the same for all
evaluated points: it is fit on each training fold and applied to its
validation fold exactly once, as GridSearchCV would for each candidate. The
engine then only sees, per fold, float64 design matrices of the transformed
data; the fold models handed to the scorers are the user's Pipeline with
these fitted steps and a final step carrying the engine's solution.
"""

from typing import NamedTuple

import numpy as np
from sklearn.base import clone
from sklearn.pipeline import Pipeline
from sklearn.utils import check_array
from sklearn.utils.parallel import Parallel, delayed

from ..objectives import InnerObjective, L2Penalty, ValidationLoss
from ..outer import Fold, take_rows
from ..utils._array_api import device_of, get_namespace
from ..utils._device import to_cuda
from ..utils._sklearn_compat import (
    _check_method_params,
    _get_feature_names,
    _safe_indexing,
    pipeline_routed_params,
)

__all__ = ["FoldData", "SplitEstimator", "split_estimator", "materialize_folds"]


class SplitEstimator(NamedTuple):
    """An estimator seen as ``prefix`` (fitted per fold) followed by ``final``.

    Attributes
    ----------
    prefix : Pipeline or None
        The steps before the last one, None for a bare estimator.
    final_name : str or None
        Name of the last step, None for a bare estimator.
    final : estimator instance
        The estimator whose parameter is searched.
    """

    prefix: object
    final_name: object
    final: object


class FoldData(NamedTuple):
    """One split with the data the engine and the fold models need.

    Attributes
    ----------
    train, test : ndarray of int
        Sample indices.
    prefix : Pipeline or None
        The prefix steps fitted on the training fold.
    X_train, X_test : ndarray or csr_matrix of float64
        Transformed data of the training and validation folds.
    n_features_in : int
        Features seen by the final step.
    feature_names_in : ndarray of str or None
        Their names, when the transformed data carries string column names.
    """

    train: np.ndarray
    test: np.ndarray
    prefix: object
    X_train: object
    X_test: object
    n_features_in: int
    feature_names_in: object


def split_estimator(estimator):
    """``estimator`` -> :class:`SplitEstimator`."""
    if not isinstance(estimator, Pipeline):
        return SplitEstimator(None, None, estimator)
    name, final = estimator.steps[-1]
    if final is None or isinstance(final, str):
        raise TypeError(
            "The last step of the Pipeline must be an estimator with a searchable "
            f"parameter, got {final!r}."
        )
    if getattr(estimator, "transform_input", None) is not None:
        raise ValueError("Pipelines with transform_input are not supported.")
    prefix = estimator[:-1] if len(estimator.steps) > 1 else None
    return SplitEstimator(prefix, name, final)


def route_fit_params(estimator, split, fit_params):
    """Fit parameters -> (per prefix step routed params, final step's params).

    A Pipeline routes them itself (``step__param`` without metadata routing,
    the steps' requests with it), exactly as in ``Pipeline.fit``.
    """
    if split.final_name is None:
        return {}, dict(fit_params)
    routed = pipeline_routed_params(estimator, fit_params)
    prefix_params = {}
    if split.prefix is not None:
        prefix_params = {
            name: routed[name] for name, _ in split.prefix.steps if name in routed
        }
    final_params = (
        dict(routed[split.final_name]["fit"]) if split.final_name in routed else {}
    )
    return prefix_params, final_params


def _as_engine_array(X):
    # The engine runs in float64 whatever the input dtype: its tolerances
    # (down to 1e-8 relative) are below float32 resolution.
    return check_array(X, accept_sparse="csr", dtype=np.float64, input_name="X")


def _fit_prefix(prefix, X, y, train, test, prefix_params):
    """Fit the prefix steps on one training fold; transform both folds."""
    prefix = clone(prefix)
    Xt = _safe_indexing(X, train)
    y_train = None if y is None else _safe_indexing(y, train)
    for name, step in prefix.steps:
        if step is None or isinstance(step, str):  # "passthrough"
            continue
        params = {
            method: _check_method_params(X, params=values, indices=train)
            for method, values in prefix_params.get(name, {}).items()
        }
        if hasattr(step, "fit_transform"):
            Xt = step.fit_transform(Xt, y_train, **params.get("fit_transform", {}))
        else:
            step.fit(Xt, y_train, **params.get("fit", {}))
            Xt = step.transform(Xt, **params.get("transform", {}))
    return prefix, Xt, prefix.transform(_safe_indexing(X, test))


def materialize_folds(split, X, y, splits, prefix_params, n_jobs=None):
    """Fit the prefix per fold (once) and convert every fold for the engine.

    Returns
    -------
    list of FoldData
    """
    splits = [(np.asarray(train), np.asarray(test)) for train, test in splits]
    if split.prefix is None:
        names = _get_feature_names(X)
        X_engine = _as_engine_array(X)
        return [
            FoldData(
                train,
                test,
                None,
                take_rows(X_engine, train),
                take_rows(X_engine, test),
                X_engine.shape[1],
                names,
            )
            for train, test in splits
        ]
    # Threads by default (most transformers release the GIL in NumPy); an
    # active joblib backend (dask...) takes the fits elsewhere: they are pure.
    fitted = Parallel(n_jobs=n_jobs, prefer="threads")(
        delayed(_fit_prefix)(split.prefix, X, y, train, test, prefix_params)
        for train, test in splits
    )
    folds = []
    for (train, test), (prefix, Xt_train, Xt_test) in zip(splits, fitted):
        X_train = _as_engine_array(Xt_train)
        folds.append(
            FoldData(
                train,
                test,
                prefix,
                X_train,
                _as_engine_array(Xt_test),
                X_train.shape[1],
                _get_feature_names(Xt_train),
            )
        )
    return folds


def _on_device(X, y, weight, device):
    """``(X, y, weight)`` of one side of a fold, where the engine computes.

    On ``"cuda"`` the design matrix is copied to the GPU once (CSR stays
    sparse, as cupyx CSR) and the targets and weights follow it, in its dtype.
    """
    if device != "cuda":
        return X, y, weight
    X = to_cuda(X)
    xp, where = get_namespace(X), device_of(X)
    dtype = X.dtype

    def move(a):
        return None if a is None else xp.asarray(a, dtype=dtype, device=where)

    return X, move(y), move(weight)


def engine_folds(folds, encoding, weights, *, fit_intercept, per_output, device=None):
    """One engine :class:`~skbilevel.outer.Fold` per materialized split.

    Parameters
    ----------
    folds : list of FoldData
    encoding : TargetEncoding
    weights : list of (ndarray or None, ndarray or None)
        Training-loss weights and validation weights of each fold.
    fit_intercept : bool
    per_output : bool
        One hyperparameter per output instead of one for all coefficients.
    device : {None, "cpu", "cuda"}, default=None
        Where the engine computes (``"cuda"``: each fold's data is copied to
        the GPU once).
    """
    engine = []
    n_outputs, loss = encoding.n_outputs, encoding.loss
    for fold, (train_weight, test_weight) in zip(folds, weights):
        penalty = (
            L2Penalty.per_output(fold.n_features_in, n_outputs)
            if per_output
            else L2Penalty.scalar()
        )
        X_train, y_train, train_weight = _on_device(
            fold.X_train, encoding.y[fold.train], train_weight, device
        )
        X_test, y_test, test_weight = _on_device(
            fold.X_test, encoding.y[fold.test], test_weight, device
        )
        inner = InnerObjective(
            X_train, y_train, loss, penalty, n_outputs, fit_intercept, train_weight
        )
        outer = ValidationLoss(
            X_test,
            y_test,
            loss,
            n_outputs,
            fit_intercept,
            test_weight,
            scale=encoding.outer_scale,
        )
        engine.append(Fold(inner, outer))
    return engine


def fold_model(estimator, split, fold, adapter, encoding, params, solution):
    """The user's estimator (or Pipeline) fitted on one fold, from a solution.

    Parameters
    ----------
    estimator : estimator instance
        The user's estimator, unfitted.
    split : SplitEstimator
    fold : FoldData
    adapter : EstimatorAdapter
    encoding : TargetEncoding
    params : dict
        Candidate parameters, named as in ``param_space``.
    solution : (ndarray, ndarray or None)
        Coefficients (engine layout) and intercepts of the fold.
    """
    model = clone(estimator).set_params(**params)
    final = model.steps[-1][1] if split.final_name is not None else model
    coef, intercept = solution
    adapter.set_solution(final, coef, intercept, encoding)
    final.n_features_in_ = fold.n_features_in
    if fold.feature_names_in is not None:
        final.feature_names_in_ = fold.feature_names_in
    if fold.prefix is not None:
        model.steps = list(fold.prefix.steps) + [model.steps[-1]]
    return model
