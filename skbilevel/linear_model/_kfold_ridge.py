"""KFoldRidgeCV: ridge regression that chooses ``alpha`` by exact K-fold CV.

``RidgeCV``'s interface, with the K-fold cross-validation that ``RidgeCV``
offers only as a grid (``cv=K`` refits every alpha on every fold), at the
price of its efficient leave-one-out: the search service's closed-form ridge
search (:class:`~skbilevel.search.RidgePathSearch`) computes each target's
whole K-fold CV curve from one factorization per fold and finds its minimum
in a continuous box; the refit on all the data comes from the products the
folds shared. Where the closed form does not apply (sparse data with more
features than a fold's samples) the same service runs its gradient search.

The estimator is the lean counterpart of ``BilevelSearchCV(Ridge(), ...)``:
the same search and refit, without ``cv_results_`` or fold models (a
``RidgeCV`` user asks for ``alpha_``, ``best_score_`` and the fitted model).
"""

from numbers import Real

import numpy as np
import scipy.sparse as sp
from sklearn.base import MultiOutputMixin, RegressorMixin
from sklearn.callback import CallbackSupportMixin
from sklearn.linear_model import Ridge
from sklearn.linear_model._base import LinearModel
from sklearn.utils.validation import check_consistent_length, validate_data

from ..model_selection._adapters import RidgeAdapter
from ..search import (
    HyperSpace,
    RidgePathSearch,
    SearchOptions,
    SharedRows,
    as_engine_array,
    check_splits,
    engine_folds,
    fold_weights,
    make_search,
    materialize_folds,
)
from ..search._ridge_rows import normal_equations_solution
from ..utils._sklearn_compat import _check_sample_weight, _fit_context

__all__ = ["KFoldRidgeCV"]

_ADAPTER = RidgeAdapter()


def _check_alpha_bounds(alpha_bounds):
    """``(low, high)`` as two floats, checked (a bound that is not a real
    number is a TypeError, as ``RidgeCV`` says of its ``alphas``)."""
    if len(alpha_bounds) != 2:
        raise ValueError(
            "alpha_bounds must be a pair of positive numbers (low, high), got "
            f"{alpha_bounds!r}."
        )
    for a in alpha_bounds:
        if not isinstance(a, Real) or isinstance(a, (bool, np.bool_)):
            raise TypeError(
                "alpha_bounds must be a pair of positive numbers (low, high), got "
                f"{alpha_bounds!r}, with a {type(a).__name__}."
            )
    low, high = (float(a) for a in alpha_bounds)
    if not (np.isfinite(low) and np.isfinite(high) and 0 < low < high):
        raise ValueError(
            "alpha_bounds must satisfy 0 < low < high with finite values, got "
            f"{alpha_bounds!r}."
        )
    return low, high


class KFoldRidgeCV(CallbackSupportMixin, MultiOutputMixin, RegressorMixin, LinearModel):
    """Ridge regression with ``alpha`` chosen by exact K-fold cross-validation.

    A drop-in for :class:`~sklearn.linear_model.RidgeCV` that cross-validates
    on K folds (``RidgeCV`` does so only on a grid, refitting every value)
    and searches ``alpha`` in a continuous box instead of a list. For the
    squared loss the K-fold CV error is known in closed form at every
    ``alpha``: after one symmetric factorization per training fold (of its
    Gram matrix, or of its kernel when there are more features than samples),
    the validation error and its first two derivatives cost
    ``O(n_val * rank)`` per value. A scan of the box (3 points per decade)
    finds the global minimum of each target's curve, which need not be
    unimodal, and a safeguarded Newton search on the exact derivative
    polishes it. The model is then refit on all the data at ``alpha_`` (from
    the products the folds shared, for dense data: no second pass over it).

    The criterion is the mean squared error on the validation folds
    (weighted by ``sample_weight`` when given), averaged over the folds, and
    over the targets for one ``alpha`` shared by all of them. Sparse data
    with fewer samples in a fold than features have no closed form here:
    the gradient search of the same criterion runs instead (``verbose``
    says so).

    Parameters
    ----------
    alpha_bounds : tuple (low, high), default=(1e-4, 1e4)
        Box for ``alpha``, searched in log space (for every target, with
        ``alpha_per_target``).
    cv : int, cross-validation generator or iterable, default=5
        Splitting strategy, as in :func:`sklearn.model_selection.check_cv`: an
        int gives :class:`~sklearn.model_selection.KFold` (shuffled with
        ``random_state`` when it is set, else the folds of ``cv=5`` in
        ``GridSearchCV``).
    fit_intercept : bool, default=True
        Fit an unpenalized intercept (each fold centres its own training
        data, as ``Ridge`` does).
    alpha_per_target : bool, default=False
        One ``alpha`` per target (column of ``y``), each at the minimum of
        that target's own CV curve; otherwise one ``alpha`` for all, at the
        minimum of their mean.
    random_state : int, RandomState instance or None, default=None
        Shuffles the folds when ``cv`` is an int.
    verbose : int, default=0
        0: silent. 1: the factorizations chosen and one row per evaluated
        point (the scan, then the refined minimum).
    callback : callable or None, default=None
        Called with the history record of each evaluated point; return True
        to stop.

    Attributes
    ----------
    alpha_ : float or ndarray of shape (n_targets,)
        The chosen penalty: an array with ``alpha_per_target`` and a 2-d
        ``y``.
    best_score_ : float or ndarray of shape (n_targets,)
        Negative mean squared error over the validation folds at ``alpha_``
        (per target with ``alpha_per_target`` and a 2-d ``y``), as
        ``RidgeCV(scoring=None).best_score_``.
    coef_ : ndarray of shape (n_features,) or (n_targets, n_features)
        Coefficients of the model refit on all the data at ``alpha_``.
    intercept_ : float or ndarray of shape (n_targets,)
        Intercepts (0.0 with ``fit_intercept=False``).
    history_ : list of dict
        One record per evaluated point: ``alpha`` (shape ``(n_alphas,)``),
        ``lam`` (``log alpha``), ``value`` (the CV criterion: mean squared
        error averaged over targets), ``fold_values``, ``grad``, ``phase``
        (``"scan"`` or ``"root"``) and more.
    n_splits_ : int
        Number of folds.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when ``X`` has string column names.

    See Also
    --------
    sklearn.linear_model.RidgeCV : Efficient leave-one-out, or a grid on K
        folds.
    skbilevel.model_selection.BilevelSearchCV : The same search for Ridge
        in a Pipeline, with ``cv_results_`` and any scoring.

    Examples
    --------
    >>> from sklearn.datasets import load_diabetes
    >>> from skbilevel import KFoldRidgeCV
    >>> X, y = load_diabetes(return_X_y=True)
    >>> model = KFoldRidgeCV().fit(X, y)
    >>> f"{model.alpha_:.2g}", round(-model.best_score_)
    ('0.00049', 2993)
    """

    _parameter_constraints = {
        "alpha_bounds": ["array-like"],
        "cv": ["cv_object"],
        "fit_intercept": ["boolean"],
        "alpha_per_target": ["boolean"],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "callback": [None, callable],
    }

    def __init__(
        self,
        *,
        alpha_bounds=(1e-4, 1e4),
        cv=5,
        fit_intercept=True,
        alpha_per_target=False,
        random_state=None,
        verbose=0,
        callback=None,
    ):
        self.alpha_bounds = alpha_bounds
        self.cv = cv
        self.fit_intercept = fit_intercept
        self.alpha_per_target = alpha_per_target
        self.random_state = random_state
        self.verbose = verbose
        self.callback = callback

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.target_tags.multi_output = True
        return tags

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Choose ``alpha`` by exact K-fold cross-validation, then refit.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Targets.
        sample_weight : float or array-like of shape (n_samples,), default=None
            Weights of the samples, in the training loss and in the
            validation error.

        Returns
        -------
        self : KFoldRidgeCV
            Fitted estimator.
        """
        low, high = _check_alpha_bounds(self.alpha_bounds)
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y "
                "is None."
            )
        # y is checked (numeric, finite, 1- or 2-d) by the adapter's target
        # encoding below: validating it here too would take as long as X
        X = validate_data(
            self, X, accept_sparse=["csr", "csc", "coo"], dtype=[np.float64, np.float32]
        )
        check_consistent_length(X, y)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(
                sample_weight, X, dtype=np.float64, ensure_non_negative=True
            )
        metadata = None if sample_weight is None else {"sample_weight": sample_weight}
        root_ctx = self._init_callback_context(max_subtasks=2).call_on_fit_task_begin(
            estimator=self, X=X, y=y, metadata=metadata
        )
        encoding = _ADAPTER.encode_targets(self, y)
        n_outputs = encoding.n_outputs
        y = encoding.y  # the checked targets, less their offset
        _, splits = check_splits(
            self.cv, X, y, classifier=False, random_state=self.random_state
        )
        self.n_splits_ = len(splits)
        X_engine = as_engine_array(X)
        folds = materialize_folds(X_engine, y, splits, dtype=np.float64)
        rows = None
        if not sp.issparse(X_engine):
            rows = SharedRows(X_engine, splits, self.fit_intercept)
        per_target = self.alpha_per_target and n_outputs > 1
        space = HyperSpace.from_values(
            "alpha",
            low,
            high,
            log_sign=1,
            structure="outputs" if per_target else "scalar",
        )
        engine = engine_folds(
            folds,
            encoding,
            fold_weights(folds, y, sample_weight, lambda y_train, w: w),
            penalty=lambda n_features: space.penalty(n_features, n_outputs),
            fit_intercept=self.fit_intercept,
            dtype=np.float64,
        )
        options = SearchOptions(verbose=self.verbose, callback=self.callback)
        search = make_search(engine, space, options, keep_solutions=True, rows=rows)
        result = search.run(callback_ctx=root_ctx, owner=self)
        self.history_ = result.history
        alpha = np.exp(result.lam)
        self.alpha_ = alpha if per_target else float(alpha[0])
        if per_target:
            self.best_score_ = -self._target_errors(
                folds, y, sample_weight, search.solutions(result.best_index)
            )
        else:  # the search's criterion itself: the MSE averaged over targets
            self.best_score_ = -float(result.value)
        refit_ctx = root_ctx.subcontext(task_name="refit")
        refit_ctx.call_on_fit_task_begin(estimator=self, X=X, y=y, metadata=metadata)
        self._refit(X, X_engine, y, sample_weight, search, result, encoding)
        fitted = self._fitted_attributes
        for ctx in (refit_ctx, root_ctx):
            ctx.call_on_fit_task_end(
                estimator=self,
                X=X,
                y=y,
                metadata=metadata,
                reconstruction_attributes=fitted,
            )
        return self

    def _fitted_attributes(self):
        """What a callback needs to rebuild the fitted model."""
        names = ("coef_", "intercept_", "n_features_in_", "alpha_")
        return {name: getattr(self, name) for name in names}

    def _target_errors(self, folds, y, sample_weight, solutions):
        """Each target's mean squared error on the validation folds at the
        fold solutions (weighted by the samples' weights), averaged over the
        folds: shape (n_targets,)."""
        errors = []
        for fold, (coef, intercept) in zip(folds, solutions):
            # the engine's solutions fit y less its offset: so do the targets
            predicted = np.asarray(fold.X_test @ coef)
            if intercept is not None:
                predicted = predicted + intercept
            squared = (y[fold.test] - predicted) ** 2
            weight = None if sample_weight is None else sample_weight[fold.test]
            errors.append(np.average(squared, axis=0, weights=weight))
        return np.mean(errors, axis=0)

    def _refit(self, X, X_engine, y, sample_weight, search, result, encoding):
        """``coef_`` and ``intercept_`` at ``alpha_`` on all the data, as
        ``Ridge``'s cholesky solver computes them: from the folds' shared
        products where the closed form kept them (large dense data), else
        from the normal equations of all rows (more samples than features),
        else ``Ridge(alpha=alpha_).fit`` (its kernel form for dense data; for
        sparse data with more features than samples, its iterative solver)."""
        found = None
        if isinstance(search, RidgePathSearch):
            rows = search.rows
            if rows is not None and rows.worth_sharing():
                found = search.all_rows_solution(result.best_index)
            elif X_engine.shape[0] >= X_engine.shape[1]:
                # small dense data (the folds had their own products) or
                # sparse data: the normal equations of all rows, exactly
                # (Ridge's own solver for sparse data is iterative)
                found = normal_equations_solution(
                    X_engine,
                    y.reshape(len(y), -1),
                    sample_weight,
                    np.broadcast_to(np.asarray(self.alpha_, float), y.size // len(y)),
                    self.fit_intercept,
                )
            search.release_rows()
        one_dim = encoding.context["target_ndim"] == 1
        if found is None:
            targets = y + encoding.context["offset"]  # the checked y, to round-off
            ridge = Ridge(
                alpha=self.alpha_, fit_intercept=self.fit_intercept, solver="auto"
            ).fit(X, targets if one_dim else targets.reshape(len(y), -1), sample_weight)
            self.coef_, self.intercept_ = ridge.coef_, ridge.intercept_
            return
        coef, intercept = found[:2]
        # Ridge's shapes and dtypes: one target's coef_ is 1-d for a 1-d y
        coef = coef.astype(X.dtype, copy=False)
        intercept = (intercept + encoding.context["offset"]).astype(X.dtype)
        if one_dim:
            coef, intercept = coef[0], intercept[0]
        self.coef_ = coef
        self.intercept_ = intercept if self.fit_intercept else 0.0
