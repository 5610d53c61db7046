"""HOAGLogisticRegression: logistic regression that tunes its own L2 penalty.

A thin estimator over the search service (:mod:`skbilevel.search`): it
validates the data, encodes the labels (as ``LogisticRegression`` does, through
the same adapter as ``BilevelSearchCV(LogisticRegression())``), sets the
penalty structure, runs the shared search on its folds, and refits on all the
data at the chosen penalty.
"""

import time
import warnings
from functools import partial
from numbers import Integral, Real

import numpy as np
from scipy.special import expit, softmax
from sklearn import get_config
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.callback import CallbackSupportMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from ..hypergrad import LINEAR_SOLVERS
from ..model_selection._adapters import LogisticRegressionAdapter
from ..objectives import InnerObjective
from ..outer import INNER_SOLVERS, TOLERANCE_SCHEDULES
from ..search import (
    HyperSpace,
    SearchOptions,
    check_splits,
    engine_folds,
    fold_weights,
    make_search,
    materialize_folds,
    newton_refit,
)
from ..utils._array_api import (
    describe_placement,
    device_of,
    get_namespace,
    same_placement,
    to_numpy,
)
from ..utils._device import (
    DEVICES,
    is_host_input,
    to_cuda,
    to_host,
    validate_array_api_X,
)
from ..utils._sklearn_compat import (
    HasMethods,
    Interval,
    LinearClassifierMixin,
    StrOptions,
    _check_sample_weight,
    _fit_context,
)
from ..utils._validation import check_classification_labels

__all__ = ["HOAGLogisticRegression"]

_ADAPTER = LogisticRegressionAdapter()


def _check_C_bounds(C_bounds):
    """``(C_low, C_high)`` as two floats, checked.

    As RidgeCV checks its ``alphas``: a bound that is not a real number (a
    string, None, a bool) is a TypeError, not converted.
    """
    if len(C_bounds) != 2:
        raise ValueError(
            f"C_bounds must be a pair of positive numbers (low, high), got {C_bounds!r}."
        )
    for c in C_bounds:
        if not isinstance(c, Real) or isinstance(c, (bool, np.bool_)):
            raise TypeError(
                "C_bounds must be a pair of positive numbers (low, high), got "
                f"{C_bounds!r}, with a {type(c).__name__}."
            )
    low, high = (float(c) for c in C_bounds)
    if not (np.isfinite(low) and np.isfinite(high) and 0 < low < high):
        raise ValueError(
            f"C_bounds must satisfy 0 < low < high with finite values, got {C_bounds!r}."
        )
    return low, high


def _penalty_structure(penalty_groups, n_features):
    """``penalty_groups`` -> ``(structure, groups)`` of :class:`HyperSpace`."""
    if penalty_groups is None:
        return {"structure": "scalar"}
    if isinstance(penalty_groups, str):  # "features", checked by the constraints
        return {"structure": "features"}
    groups = np.asarray(penalty_groups)
    if groups.shape != (n_features,):
        raise ValueError(
            f"penalty_groups must give one group label per feature: expected shape "
            f"({n_features},), got {groups.shape}."
        )
    if groups.dtype.kind == "f" and not np.all(np.isfinite(groups)):
        raise ValueError("penalty_groups must not contain NaN or infinite labels.")
    return {"structure": "groups", "groups": groups}


class HOAGLogisticRegression(
    CallbackSupportMixin, LinearClassifierMixin, ClassifierMixin, BaseEstimator
):
    """Logistic regression that chooses its own L2 penalty by gradient descent.

    The penalty strength ``C`` (one for all features, one per feature, or one per
    group of features) minimizes the cross-validated log-loss. Instead of
    refitting on a grid of values, HOAG (Pedregosa, 2016) follows the
    hypergradient ``d CV-loss / d log C``: each fold's model is refit
    warm-started at every outer step, the hypergradient comes from the implicit
    function theorem, and the linear system it needs is solved by reusing the
    inner L-BFGS memory (SHINE, Ramzi et al., 2022) or by one of the other
    solvers. The model is then refit on all the data with the chosen penalty.

    The training objective is scikit-learn's:
    ``sum_i s_i loss_i + 1/2 sum_j (1 / C_j) coef_j^2`` (binary or multinomial
    log-loss, intercept not penalized), so ``C_`` means what ``C`` means in
    :class:`~sklearn.linear_model.LogisticRegression`.

    Parameters
    ----------
    penalty_groups : None, "features" or array-like of shape (n_features,), \
            default=None
        Structure of the penalty. ``None``: one ``C`` for all features.
        ``"features"``: one ``C`` per feature. An array: ``C`` shared within
        each group, ``penalty_groups[j]`` being the group label of feature ``j``.
    C_init : float or None, default=None
        Starting value of ``C``. ``None`` starts with a coarse bracket of a few
        warm-started fits from the strongest penalty down, and continues from
        the best of them.
    C_bounds : tuple (low, high), default=(1e-4, 1e4)
        Box for ``C``, searched in log space.
    cv : int, cross-validation generator or iterable, default=5
        Splitting strategy, as in :func:`sklearn.model_selection.check_cv`: an
        int gives :class:`~sklearn.model_selection.StratifiedKFold` (shuffled
        with ``random_state`` when it is set, else the same folds as
        ``GridSearchCV(cv=5)``).
    hypergradient : str or LinearSolver, default="shine-refine"
        Solver of the hypergradient linear system: one of ``"shine-refine"``
        (10 conjugate-gradient iterations preconditioned by the inner
        solver's curvature pairs, more while the hypergradient's estimated
        error is large), ``"shine"``, ``"shine-opa"``, ``"cg"``,
        ``"neumann"``, ``"truncated"``, ``"identity"``, ``"exact"``, or an
        instance from :mod:`skbilevel.hypergrad` (user guide, "Hypergradient
        solvers").
    max_iter : int, default=30
        Outer (hyperparameter) steps at most, bracket excluded.
    tol : float, default=1e-4
        Stop when the projected hypergradient (of the mean CV log-loss with
        respect to ``log(1/C)``) has a smaller Euclidean norm, or when the
        decrease of the CV loss predicted for the next step is below ``tol``
        times its value.
    inner_tol : float, default=1e-3
        Starting relative tolerance of the inner solves and linear systems; it
        decreases along ``tol_schedule``. The best point's folds are re-solved
        to ``polish_tol`` whatever this value, so a loose start costs no
        precision in the result.
    inner_max_iter : int, default=1000
        Iterations at most of each inner solve (L-BFGS iterations or Newton
        steps).
    memory_size : int, default=10
        Curvature pairs kept from each inner solve (SHINE reuses them).
    inner_solver : {"newton-cg", "lbfgs"}, default="newton-cg"
        Solver of the fold fits during the search. ``"newton-cg"``: truncated
        Newton on the exact Hessian-vector products, warm-started from the
        previous point's solutions (a few steps each; its last conjugate
        directions serve SHINE's inverse-Hessian estimate). ``"lbfgs"``:
        L-BFGS with its secant pairs shifted to the new penalty.
    polish_tol : float, default=1e-4
        Tolerance of the fold fits at the chosen ``C`` (its ``cv_loss_``) and
        of the refit on all data: they stop when no entry of the gradient of
        the training objective, divided by the sum of the sample weights,
        exceeds ``polish_tol``. That is ``LogisticRegression(tol=polish_tol)``'s
        own test (its L-BFGS solver's, on scikit-learn's scaling of the
        objective): the default matches its default ``tol``. The refit,
        warm-started from the mean of the fold solutions, also ends only
        after a Newton step shorter than ``min(0.1, 1000 polish_tol)``
        times the norm of the parameters (coefficients and intercepts): a
        start that passes the gradient test can still be far from the
        solution on high-dimensional sparse data. Lower it for more precise
        coefficients (on standardized breast_cancer, ``1e-8`` gives ``coef_``
        within 6e-7 relative of a scikit-learn fit at ``tol=1e-12``, the
        default within 5e-3, where ``LogisticRegression()`` itself is 1.4e-2
        away).
    tol_schedule : {"exponential", "quadratic", "cubic"}, default="exponential"
        Decrease of the inner tolerance across outer steps (summable, as HOAG
        requires for convergence).
    fit_intercept : bool, default=True
        Fit an unpenalized intercept (one per class for multinomial).
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes, as in ``LogisticRegression``.
    n_jobs : int or None, default=None
        Folds solved in parallel as ``joblib.Parallel(n_jobs,
        prefer="threads")`` runs them: threads by default, the active joblib
        backend (dask, ray, loky) otherwise, each fold's data shipped once
        (see the user guide, "Running the folds on a cluster"). With one job
        (``None``), the folds of large data (12 MiB or more, read in place
        from one matrix) are solved in lockstep, one pass over the data
        serving every fold's products (the user guide, "Folds that share one
        matrix"): there, a few jobs can be slower than one.
    random_state : int, RandomState or None, default=None
        Shuffles the folds when ``cv`` is an int.
    verbose : int, default=0
        Progress of the search. 0: silent. 1: a row per evaluation of the CV
        loss (phase, gradient step out of ``max_iter``, C, CV log-loss, best so
        far, hypergradient norm, whether the step was kept, elapsed time), a
        line saying why the search stopped, and one for the final refit.
        2: each row also shows the inner tolerance, L-BFGS iterations and
        Hessian-vector products summed over folds, the largest residual of the
        hypergradient linear solves, and the spread of the fold losses.
    callback : callable or None, default=None
        Called with the history record of each evaluation; return True to stop.
    warm_start : bool, default=False
        Start the next ``fit`` from the ``C_`` of the previous one.
    max_time : float or None, default=None
        Time budget of the search in seconds.
    device : {"cpu", "cuda"} or None, default=None
        Where to compute. ``None`` follows the input: NumPy / SciPy data on the
        CPU; a CuPy (or other array-API) array stays on its device, and the
        fitted ``coef_`` and ``intercept_`` are arrays of the same namespace.
        ``"cuda"`` moves NumPy / SciPy data to the GPU once (needs CuPy:
        ``pip install "skbilevel[gpu]"``) and returns NumPy fitted attributes.
        ``"cpu"`` brings any input to NumPy.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    coef_ : ndarray of shape (1, n_features) or (n_classes, n_features)
        Coefficients of the model refit on all data at ``C_``.
    intercept_ : ndarray of shape (1,) or (n_classes,)
        Intercepts (zeros when ``fit_intercept=False``).
    C_ : float or ndarray of shape (n_features,) or (n_groups,)
        Chosen penalty: a float for one ``C``; per feature or per group (groups
        in sorted label order) otherwise.
    cv_loss_ : float
        Mean cross-validated log-loss at ``C_``, from fold fits re-solved to
        ``polish_tol`` (the polish; see the user guide).
    lambda_ : ndarray of shape (n_hyper,)
        ``-log C_`` (the search's log-space coordinates), in the namespace and
        on the device of the input for array-API input.
    n_iter_ : int
        Iterations of the search: evaluations of the CV loss (bracket, start
        and gradient steps); ``max_iter`` bounds the gradient steps among them.
    history_ : list of dict
        One record per evaluation of the CV loss: ``C`` and ``lam``
        (``-log C``), arrays of shape ``(n_hyper,)`` even for a single C
        (``record["C"][0]``); ``value`` (CV log-loss, corrected to first order
        for the inexact fold fits), ``grad_norm``, ``accepted``, ``phase``
        ("bracket", "start" or "gradient"), ``inner_iter``, ``n_hvp``,
        ``elapsed`` and more.
    converged_ : bool
        Whether the search met ``tol`` (projected hypergradient norm, or
        predicted decrease of the CV loss), or could not move by more than
        1e-3 in log C, before ``max_iter`` or ``max_time``.
    penalty_gain_ : float or None
        With ``penalty_groups``: relative decrease of the log-loss on the
        held-out halves of the validation folds (which the descent of the
        many penalties never sees) from the single best ``C`` to ``C_``,
        e.g. 0.03 for 3% lower. 0.0 when the single ``C`` was kept (then
        ``C_`` repeats it); slightly optimistic, as the same halves chose
        among the points of the descent. None for one ``C``. See the user
        guide, "Many penalties".
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when ``X`` has string column names.

    See Also
    --------
    sklearn.linear_model.LogisticRegressionCV : Chooses ``C`` on a grid.
    skbilevel.model_selection.BilevelSearchCV : Gradient search for any
        supported estimator or pipeline.

    References
    ----------
    F. Pedregosa, "Hyperparameter optimization with approximate gradient",
    ICML 2016. Z. Ramzi et al., "SHINE: SHaring the INverse Estimate from the
    forward pass for bi-level optimization and implicit models", ICLR 2022.

    Examples
    --------
    >>> from sklearn.datasets import load_breast_cancer
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skbilevel import HOAGLogisticRegression
    >>> X, y = load_breast_cancer(return_X_y=True)
    >>> model = make_pipeline(StandardScaler(), HOAGLogisticRegression()).fit(X, y)
    >>> clf = model[-1]
    >>> bool(1e-4 <= clf.C_ <= 1e4), round(clf.cv_loss_, 2)
    (True, 0.07)
    """

    _parameter_constraints = {
        "penalty_groups": [None, StrOptions({"features"}), "array-like"],
        "C_init": [None, Interval(Real, 0, None, closed="neither")],
        "C_bounds": ["array-like"],
        "cv": ["cv_object"],
        "hypergradient": [StrOptions(set(LINEAR_SOLVERS)), HasMethods(["solve"])],
        "max_iter": [Interval(Integral, 0, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="neither")],
        "inner_tol": [Interval(Real, 0, 1, closed="neither")],
        "inner_max_iter": [Interval(Integral, 1, None, closed="left")],
        "memory_size": [Interval(Integral, 1, None, closed="left")],
        "polish_tol": [Interval(Real, 0, None, closed="neither")],
        "inner_solver": [StrOptions(set(INNER_SOLVERS))],
        "tol_schedule": [StrOptions(set(TOLERANCE_SCHEDULES))],
        "fit_intercept": ["boolean"],
        "class_weight": [dict, StrOptions({"balanced"}), None],
        "n_jobs": [None, Integral],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "callback": [None, callable],
        "warm_start": ["boolean"],
        "max_time": [None, Interval(Real, 0, None, closed="neither")],
        "device": [None, StrOptions(set(DEVICES))],
    }

    def __init__(
        self,
        *,
        penalty_groups=None,
        C_init=None,
        C_bounds=(1e-4, 1e4),
        cv=5,
        hypergradient="shine-refine",
        max_iter=30,
        tol=1e-4,
        inner_tol=1e-3,
        inner_max_iter=1000,
        memory_size=10,
        polish_tol=1e-4,
        inner_solver="newton-cg",
        tol_schedule="exponential",
        fit_intercept=True,
        class_weight=None,
        n_jobs=None,
        random_state=None,
        verbose=0,
        callback=None,
        warm_start=False,
        max_time=None,
        device=None,
    ):
        self.penalty_groups = penalty_groups
        self.C_init = C_init
        self.C_bounds = C_bounds
        self.cv = cv
        self.hypergradient = hypergradient
        self.max_iter = max_iter
        self.tol = tol
        self.inner_tol = inner_tol
        self.inner_max_iter = inner_max_iter
        self.memory_size = memory_size
        self.polish_tol = polish_tol
        self.inner_solver = inner_solver
        self.tol_schedule = tol_schedule
        self.fit_intercept = fit_intercept
        self.class_weight = class_weight
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose
        self.callback = callback
        self.warm_start = warm_start
        self.max_time = max_time
        self.device = device

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        # Array-API input (CuPy, torch, array_api_strict...) is fit in its own
        # namespace and on its own device (``device=None``); scikit-learn's
        # array-API checks need SCIPY_ARRAY_API=1.
        tags.array_api_support = True
        return tags

    # -- fit ------------------------------------------------------------------
    def _validate_fit_data(self, X, y, sample_weight):
        """Validate on the host (NumPy / SciPy), or in X's namespace for array-API input.

        Labels and sample weights are small: they are checked on the host in
        both cases. Returns ``(X, y_host, sample_weight_host or None)``.
        """
        if is_host_input(X) or self.device == "cpu":
            X, y = validate_data(
                self,
                X if is_host_input(X) else to_host(X),
                y if is_host_input(y) else to_host(y),
                accept_sparse=["csr", "csc"],
                dtype=[np.float64, np.float32],
                ensure_min_samples=2,
            )
        else:
            X = validate_array_api_X(X)
            self.n_features_in_ = X.shape[1]
            # array-API input has no column names: forget those of an
            # earlier fit
            self.__dict__.pop("feature_names_in_", None)
            y = column_or_1d(to_host(y), warn=True)
            if y.shape[0] != X.shape[0]:
                raise ValueError(
                    f"X and y have inconsistent numbers of samples: {X.shape[0]} "
                    f"and {y.shape[0]}."
                )
        check_classification_labels(y)
        classes = np.unique(y)
        if classes.size < 2:
            raise ValueError(
                "HOAGLogisticRegression needs samples of at least 2 classes in the "
                f"data, but the data contains only 1 class: {classes[0]!r}."
            )
        if sample_weight is not None:
            sample_weight = _check_sample_weight(
                # a scalar weight stays a number (to_host would make it 0-d)
                sample_weight
                if isinstance(sample_weight, Real)
                else to_host(sample_weight),
                np.empty((y.shape[0], 0)),
                dtype=np.float64,
                ensure_non_negative=True,
            )
        return X, y, sample_weight

    def _space(self, bounds, n_features, n_outputs):
        """The search space: ``C_bounds``, the start, ``penalty_groups``."""
        low, high = bounds
        structure = _penalty_structure(self.penalty_groups, n_features)
        space = HyperSpace.from_values("C", low, high, log_sign=-1, **structure)
        n_hyper = space.n_hyper(n_features, n_outputs)
        start = None
        if self.warm_start and hasattr(self, "C_"):
            # The previous C_, or a single previous C for every hyperparameter;
            # a previous fit of another structure starts afresh.
            previous = np.atleast_1d(np.asarray(to_numpy(self.C_), dtype=np.float64))
            if previous.size in (1, n_hyper):
                start = np.clip(previous, low, high)
        if start is None and self.C_init is not None:
            start = np.clip(self.C_init, low, high)
        if start is not None:
            space = space._replace(lam_start=np.atleast_1d(-np.log(start)))
        return space.resize(n_hyper)

    def _options(self):
        return SearchOptions.from_estimator(self)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Choose ``C`` by cross-validated gradient descent, then refit.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data (CSR or CSC for sparse).
        y : array-like of shape (n_samples,)
            Class labels.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the samples in the training loss and in the CV log-loss.

        Returns
        -------
        self : HOAGLogisticRegression
            Fitted estimator.
        """
        bounds = _check_C_bounds(self.C_bounds)  # before any work on the data
        X, y, sample_weight = self._validate_fit_data(X, y, sample_weight)
        metadata = None if sample_weight is None else {"sample_weight": sample_weight}
        root_ctx = self._init_callback_context(max_subtasks=2).call_on_fit_task_begin(
            estimator=self, X=X, y=y, metadata=metadata
        )
        encoding = _ADAPTER.encode_targets(self, y)
        self.classes_ = encoding.context["classes_"]
        space = self._space(bounds, X.shape[1], encoding.n_outputs)
        _, splits = check_splits(
            self.cv,
            np.empty((y.shape[0], 0)),
            y,
            classifier=True,
            random_state=self.random_state,
        )
        if self.device == "cuda":
            X = to_cuda(X)  # the one transfer of the data
        folds = materialize_folds(X, y, splits)
        training_weights = partial(_ADAPTER.training_weights, self)
        engine = engine_folds(
            folds,
            encoding,
            fold_weights(folds, y, sample_weight, training_weights),
            penalty=lambda n_features: space.penalty(n_features, encoding.n_outputs),
            fit_intercept=self.fit_intercept,
        )
        search = make_search(engine, space, self._options())
        result = search.run(callback_ctx=root_ctx, owner=self)
        self._set_search_results(result)
        self.penalty_gain_ = getattr(search, "penalty_gain", None)
        refit_ctx = root_ctx.subcontext(task_name="refit")
        refit_ctx.call_on_fit_task_begin(estimator=self, X=X, y=y, metadata=metadata)
        self._refit(
            X,
            encoding,
            training_weights(y, sample_weight),
            space,
            result,
            search.mean_solution(),
        )
        fitted = self._fitted_attributes
        refit_ctx.call_on_fit_task_end(
            estimator=self,
            X=X,
            y=y,
            metadata=metadata,
            reconstruction_attributes=fitted,
        )
        root_ctx.call_on_fit_task_end(
            estimator=self,
            X=X,
            y=y,
            metadata=metadata,
            reconstruction_attributes=fitted,
        )
        return self

    def _fitted_attributes(self):
        """What a callback needs to rebuild the fitted model (``ScoringMonitor``)."""
        names = ("coef_", "intercept_", "classes_", "n_features_in_", "C_")
        return {name: getattr(self, name) for name in names}

    def _set_search_results(self, result):
        scalar = result.lam.size == 1 and self.penalty_groups is None
        self.lambda_ = result.lam
        self.C_ = float(np.exp(-result.lam[0])) if scalar else np.exp(-result.lam)
        self.cv_loss_ = result.value
        self.n_iter_ = len(result.history)
        self.converged_ = result.converged
        self.history_ = result.history

    def _refit(self, X, encoding, sample_weight, space, result, w0):
        """Fit on all the data at the chosen penalty, to ``polish_tol``.

        Warm-started from ``w0`` (the mean of the fold solutions there); the
        gradient test is scikit-learn's, per unit of sample weight.
        """
        xp, device = get_namespace(X), device_of(X)
        n_outputs = encoding.n_outputs

        def on_device(a):
            return None if a is None else xp.asarray(a, dtype=X.dtype, device=device)

        inner = InnerObjective(
            X,
            on_device(encoding.y),
            encoding.loss,
            space.penalty(X.shape[1], n_outputs),
            n_outputs,
            self.fit_intercept,
            on_device(sample_weight),
        )
        lam = on_device(result.lam)
        start = time.perf_counter()
        solution = newton_refit(
            inner,
            lam,
            w0,
            tol=self.polish_tol,
            max_iter=self.inner_max_iter,
        )
        if self.verbose > 0:
            print(
                f"Refit on all {X.shape[0]} samples at {space.describe(result.lam)}: "
                f"{solution.n_iter} Newton steps, "
                f"{time.perf_counter() - start:.2f}s.",
                flush=True,
            )
        if not solution.converged:
            warnings.warn(
                f"The final fit at the chosen C did not converge ({solution.message}); "
                "increase inner_max_iter or scale the data.",
                ConvergenceWarning,
                stacklevel=3,
            )
        coef, intercept = inner.model.split(solution.x)
        coef = (
            xp.reshape(coef, (1, -1))
            if n_outputs == 1
            else xp.asarray(coef.T, copy=True)
        )
        if intercept is None:
            intercept = xp.zeros(n_outputs, dtype=X.dtype, device=device)
        else:
            intercept = xp.asarray(intercept, copy=True)
        if self.device == "cuda":
            coef, intercept = to_host(coef), to_host(intercept)
        elif not is_host_input(X):
            # Every fitted array lives where the input does (scikit-learn's
            # array-API convention), except classes_: labels may be strings.
            self.lambda_ = xp.asarray(self.lambda_, device=device)
            if not np.isscalar(self.C_):
                self.C_ = xp.asarray(self.C_, device=device)
        self.coef_, self.intercept_ = coef, intercept

    # -- prediction -----------------------------------------------------------
    def _host_model(self):
        return isinstance(self.coef_, np.ndarray)

    def _check_prediction_input(self, X, method):
        """``X`` must be where the model is, as scikit-learn's ``check_same_namespace``.

        ``device="cpu"`` / ``"cuda"`` models are NumPy and take any input (it is
        brought to the host). A model fit on array-API input needs ``X`` of the
        same namespace on the same device; a NumPy model needs host ``X`` under
        ``array_api_dispatch`` (without it, scikit-learn converts ``X`` with
        ``np.asarray``).
        """
        check_is_fitted(self)
        if self.device is not None:
            return
        if self._host_model():
            if is_host_input(X) or not get_config()["array_api_dispatch"]:
                return
        elif not is_host_input(X) and same_placement(X, self.coef_):
            return
        fitted_on = "NumPy" if self._host_model() else describe_placement(self.coef_)
        given = "NumPy or array-like" if is_host_input(X) else describe_placement(X)
        raise ValueError(
            f"Inputs passed to {type(self).__name__}.{method}() must use the same "
            "namespace and the same device as those passed to fit(): the model was "
            f"fit on {fitted_on} data, X is {given}. Move X there (xp.asarray(X, "
            "device=...)) or refit on data where X is; device='cuda' or 'cpu' gives "
            "a NumPy model that takes any input."
        )

    def _decision_function(self, X):
        if self._host_model():
            return super().decision_function(to_host(X) if self.device else X)
        X = validate_array_api_X(X, ensure_min_samples=1)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but {type(self).__name__} is "
                f"expecting {self.n_features_in_} features as input."
            )
        scores = X @ self.coef_.T + self.intercept_
        return scores[:, 0] if scores.shape[1] == 1 else scores

    def decision_function(self, X):
        """Confidence scores: ``X @ coef_.T + intercept_``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            With ``device=None``, in the namespace and on the device of the
            data the model was fit on.

        Returns
        -------
        array of shape (n_samples,) or (n_samples, n_classes)
            For binary problems, the score of ``classes_[1]``. In the
            namespace of ``coef_``.
        """
        self._check_prediction_input(X, "decision_function")
        return self._decision_function(X)

    def predict(self, X):
        """Class labels of ``X``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            With ``device=None``, in the namespace and on the device of the
            data the model was fit on.

        Returns
        -------
        array of shape (n_samples,)
            Labels from ``classes_``: in the namespace and on the device of
            ``coef_`` for numeric labels, a NumPy array for other labels
            (strings have no array-API dtype).
        """
        self._check_prediction_input(X, "predict")
        if self._host_model():
            return super().predict(to_host(X) if self.device else X)
        scores = self._decision_function(X)
        xp, device = get_namespace(scores), device_of(scores)
        index = (
            xp.astype(scores > 0, xp.int64)
            if scores.ndim == 1
            else xp.argmax(scores, axis=1)
        )
        if self.classes_.dtype.kind in "biuf":
            return xp.take(xp.asarray(self.classes_, device=device), index, axis=0)
        return self.classes_[to_numpy(index)]

    def predict_proba(self, X):
        """Probability of each class.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            With ``device=None``, in the namespace and on the device of the
            data the model was fit on.

        Returns
        -------
        array of shape (n_samples, n_classes)
            Columns in the order of ``classes_``; in the namespace of ``coef_``.
        """
        self._check_prediction_input(X, "predict_proba")
        return self._proba(self._decision_function(X))

    @staticmethod
    def _proba(scores):
        if isinstance(scores, np.ndarray):
            if scores.ndim == 1:
                proba = expit(scores)
                return np.stack([1 - proba, proba], axis=1)
            return softmax(scores, axis=1)
        xp = get_namespace(scores)
        if scores.ndim == 1:
            scores = xp.stack([xp.zeros_like(scores), scores], axis=1)
        scores = scores - xp.max(scores, axis=1, keepdims=True)
        proba = xp.exp(scores)
        return proba / xp.sum(proba, axis=1, keepdims=True)

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            With ``device=None``, in the namespace and on the device of the
            data the model was fit on.

        Returns
        -------
        array of shape (n_samples, n_classes)
        """
        self._check_prediction_input(X, "predict_log_proba")
        proba = self._proba(self._decision_function(X))
        return get_namespace(proba).log(proba)
