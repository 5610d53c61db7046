"""The folds of one search: splits, Pipeline prefix fits, weights, device placement.

Every evaluated point of a gradient search is scored on the same splits, so
they are materialized once:

1. :func:`check_splits` turns ``cv`` into a list of (train, validation) index
   arrays, checked as scikit-learn's searches check them (boolean masks
   accepted, a splitter whose ``get_n_splits`` disagrees with ``split``
   rejected);
2. :func:`materialize_folds` fits the steps of a Pipeline before the searched
   estimator on each training fold, once (they do not depend on the searched
   parameter), and keeps the transformed design matrices of both sides;
   without a Pipeline, each fold's rows are copies or, where copies would
   cost more memory than their speed is worth, :class:`RowView` of one
   shared ``X``;
3. :func:`fold_weights` gives each fold its training-loss and validation
   weights (class weights are computed on the training fold, as ``fit`` on
   that fold would compute them);
4. :func:`engine_folds` builds the engine's inner objective and validation
   loss of each fold, in the namespace and on the device the engine computes
   on (``device="cuda"``: each fold's data, or the shared ``X``, is copied
   to the GPU once).
"""

from functools import partial
from numbers import Integral
from typing import NamedTuple

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import KFold, StratifiedKFold, check_cv
from sklearn.pipeline import Pipeline
from sklearn.utils import check_array
from sklearn.utils.parallel import Parallel, delayed

from ..objectives import InnerObjective, ValidationLoss
from ..objectives.linear import _is_cupy, take_rows
from ..outer import Fold
from ..utils._array_api import device_of, get_namespace, is_sparse, nbytes
from ..utils._device import to_cuda
from ..utils._sklearn_compat import (
    _check_method_params,
    _get_feature_names,
    _safe_indexing,
    pipeline_routed_params,
)

__all__ = [
    "FoldData",
    "RowView",
    "STORAGES",
    "SplitEstimator",
    "check_splits",
    "engine_folds",
    "fold_weights",
    "materialize_folds",
    "route_fit_params",
    "split_estimator",
]


# -- splits ---------------------------------------------------------------------
def check_splits(cv, X, y, *, classifier, random_state=None, split_params=None):
    """Materialize the cross-validation splits once, checked.

    Parameters
    ----------
    cv : int, cross-validation generator, iterable or None
        As for :func:`sklearn.model_selection.check_cv` (None: 5 folds).
    X : indexable of shape (n_samples, ...)
        Passed to ``cv.split``.
    y : array-like of shape (n_samples,) or None
        Passed to ``cv.split`` (stratification).
    classifier : bool
        Whether an int (or None) means stratified folds.
    random_state : int, RandomState instance or None, default=None
        With an int (or None) ``cv``, shuffles the folds when set.
    split_params : dict or None, default=None
        Extra arguments of ``cv.split`` (``groups``).

    Returns
    -------
    checked_cv : cross-validation generator
        ``cv`` as :func:`~sklearn.model_selection.check_cv` returns it.
    splits : list of (ndarray of int, ndarray of int)
        Train and validation indices of each split.
    """
    n_samples = X.shape[0] if hasattr(X, "shape") else len(X)
    if (cv is None or isinstance(cv, Integral)) and random_state is not None:
        n_splits = 5 if cv is None else cv
        splitter = StratifiedKFold if classifier else KFold
        cv = splitter(n_splits, shuffle=True, random_state=random_state)
    checked = check_cv(cv, y, classifier=classifier)
    split_params = split_params or {}
    n_splits = checked.get_n_splits(X, y, **split_params)
    if isinstance(n_splits, Integral) and n_splits > n_samples:
        raise ValueError(
            f"Cannot use cv with n_splits={n_splits} on n_samples={n_samples}: "
            "there must be at least as many samples as folds."
        )
    splits = [
        (_as_indices(train, n_samples, "train"), _as_indices(test, n_samples, "test"))
        for train, test in checked.split(X, y, **split_params)
    ]
    if not splits:
        raise ValueError("The cross-validation iterator yielded no split.")
    if len(splits) != n_splits:
        raise ValueError(
            "cv.split and cv.get_n_splits return inconsistent results. "
            f"Expected {n_splits} splits, got {len(splits)}"
        )
    return checked, splits


def _as_indices(part, n_samples, name):
    """One side of a split as int64 indices: indices or a boolean mask."""
    part = np.asarray(part)
    if part.dtype == bool:
        if part.shape != (n_samples,):
            raise ValueError(
                f"A boolean {name} mask must have one entry per sample "
                f"({n_samples}), got shape {part.shape}."
            )
        part = np.flatnonzero(part)
    if part.ndim != 1 or part.size == 0:
        raise ValueError(
            "Every cross-validation split needs training and validation samples; "
            f"got a {name} part of shape {part.shape}."
        )
    if not np.issubdtype(part.dtype, np.integer) or not (
        -n_samples <= part.min() and part.max() < n_samples
    ):
        raise ValueError(
            f"Split indices must be integers in [0, {n_samples}), got {part.dtype} "
            f"values in [{part.min()}, {part.max()}]."
        )
    part = part.astype(np.int64, copy=False)
    # no copy of indices already in range: K of them are as many as X has rows
    return part % n_samples if part.min() < 0 else part


def _take_rows(X, indices):
    """Rows ``indices`` (host ints) of a dense or sparse matrix of any namespace,
    or of a :class:`RowView` (a copy either way); None stays None."""
    if X is None:
        return None
    if isinstance(X, RowView):
        return take_rows(X.source, X.rows[indices])
    return take_rows(X, indices)


# -- the estimator: prefix steps and the searched final step ----------------------
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


def split_estimator(estimator):
    """``estimator`` -> :class:`SplitEstimator`.

    Parameters
    ----------
    estimator : estimator instance or Pipeline
        A bare estimator, or a Pipeline whose last step is the searched one.

    Returns
    -------
    SplitEstimator
    """
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

    Parameters
    ----------
    estimator : estimator instance or Pipeline
        The user's estimator.
    split : SplitEstimator
        ``split_estimator(estimator)``.
    fit_params : dict
        Parameters given to ``fit``.

    Returns
    -------
    prefix_params : dict
        Routed parameters of each prefix step, by step name.
    final_params : dict
        Fit parameters of the final step.
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


# -- fold data ------------------------------------------------------------------
# Fold storage (see materialize_folds): copies of each fold's rows, or views
# of one shared X. A view costs no memory, but its training products run over
# every row of X (the held-out ones weighted by zero): n / n_train times a
# copy's, 1.25 for 5 folds. Measured (HOAGLogisticRegression, one BLAS thread,
# stratified folds, CPU seconds, medians of 3, copies -> views, the ratio's
# range over two such runs): sparse 50000 x 20000 CSR (24 MB; copies 121 MB),
# 5 folds: 4.0 -> 5.1 (1.24-1.28x); 10 folds: 9.1 -> 10.3 (1.13-1.14x); 2
# folds: 1.1 -> 2.3 (1.8-2.0x); dense 20000 x 300 (48 MB), 5 folds: 6.7 -> 7.6
# (1.13-1.26x); run.py --quick's small sets, where the copies take under
# 5 MB: 1.07x (sparse 3200 x 2000), 1.08x (Fashion 2000 x 196), 1.22x
# (digits, 10 classes). Hence views where the copies would take more
# than _VIEW_BYTES_PER_SLOWDOWN per unit of extra product time (n / smallest
# n_train - 1): above 64 MiB of copies for 5 folds, 28 MiB for 10, 256 MiB
# for 2; copies below, where the memory is cheap and the time is not.
# Folds evaluated in one process on 12 MiB of shared data or more are solved
# in lockstep (skbilevel.outer._lockstep), which makes the views faster than
# the copies on large data (sparse 50000 x 20000: 1.10 s against 1.26 s,
# benchmarks/memory.py; dense 20000 x 400: 3.3 s against 6.1 s) but not near
# the threshold (dense 15000 x 120, 13.7 MB: 1.6 s against 1.1 s): the rule
# stays a memory rule.
_VIEW_BYTES_PER_SLOWDOWN = 256 * 2**20
STORAGES = ("auto", "copy", "view")


class RowView:
    """Rows of a matrix, read in place: one fold's side in the "view" storage.

    Supports what the fold models need of their validation data, ``view @ coef``
    (``(X @ coef)[rows]``: the product runs over every row of ``X``);
    :func:`engine_folds` hands ``source`` and ``rows`` to the objectives.

    Parameters
    ----------
    source : array or sparse matrix of shape (n_samples, n_features)
    rows : ndarray of int of shape (n_rows,)
    """

    ndim = 2

    def __init__(self, source, rows):
        self.source, self.rows = source, rows

    @property
    def shape(self):
        return (len(self.rows), self.source.shape[1])

    @property
    def dtype(self):
        return self.source.dtype

    def __matmul__(self, other):
        product = self.source @ other
        xp = get_namespace(product)
        rows = xp.asarray(self.rows, device=device_of(product))
        return xp.take(product, rows, axis=0)

    def copy(self):
        """The rows as a matrix of their own."""
        return take_rows(self.source, self.rows)


def _viewable(X):
    """Whether the objectives read rows of ``X`` in place (NumPy / SciPy, CuPy)."""
    return isinstance(X, np.ndarray) or is_sparse(X) or _is_cupy(X)


def _storage(X, splits, storage, dtype=None):
    """``"copy"`` or ``"view"``: how the folds of ``X`` hold their rows (the
    copies sized in ``dtype``, the engine's, when given)."""
    if storage not in STORAGES:
        raise ValueError(f"storage must be one of {STORAGES}, got {storage!r}.")
    if storage == "view" and not _viewable(X):
        raise ValueError(
            "storage='view' needs NumPy / SciPy or CuPy / cupyx data, got "
            f"{type(X).__name__}."
        )
    if storage != "auto":
        return storage
    if not _viewable(X):
        return "copy"
    n_samples = X.shape[0]
    copied = sum(len(train) + len(test) for train, test in splits)
    copies = nbytes(X) * copied / n_samples
    if dtype is not None:  # (a sparse matrix's indices scaled too: roughly)
        copies *= np.dtype(dtype).itemsize / np.dtype(X.dtype).itemsize
    slowdown = n_samples / min(len(train) for train, _ in splits) - 1.0
    return "view" if copies > _VIEW_BYTES_PER_SLOWDOWN * slowdown else "copy"


class FoldData(NamedTuple):
    """One split with the data the engine and the fold models need.

    Attributes
    ----------
    train, test : ndarray of int
        Sample indices.
    prefix : Pipeline or None
        The prefix steps fitted on the training fold.
    X_train, X_test : array, sparse matrix or RowView
        (Transformed) data of the training and validation folds, in the
        namespace the engine computes in: their own matrices, or
        :class:`RowView` of one shared matrix (``storage="view"`` of
        :func:`materialize_folds`).
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


def as_engine_array(X, *, keep_float32=False):
    """Host data for the engine: float64 ndarray or CSR.

    The search of :class:`~skbilevel.model_selection.BilevelSearchCV` runs in
    float64 whatever the input dtype: its tolerances (down to 1e-8 relative)
    are below float32 resolution.

    Parameters
    ----------
    X : array-like or sparse matrix of shape (n_samples, n_features)
    keep_float32 : bool, default=False
        Leave float32 data float32 on the host, for a search on the GPU:
        :func:`engine_folds` (``dtype=np.float64``) converts it there, after
        a transfer of half the bytes, and the host holds no float64 copy (on
        1,000,000 x 1000 float32 data, the host conversion took 4 s of a 14 s
        search on an H200). The conversion is exact: the fold models' float64
        products on the host see the same numbers.

    Returns
    -------
    ndarray or csr_matrix of float64 (or float32 with ``keep_float32``)
    """
    dtype = [np.float64, np.float32] if keep_float32 else np.float64
    return check_array(X, accept_sparse="csr", dtype=dtype, input_name="X")


def fit_steps(steps, X, y, prefix_params, indices=None):
    """Fit ``steps`` in order on the rows ``indices`` (all when None), as
    ``Pipeline.fit`` fits the steps before its last; return their output.

    Parameters
    ----------
    steps : list of (str, estimator)
        Fitted in place ("passthrough" and None skipped).
    X, y : the user's data
    prefix_params : dict
        Routed fit parameters per step name (:func:`route_fit_params`).
    indices : ndarray of int or None, default=None
        Rows to fit on (a training fold).
    """
    Xt = X if indices is None else _safe_indexing(X, indices)
    y_part = y if indices is None or y is None else _safe_indexing(y, indices)
    for name, step in steps:
        if step is None or isinstance(step, str):  # "passthrough"
            continue
        params = {
            method: _check_method_params(X, params=values, indices=indices)
            for method, values in prefix_params.get(name, {}).items()
        }
        if hasattr(step, "fit_transform"):
            Xt = step.fit_transform(Xt, y_part, **params.get("fit_transform", {}))
        else:
            step.fit(Xt, y_part, **params.get("fit", {}))
            Xt = step.transform(Xt, **params.get("transform", {}))
    return Xt


def _fit_prefix(prefix, X, y, train, test, prefix_params):
    """Fit the prefix steps on one training fold; transform both folds."""
    prefix = clone(prefix)
    Xt = fit_steps(prefix.steps, X, y, prefix_params, indices=train)
    return prefix, Xt, prefix.transform(_safe_indexing(X, test))


def materialize_folds(
    X,
    y,
    splits,
    *,
    prefix=None,
    prefix_params=None,
    n_jobs=None,
    feature_names=None,
    storage="auto",
    dtype=None,
):
    """The data of every fold, the prefix steps fitted once per training fold.

    Without a prefix, the folds' rows are copies of the rows of ``X`` or, in
    the "view" storage, read in place: the folds then hold no data of their
    own, and their products run over every row of ``X``. ``"auto"`` views the
    rows when the copies would be large next to that extra time (more than
    64 MiB for 5 folds; see the rule above :class:`RowView`). With a prefix,
    each fold has its own transformed data: copies.

    Parameters
    ----------
    X : array or sparse matrix of shape (n_samples, n_features), or indexable
        Without ``prefix``: the engine's array (validated, any namespace).
        With ``prefix``: the user's data, given to the prefix steps.
    y : array-like of shape (n_samples, ...) or None
        Targets, seen by the prefix steps.
    splits : list of (ndarray, ndarray)
        Train and validation indices (:func:`check_splits`).
    prefix : Pipeline or None, default=None
        Steps fitted on each training fold (cloned).
    prefix_params : dict or None, default=None
        Their routed fit parameters.
    n_jobs : int or None, default=None
        Prefix fits in parallel: threads by default; an active joblib backend
        (dask...) takes them elsewhere (they are pure functions of the data).
    feature_names : ndarray of str or None, default=None
        Without ``prefix``: the names of the columns of the user's data.
    storage : {"auto", "copy", "view"}, default="auto"
        Without ``prefix``: copies of each fold's rows, :class:`RowView` of
        ``X`` (NumPy / SciPy or CuPy / cupyx data), or the rule's choice.
        Results agree up to round-off.
    dtype : dtype or None, default=None
        The dtype the engine computes in, when it is not ``X``'s (float32
        host data of a search on the GPU, converted there): the rule sizes
        the copies in it.

    Returns
    -------
    list of FoldData
    """
    if prefix is None:
        copy = _storage(X, splits, storage, dtype) == "copy"
        take = _take_rows if copy else RowView
        return [
            FoldData(
                train,
                test,
                None,
                take(X, train),
                take(X, test),
                X.shape[1],
                feature_names,
            )
            for train, test in splits
        ]
    fitted = Parallel(n_jobs=n_jobs, prefer="threads")(
        delayed(_fit_prefix)(prefix, X, y, train, test, prefix_params or {})
        for train, test in splits
    )
    folds = []
    for (train, test), (fitted_prefix, Xt_train, Xt_test) in zip(splits, fitted):
        X_train = as_engine_array(Xt_train)
        folds.append(
            FoldData(
                train,
                test,
                fitted_prefix,
                X_train,
                as_engine_array(Xt_test),
                X_train.shape[1],
                _get_feature_names(Xt_train),
            )
        )
    return folds


def fold_weights(folds, y, sample_weight, training_weights):
    """Training-loss and validation weights of each fold.

    Parameters
    ----------
    folds : list of FoldData
    y : ndarray of shape (n_samples, ...)
        Raw targets (class weights are computed from the training fold's).
    sample_weight : ndarray of shape (n_samples,) or None
        Checked user weights: they weight both the training loss and the
        validation mean.
    training_weights : callable
        ``(y_train, sample_weight_train) -> weights or None``: the adapter's
        weights of the training loss (class weights times sample weights).

    Returns
    -------
    list of (ndarray or None, ndarray or None)
    """
    weights = []
    for fold in folds:
        train = None if sample_weight is None else sample_weight[fold.train]
        test = None if sample_weight is None else sample_weight[fold.test]
        weights.append((training_weights(y[fold.train], train), test))
    return weights


def _on_device(X, y, weight, device, moved=None, dtype=None):
    """``(X, y, weight)`` of one side of a fold, in the namespace of the engine.

    ``device="cuda"`` copies the design matrix to the GPU once (CSR stays
    sparse, as cupyx CSR), converted there to ``dtype`` when given; ``moved``
    (a dict) keeps what was copied, so that a matrix or targets the folds share
    are copied once for all of them. The targets and weights, host arrays,
    follow ``X``: its namespace, device and dtype.
    """
    moved = {} if moved is None else moved

    def once(a, move):
        if a is None:
            return None
        if id(a) not in moved:
            moved[id(a)] = (a, move(a))  # keeps ``a`` alive: its id stays its own
        return moved[id(a)][1]

    if device == "cuda":
        X = once(X, partial(to_cuda, dtype=dtype))
    xp, where = get_namespace(X), device_of(X)

    def move(a):
        return xp.asarray(a, dtype=X.dtype, device=where)

    return X, once(y, move), None if weight is None else move(weight)


def engine_folds(
    folds, encoding, weights, *, penalty, fit_intercept, device=None, dtype=None
):
    """One engine :class:`~skbilevel.outer.Fold` per materialized split.

    Parameters
    ----------
    folds : list of FoldData
    encoding : TargetEncoding
        Encoded targets of all samples (host), loss, outputs, outer scale.
    weights : list of (ndarray or None, ndarray or None)
        Training-loss and validation weights of each fold (:func:`fold_weights`).
    penalty : callable
        ``n_features -> L2Penalty`` (the structure of the hyperparameters).
    fit_intercept : bool
    device : {None, "cpu", "cuda"}, default=None
        ``"cuda"``: each fold's data is copied to the GPU once.
    dtype : dtype or None, default=None
        With ``device="cuda"``: the dtype of the data on the GPU (converted
        there, after the copy); None keeps the host data's.

    Returns
    -------
    list of Fold
    """
    engine, moved = [], {}
    n_outputs, loss = encoding.n_outputs, encoding.loss
    for fold, (train_weight, test_weight) in zip(folds, weights):
        test_rows, shared = None, False
        if isinstance(fold.X_train, RowView):
            # The training loss of a view: every row of X, weighted by the
            # fold's weights and zero off its training rows (a row the split
            # repeats counts as often). Its products cost what rows would
            # (X @ coef over all rows either way), and it stays an ordinary
            # weighted objective on a matrix: what reads (model.X, y,
            # sample_weight), the direct and closed-form squared-loss solves
            # or the many-penalty search, sees the same problem. The
            # validation loss takes its rows instead: its mean, its sample
            # count and its per-row losses are those of the validation rows.
            X_train, y_train = fold.X_train.source, encoding.y
            train_weight = np.bincount(
                fold.train, weights=train_weight, minlength=X_train.shape[0]
            )
            X_test, test_rows = fold.X_test.source, fold.test
            shared = True
        else:
            X_train, y_train = fold.X_train, encoding.y[fold.train]
            X_test = fold.X_test
        X_train, y_train, train_weight = _on_device(
            X_train, y_train, train_weight, device, moved, dtype
        )
        X_test, y_test, test_weight = _on_device(
            X_test, encoding.y[fold.test], test_weight, device, moved, dtype
        )
        inner = InnerObjective(
            X_train,
            y_train,
            loss,
            penalty(fold.n_features_in),
            n_outputs,
            fit_intercept,
            train_weight,
            shared=shared,
        )
        outer = ValidationLoss(
            X_test,
            y_test,
            loss,
            n_outputs,
            fit_intercept,
            test_weight,
            scale=encoding.outer_scale,
            rows=test_rows,
            # the training loss's products cover the validation rows
            sibling=inner if shared else None,
        )
        engine.append(Fold(inner, outer))
    return engine
