"""BilevelSearchCV: GridSearchCV's interface, a gradient search inside.

Design: where the fits come from
--------------------------------
scikit-learn's ``BaseSearchCV.fit`` hands ``_run_search`` an
``evaluate_candidates`` that fits the estimator on every split for every
candidate. Feeding it the points HOAG evaluated would give cv_results_ for free
but pay for a second search: one cold fit per fold per point, without the warm
starts that make the gradient search cheap. Measured (2 shared cores, 5 folds,
``LogisticRegression`` defaults), the search itself against re-fitting the
points it evaluated through scikit-learn: breast_cancer 0.26 s against 1.5 s,
digits 7.7 s against 33 s, Fashion-MNIST T-shirt/Shirt (12000 x 784) 69 s
against 83 s. That would remove most of the speed-up over GridSearchCV.

So ``fit`` keeps BaseSearchCV's machinery but not its fitting loop: scorers
(``_get_scorers``: string, callable, list, dict), metadata routing
(``_get_routed_params_for_fit``: ``sample_weight`` to the fits and the
scorers, ``groups`` to the splitter), ``check_cv``, ``_format_results`` (the
cv_results_ layout, ranks, masked ``param_*`` columns), ``_select_best_index``
for a callable ``refit``, the refit, and every prediction method. Its
``evaluate_candidates`` scores, with scikit-learn's own ``_score``, the fold
models built from the engine's solutions: the user's estimator (or Pipeline,
its prefix steps fitted once per fold) with ``coef_`` / ``intercept_`` set.
The splits are materialized once, so every point is scored on the folds it was
searched on. The search's solves are inexact by design; the point chosen as
best is re-solved to the estimator's own tolerance (``polish_tol``, and
rescored) before it is declared best, so ``best_score_`` is that of fits as
precise as ``cross_validate`` of the user's estimator would make them.
"""

import time
import warnings
from collections import defaultdict
from functools import partial
from numbers import Integral, Real

import numpy as np
from sklearn import get_config
from sklearn.base import clone, is_classifier
from sklearn.utils import get_tags
from sklearn.utils.validation import indexable

from ..hypergrad import LINEAR_SOLVERS
from ..outer import INNER_SOLVERS, TOLERANCE_SCHEDULES
from ..search import (
    PATHS,
    SearchOptions,
    SharedRows,
    as_engine_array,
    check_splits,
    engine_folds,
    fold_weights,
    make_search,
    materialize_folds,
    route_fit_params,
    split_estimator,
)
from ..utils._array_api import describe_placement, is_sparse
from ..utils._device import DEVICES, check_device_available, is_host_input, to_host
from ..utils._sklearn_compat import (
    BaseSearchCV,
    HasMethods,
    Interval,
    StrOptions,
    _check_method_params,
    _check_sample_weight,
    _fit_context,
    _get_feature_names,
    _MultimetricScorer,
)
from ..utils._validation import check_classification_labels
from ._adapters import get_adapter
from ._engine_refit import warm_started_refit
from ._scoring import FoldModels, prediction_metrics
from ._space import (
    MANY_PENALTIES,
    check_vector_space,
    estimator_params,
    parse_param_space,
)
from ._vector_penalty import check_same_features, refit_vector_penalty

__all__ = ["BilevelSearchCV"]

# Columns added to cv_results_ (besides GridSearchCV's), one value per point.
MORE_RESULTS = (
    "outer_iteration",
    "outer_phase",
    "outer_loss",
    "hypergradient_norm",
    "step_accepted",
)


def _supports_array_api(estimator):
    """Whether ``estimator`` (every step of a Pipeline) declares array-API support.

    A Pipeline's own tag says False; it runs on array-API input when its steps do.
    """
    steps = getattr(estimator, "steps", None)
    if steps is None:
        return get_tags(estimator).array_api_support
    return all(
        step is None or isinstance(step, str) or _supports_array_api(step)
        for _, step in steps
    )


class BilevelSearchCV(BaseSearchCV):
    """Search a continuous regularization parameter by gradient descent on CV loss.

    A drop-in replacement for ``GridSearchCV(estimator, {"C": grid})`` when the
    parameter is the L2 penalty of a linear model: instead of fitting every
    value of a grid, HOAG (Pedregosa, 2016) follows the hypergradient of the
    mean validation loss with respect to ``log`` of the parameter, each fold's
    model warm-started from the previous step, the linear system of the
    implicit function theorem solved from the inner L-BFGS memory (SHINE,
    Ramzi et al., 2022) or another solver. Every point evaluated becomes a
    row of ``cv_results_``, scored with ``scoring`` as GridSearchCV would.

    Parameters
    ----------
    estimator : estimator object
        A supported estimator (``LogisticRegression``, ``Ridge``,
        ``RidgeClassifier``, or one registered with
        :func:`~skbilevel.model_selection.register_adapter`), or a Pipeline
        whose last step is one. Earlier steps are fit on each training fold and
        applied to its validation fold, once for the whole search.
    param_space : dict
        One parameter of the final estimator, named as for ``set_params``
        (``"clf__C"`` in a Pipeline), mapped to ``(low, high)`` or
        ``(low, high, start)``, searched in log space. Without ``start`` a
        coarse bracket of a few fits from the strongest penalty down picks it.
        For ``Ridge`` with ``y`` of shape (n_samples, n_targets), bounds given
        as arrays of shape (n_targets,) search one ``alpha`` per target. With
        ``penalty_groups``, bounds are scalars or arrays of shape
        (n_features,) / (n_groups,); with group labels, bounds of shape
        (n_targets, n_groups) search one ``alpha`` per target and per group
        (banded ridge, ``Ridge`` only, no start; see ``penalty_groups``).
    penalty_groups : None, "features" or array-like of shape (n_features,), \
            default=None
        Structure of the searched penalty, as in
        :class:`~skbilevel.HOAGLogisticRegression`. ``None``: one value (or
        one per target, see ``param_space``). ``"features"``: one value per
        feature of the final estimator, i.e. per column it sees after a
        Pipeline's earlier steps. An array: one value per group,
        ``penalty_groups[j]`` being the group label of that column ``j``
        (values in sorted label order). The search first finds the best single
        value, then descends the many penalties on half of each validation
        fold and keeps them only if the other half prefers them significantly
        (see ``penalty_gain_`` and the user guide, "Many penalties"). The
        earlier steps must give the same features in every fold; the
        estimator (``LogisticRegression``, ``Ridge``...) cannot hold such a
        value, so the fold models and ``best_estimator_`` carry the solution
        with the parameter as given (see ``refit``). ``path="closed-form"``
        does not apply, except to one ``alpha`` per target and per group:
        with ``Ridge``, ``y`` of shape (n_samples, n_targets) and group
        labels, bounds of shape (n_targets, n_groups) search
        ``alpha[t, g]``, the penalty of group ``g`` in target ``t``'s model.
        That search is in closed form: each candidate weighting of the
        groups, shared by the targets, costs one eigendecomposition per fold
        and gives every target's exact CV curve in its own scale of
        ``alpha``; the candidates come from the targets' Newton steps in
        their log penalties, clustered, and each target keeps its best point
        (rows of ``cv_results_``: every target's best point after each
        candidate; ``best_index_`` the last). Dense NumPy data, no
        ``path="gradient"``; the user guide, "One alpha per target and per
        group", says more.
    scoring : str, callable, list, tuple or dict, default=None
        Metrics reported for every evaluated point, as in GridSearchCV. They do
        not steer the search: the gradient descends the mean validation loss of
        the estimator (log-loss for ``LogisticRegression``, mean squared error
        for ``Ridge``, mean squared error of the {-1, 1} targets for
        ``RidgeClassifier``), weighted by ``sample_weight`` when given
        (``class_weight`` weights the training loss only).
    n_jobs : int, default=None
        Folds solved in parallel as ``joblib.Parallel(n_jobs,
        prefer="threads")`` runs them: threads by default, the active joblib
        backend (dask, ray, loky) otherwise, each fold's data shipped once
        (see the user guide, "Running the folds on a cluster"). The Pipeline
        prefix fits follow the same backend. With one job (``None``), the
        folds of large data (12 MiB or more, read in place from one matrix)
        are solved in lockstep, one pass over the data serving every fold's
        products (the user guide, "Folds that share one matrix"): there, a few
        jobs can be slower than one.
    refit : bool, str or callable, default=True
        As in GridSearchCV: refit ``estimator`` on the whole data with the best
        evaluated point, chosen by the metric named (or the only one); ties are
        broken by the lower outer loss. The refit starts from the engine's
        solution (see ``refit_warm_start``). Before a point is declared best, its
        folds are re-solved tightly and it is rescored. With
        ``penalty_groups``, the best point is the many-penalty point the
        search kept (``penalty_gain_ > 0``), else the best of the single-value
        points by the metric, refit as without ``penalty_groups``; a callable
        ``refit`` chooses among all rows. A many-penalty point cannot be refit
        by ``set_params(**best_params_).fit``: the Pipeline's earlier steps are
        fit on all data by scikit-learn, then the final step's training
        problem at those penalties is solved by the engine (to ``polish_tol``,
        from the folds' mean solution; the squared loss with few
        features exactly, by one factorization) and set as its ``coef_`` /
        ``intercept_``, its parameter left as given. A ``Ridge`` searched in
        closed form on dense data (solver ``"auto"`` or ``"cholesky"``) is
        refit from the products its folds shared, one factorization and no
        pass over the data, with the attributes ``fit`` would set, when every
        row trains some fold; otherwise by its ``fit``.
    cv : int, cross-validation generator or iterable, default=None
        As in GridSearchCV (None: 5-fold, stratified for classifiers). With an
        int (or None) and ``random_state`` set, the folds are shuffled.
    verbose : int, default=0
        Progress of the search. 0: silent. 1: the folds and the range, a row
        per evaluated point (phase, gradient step out of ``max_iter``, value,
        CV loss, best so far, hypergradient norm, whether the step was kept,
        elapsed time), why the search stopped, and each tight re-solve of a
        candidate best point. 2: each row also shows the inner tolerance,
        inner iterations, Hessian-vector products, the largest linear-solve
        residual and the spread of the fold losses.
    error_score : "raise" or numeric, default=np.nan
        Score recorded when a scorer fails on a fold model. A failure of the
        search itself (no point can be evaluated) always raises.
    return_train_score : bool, default=False
        Also score every fold model on its training fold.
    random_state : int, RandomState instance or None, default=None
        Shuffles the folds when ``cv`` is an int or None.
    hypergradient : str or LinearSolver, default="shine-refine"
        Solver of the hypergradient linear system (see
        :mod:`skbilevel.hypergrad`): ``"shine-refine"`` (10
        conjugate-gradient iterations preconditioned by the inner solver's
        curvature pairs, more while the hypergradient's estimated error is
        large), ``"shine"``, ``"shine-opa"``, ``"cg"``,
        ``"neumann"``, ``"truncated"``, ``"identity"``, ``"exact"``, or an
        instance.
    max_iter : int, default=30
        Gradient steps at most (bracket excluded).
    tol : float, default=1e-4
        Stop when the projected hypergradient of the outer loss with respect
        to the log penalty strength has a smaller Euclidean norm, or when the
        decrease of the outer loss predicted for the next step is below ``tol``
        times its value. Smaller values find the optimum more precisely where
        the CV loss is flat, at the price of more evaluations.
    inner_tol : float, default=1e-3
        Starting relative tolerance of the fold fits and of the hypergradient
        linear systems; it decreases along ``tol_schedule``. The best point's
        folds are re-solved to ``polish_tol`` whatever this value, so a loose
        start costs no precision in the result.
    inner_max_iter : int, default=1000
        Iterations at most of each fold fit during the search (L-BFGS
        iterations or Newton steps).
    memory_size : int, default=10
        Curvature pairs kept from each fold fit (SHINE reuses them).
    inner_solver : {"newton-cg", "lbfgs"}, default="newton-cg"
        Solver of the fold fits during the search. ``"newton-cg"``: truncated
        Newton on the exact Hessian-vector products, warm-started from the
        previous point's solutions (a few steps each; its last conjugate
        directions serve SHINE's inverse-Hessian estimate). ``"lbfgs"``:
        L-BFGS with its secant pairs shifted to the new penalty.
    polish_tol : float or "auto", default="auto"
        Tolerance of the fold fits of a point before it is declared best (it
        is rescored from them): they stop when no entry of the gradient of the
        training objective divided by the sum of the training weights exceeds
        ``polish_tol``, ``LogisticRegression(tol=polish_tol)``'s own test.
        ``"auto"``: the estimator's own ``tol`` (its final step's in a
        Pipeline; 1e-4 where it has none), so that
        ``best_score_`` comes from fold models as precise as
        ``cross_validate`` of the estimator would fit them. Lower it for more
        precise scores (the refit is the estimator's own ``fit``, at its own
        ``tol``). For a squared loss (``Ridge``, ``RidgeClassifier`` on the
        gradient path) the test is relative to the gradient at zero instead,
        whose size carries the units of ``X`` and ``y``. The many-penalty
        points of ``penalty_groups`` are re-solved to a relative 1e-8
        whatever this value (the held-out check compares exact fold models);
        their refit stops at ``polish_tol``.
    tol_schedule : {"exponential", "quadratic", "cubic"}, default="exponential"
        Decrease of the inner tolerance across outer steps (summable, as HOAG
        requires for convergence).
    max_time : float or None, default=None
        Time budget of the search in seconds, checked after each evaluated
        point; the points evaluated so far are scored and the best is used.
    callback : callable, default=None
        Called with the record of each evaluated point (``lam``, the
        parameter's value under its name, ``value``, ``grad_norm``,
        ``accepted``...); return True to stop the search.
    device : {"cpu", "cuda"} or None, default=None
        Where the gradient search computes. ``None`` and ``"cpu"``: NumPy /
        SciPy. ``"cuda"``: each fold's data (after the Pipeline's earlier
        steps, which scikit-learn fits on the CPU) is copied to the GPU once
        and every inner fit, hypergradient and linear solve runs there with
        CuPy (``pip install "skbilevel[gpu]"``); the fold solutions come back
        to the CPU, so the fold models, the scorers, ``cv_results_`` and the
        refit ``best_estimator_`` are scikit-learn's, as with ``None``.
        Array-API input (CuPy, torch, array_api_strict) is accepted under
        scikit-learn's ``array_api_dispatch`` when the estimator (every step
        of a Pipeline) supports it: the search works on a host copy and
        ``best_estimator_`` is refit on the input (see the GPU page).

    path : {"auto", "closed-form", "gradient"}, default="auto"
        How the search runs. ``"auto"``: for ``Ridge`` and
        ``RidgeClassifier`` with one ``alpha`` (or one per target), the closed
        form: one factorization per fold (an eigendecomposition, a tridiagonal
        reduction or, for one target, a Lanczos basis, to an estimated relative
        error of 1e-10) gives the exact CV loss and its derivative at every
        ``alpha``, a scan of the range finds the global minimum (of each
        target's curve) and a root search on the derivative refines it;
        otherwise the gradient search (HOAG).
        ``"closed-form"`` raises ValueError where it does not apply (logistic
        loss, sparse data with more features than samples in a fold, a
        device); ``"gradient"`` forces HOAG. The closed form has no
        iterations: ``max_iter``, ``tol``, ``inner_tol``, ``inner_max_iter``,
        ``memory_size``, ``tol_schedule``, ``hypergradient`` and ``max_time``
        do not apply to it, and its per-fold decompositions run in the
        calling process (``n_jobs`` and joblib backends serve the gradient
        search).

    refit_warm_start : bool, default=True
        Start the refit from the engine's solution on all the data at the best
        point, for estimators that can continue from one (``LogisticRegression``
        with any supported solver: its ``fit`` runs with ``warm_start=True``,
        which is then given back its value). The engine solves the refit's
        problem by Newton-CG from the mean of the best point's fold solutions,
        to ``polish_tol`` and a short last Newton step, and the estimator's
        ``fit`` goes on to its own ``tol``: lbfgs, newton-cg and
        newton-cholesky usually have no iteration left (``n_iter_`` 0); sag
        and saga, which stop on the change of the coefficients over an epoch,
        still run their epochs. ``best_estimator_`` then passes the
        estimator's convergence test, as ``GridSearchCV``'s refit does, but
        does not equal it; how far either stops from the exact solution
        depends on the problem's conditioning (the user guide's differences
        from ``GridSearchCV`` gives measured cases). False: the estimator's
        ``fit`` from scratch, as ``GridSearchCV`` refits. Not used with
        ``device="cuda"`` (the engine's solve would run on a float64 copy of
        the data on the host) nor with ``penalty_groups``; estimators without
        a warm start (``Ridge``, ``RidgeClassifier``) and the closed form's
        shared refit are unaffected.

    Attributes
    ----------
    cv_results_ : dict of numpy (masked) ndarrays
        One row per evaluated point, in order, with exactly GridSearchCV's keys
        for the same ``scoring`` and ``return_train_score``, plus
        ``outer_iteration`` (index of the evaluation), ``outer_phase``
        ("bracket", "start" or "gradient"; "scan" and "root" for the
        closed-form ridge path; "scan" and "band" for one ``alpha`` per
        target and group), ``outer_loss`` (mean validation
        loss the search minimizes: log-loss for classifiers, squared error
        for regressors; from the search's inexact fold fits, corrected to
        first order, except at points re-solved tightly before being
        declared best, where it is exact), ``hypergradient_norm`` and
        ``step_accepted``; with ``penalty_groups``, ``outer_stage``
        ("scalar": the single-value search, then "vector") and ``params``
        holding arrays of one value per feature or group (``outer_loss`` of an
        unpolished "vector" row is on the descent halves of the validation
        folds). ``fit_time`` is the evaluation's time divided evenly among
        the folds. Loads with ``pandas.DataFrame``.
    best_estimator_ : estimator
        ``estimator`` (the user's class) refit on all data with
        ``best_params_``; only with ``refit``. With ``penalty_groups`` see
        ``refit``: its parameter is the single value, or left as given at a
        many-penalty point.
    best_score_ : float
        Mean cross-validated score of ``best_estimator_``.
    best_params_ : dict
        Parameter setting of the best evaluated point.
    best_index_ : int
        Its row in ``cv_results_``. With one ``alpha`` per target and per group,
        the last row: each target's own best point by its CV loss (the metric,
        which averages over targets, does not choose among the rows).
    best_fold_estimators_ : list of estimators
        The fold models at ``best_index_`` (at the lowest outer loss when there
        is no ``best_index_``): ``estimator`` as fit on each training fold.
    scorer_ : function or dict
        Scorer(s) used on the fold models.
    n_splits_ : int
        Number of cross-validation splits.
    refit_time_ : float
        Seconds to refit the best model on the whole data.
    multimetric_ : bool
        Whether several metrics were reported.
    classes_ : ndarray of shape (n_classes,)
        Class labels (classifiers, with ``refit``).
    n_features_in_ : int
        Number of features seen during fit (with ``refit``).
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when ``X`` has string column names.
    history_ : list of dict
        The engine's record of each evaluation (``lam``, parameter value,
        ``value``, ``fold_values``, ``grad``, ``inner_iter``, ``time``...).
    penalty_gain_ : float or None
        With ``penalty_groups``: relative decrease of the validation loss on
        the held-out halves of the folds from the best single value to the
        many penalties kept (0.0 when the single value was kept), as
        ``HOAGLogisticRegression.penalty_gain_``; with one ``alpha`` per
        target and per group, relative decrease of the CV loss from one
        ``alpha`` per target to the chosen penalties (no held-out halves);
        None without ``penalty_groups``.
    n_iter_ : int
        Iterations of the search: evaluations of the CV loss, bracket
        included (one row of ``cv_results_`` each); ``max_iter`` bounds the
        gradient steps among them. The same meaning as in
        :class:`~skbilevel.HOAGLogisticRegression`.
    converged_ : bool
        Whether the search met ``tol`` before ``max_iter``.

    See Also
    --------
    sklearn.model_selection.GridSearchCV : Exhaustive search over a grid.
    sklearn.linear_model.LogisticRegressionCV : Grid of ``C`` with warm starts.
    skbilevel.HOAGLogisticRegression : Logistic regression that tunes its own
        (possibly per-feature) penalty.
    skbilevel.model_selection.register_adapter : Support another estimator.

    Notes
    -----
    No candidate is fit by scikit-learn during the search: the scores come
    from the engine's solutions, which are those of the estimator's ``fit``
    up to the search's tolerances (the best point is re-solved to a relative
    gradient norm of 1e-8). The estimator's own solver settings (``solver``,
    ``tol``, ``max_iter``) only act in the final refit. The engine works in
    float64 on the (transformed) data of each fold.

    scikit-learn's callbacks (``set_callbacks``, scikit-learn >= 1.9) see the
    fit as a task with two subtasks, the search (one subtask per evaluated
    point: a ``ProgressBar`` advances at each) and the refit, to which
    auto-propagated callbacks are passed as ``GridSearchCV`` passes them.

    References
    ----------
    F. Pedregosa, "Hyperparameter optimization with approximate gradient",
    ICML 2016. Z. Ramzi et al., "SHINE: SHaring the INverse Estimate from the
    forward pass for bi-level optimization and implicit models", ICLR 2022.

    Examples
    --------
    >>> from sklearn.datasets import load_breast_cancer
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skbilevel import BilevelSearchCV
    >>> X, y = load_breast_cancer(return_X_y=True)
    >>> pipe = make_pipeline(StandardScaler(), LogisticRegression())
    >>> search = BilevelSearchCV(
    ...     pipe, {"logisticregression__C": (1e-4, 1e4)}, scoring="neg_log_loss"
    ... ).fit(X, y)
    >>> C = search.best_params_["logisticregression__C"]
    >>> bool(0.1 < C < 10), round(float(-search.best_score_), 2)
    (True, 0.08)

    One ``C`` per feature (after the scaler), kept only where held-out halves
    of the validation folds prefer it:

    >>> search = BilevelSearchCV(
    ...     pipe, {"logisticregression__C": (1e-4, 1e4)}, penalty_groups="features"
    ... ).fit(X, y)
    >>> search.best_params_["logisticregression__C"].shape
    (30,)
    """

    _parameter_constraints = {
        **{
            name: constraint
            for name, constraint in BaseSearchCV._parameter_constraints.items()
            if name != "pre_dispatch"
        },
        "param_space": [dict],
        "penalty_groups": [None, StrOptions({"features"}), "array-like"],
        "random_state": ["random_state"],
        "hypergradient": [StrOptions(set(LINEAR_SOLVERS)), HasMethods(["solve"])],
        "max_iter": [Interval(Integral, 0, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="neither")],
        "inner_tol": [Interval(Real, 0, 1, closed="neither")],
        "inner_max_iter": [Interval(Integral, 1, None, closed="left")],
        "memory_size": [Interval(Integral, 1, None, closed="left")],
        "inner_solver": [StrOptions(set(INNER_SOLVERS))],
        "polish_tol": [StrOptions({"auto"}), Interval(Real, 0, None, closed="neither")],
        "tol_schedule": [StrOptions(set(TOLERANCE_SCHEDULES))],
        "max_time": [None, Interval(Real, 0, None, closed="neither")],
        "callback": [None, callable],
        "device": [None, StrOptions(set(DEVICES))],
        "path": [StrOptions(set(PATHS))],
        "refit_warm_start": ["boolean"],
    }

    def __init__(
        self,
        estimator,
        param_space,
        *,
        penalty_groups=None,
        scoring=None,
        n_jobs=None,
        refit=True,
        cv=None,
        verbose=0,
        error_score=np.nan,
        return_train_score=False,
        random_state=None,
        hypergradient="shine-refine",
        max_iter=30,
        tol=1e-4,
        inner_tol=1e-3,
        inner_max_iter=1000,
        memory_size=10,
        polish_tol="auto",
        inner_solver="newton-cg",
        tol_schedule="exponential",
        max_time=None,
        callback=None,
        device=None,
        path="auto",
        refit_warm_start=True,
    ):
        # BaseSearchCV.__init__ would also set pre_dispatch, which is not ours.
        self.estimator = estimator
        self.param_space = param_space
        self.penalty_groups = penalty_groups
        self.scoring = scoring
        self.n_jobs = n_jobs
        self.refit = refit
        self.cv = cv
        self.verbose = verbose
        self.error_score = error_score
        self.return_train_score = return_train_score
        self.random_state = random_state
        self.hypergradient = hypergradient
        self.max_iter = max_iter
        self.tol = tol
        self.inner_tol = inner_tol
        self.inner_max_iter = inner_max_iter
        self.memory_size = memory_size
        self.polish_tol = polish_tol
        self.inner_solver = inner_solver
        self.tol_schedule = tol_schedule
        self.max_time = max_time
        self.callback = callback
        self.device = device
        self.path = path
        self.refit_warm_start = refit_warm_start

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # As GridSearchCV: array-API input is accepted (under array_api_dispatch)
        # when the estimator accepts it. The search works on a host copy and
        # best_estimator_ is refit on the input itself (see _host_input).
        tags.array_api_support = _supports_array_api(self.estimator)
        # Ridge with a 2-d y searches one problem with several outputs.
        tags.target_tags.multi_output = get_tags(
            self.estimator
        ).target_tags.multi_output
        return tags

    # -- fit ------------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None, **params):
        """Search the parameter by gradient descent, score every evaluated point.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Targets.
        **params : dict of str -> object
            Parameters routed to the estimator's ``fit`` (``sample_weight``,
            ``step__sample_weight`` in a Pipeline), the scorers and the
            splitter (``groups``), as in GridSearchCV.

        Returns
        -------
        self : BilevelSearchCV
            Fitted search.
        """
        if self.device == "cuda":
            check_device_available()  # a clear error before any work
        X, y, params, refit_input = self._host_input(X, y, params)
        split = split_estimator(self.estimator)
        adapter = get_adapter(split.final)
        space = parse_param_space(
            self.param_space,
            split.final,
            split.final_name,
            adapter,
            penalty_groups=self.penalty_groups,
        )
        self._check_penalty_groups(refit_input, space)
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y "
                "is None."
            )
        if is_classifier(self.estimator):
            check_classification_labels(y)
        scorers, refit_metric = self._get_scorers()
        X, y = indexable(X, y)
        params = _check_method_params(X, params=params)
        if isinstance(params.get("sample_weight"), Real):
            # A scalar weight, as the estimators take it; the scorers take
            # arrays only (GridSearchCV's scores would all be NaN).
            params["sample_weight"] = _check_sample_weight(
                params["sample_weight"], X, dtype=np.float64
            )
        routed_params = self._get_routed_params_for_fit(params)
        sample_weight = params.get("sample_weight")
        metadata = None if sample_weight is None else {"sample_weight": sample_weight}
        root_ctx = self._init_callback_context(
            max_subtasks=1 + (self.refit is not False)
        ).call_on_fit_task_begin(estimator=self, X=X, y=y, metadata=metadata)
        self._checked_cv_orig, splits = check_splits(
            self.cv,
            X,
            y,
            classifier=is_classifier(self.estimator),
            random_state=self.random_state,
            split_params=routed_params.splitter.split,
        )
        self.n_splits_ = len(splits)

        fold_models = self._search(
            split, adapter, space, X, y, splits, routed_params.estimator.fit
        )
        fold_models.metrics = prediction_metrics(
            self.scoring, self.estimator, adapter, routed_params.scorer.score
        )
        search = fold_models.search
        table = _CandidateTable(
            self, fold_models, X, y, scorers, routed_params.scorer.score
        )
        self._fold_models = fold_models
        try:
            self._run_search(table.add, callback_ctx=root_ctx)
        finally:
            del self._fold_models

        first_scores = table.out[0]["test_scores"]
        self.multimetric_ = isinstance(first_scores, dict)
        if callable(self.scoring) and self.multimetric_:
            self._check_refit_for_multimetric(first_scores)
            refit_metric = self.refit
        if self.refit or not self.multimetric_:
            self._set_best(table, refit_metric)
        best = getattr(self, "best_index_", self._result.best_index)
        params = table.results["params"][best]
        self.best_fold_estimators_ = fold_models.models(params, best)
        del self._result
        # every row is scored: the search's kept validation predictions go
        # before the refit's arrays come
        release = getattr(search, "release_predictions", None)
        if release is not None:
            release()
        # not on the GPU (the engine's solve would run on a float64 host copy)
        # nor with penalty_groups (a single-value point refits as without)
        warm = (
            self.refit_warm_start
            and self.device != "cuda"
            and self.penalty_groups is None
        )
        warm_from = (X, y, routed_params.estimator.fit) if warm else None
        if self.refit and refit_input is not None:
            X_in, y_in, params_in = refit_input
            routed_in = self._get_routed_params_for_fit(
                _check_method_params(X_in, params=params_in)
            )
            self._refit_best(
                X_in,
                y_in,
                routed_in.estimator.fit,
                root_ctx,
                metadata,
                fold_models,
                warm_from=warm_from,
            )
        elif self.refit:
            self._refit_best(
                X,
                y,
                routed_params.estimator.fit,
                root_ctx,
                metadata,
                fold_models,
                closed_form=split.prefix is None,
                warm_from=warm_from,
            )
        # the closed form's products of all rows (released by the refit
        # already, when there is one)
        release = getattr(search, "release_rows", None)
        if release is not None:
            release()
        self.scorer_ = (
            scorers._scorers if isinstance(scorers, _MultimetricScorer) else scorers
        )
        self.cv_results_ = table.finish()
        self.history_ = search.history
        self.penalty_gain_ = (
            None
            if self.penalty_groups is None
            else getattr(search, "penalty_gain", None)
        )
        root_ctx.call_on_fit_task_end(estimator=self, X=X, y=y, metadata=metadata)
        return self

    def _check_penalty_groups(self, refit_input, space):
        """What ``penalty_groups`` cannot be combined with, before any work."""
        if self.penalty_groups is None:
            return
        if self.path == "closed-form" and space.structure != "output-groups":
            raise ValueError(
                "path='closed-form' searches one alpha for all features (or one per "
                "target); penalty_groups needs the iterative search: use "
                "path='auto' or path='gradient'."
            )
        if self.path == "gradient" and space.structure == "output-groups":
            raise ValueError(
                "One penalty per target and per group is searched in closed form "
                "only (the banded ridge search): path='gradient' does not apply. "
                "Use path='auto'."
            )
        if refit_input is not None:
            raise ValueError(
                "penalty_groups is not supported with array-API input: the refit "
                "of one penalty per feature runs on NumPy / SciPy data. Pass "
                "NumPy data (with device='cuda' to search on the GPU)."
            )

    def _host_input(self, X, y, params):
        """Host copies of array-API input for the search; the input for the refit.

        The fold models and scikit-learn's scorers work on NumPy data. Array-API
        input (CuPy, torch, array_api_strict...) is accepted where GridSearchCV
        accepts it: under ``array_api_dispatch`` with an estimator (every step
        of a Pipeline) that supports the array API. It is copied to the host
        once; the search computes where ``device`` says, and
        ``best_estimator_`` is refit by scikit-learn on the input itself, so
        that it lives on the input's device as GridSearchCV's does.

        Returns
        -------
        X, y, params
            NumPy / SciPy data (the arguments themselves for host input).
        refit_input : tuple (X, y, params) or None
            The array-API input, for the refit; None for host input.
        """
        given = {"X": X, "y": y, **params}
        on_device = [name for name, a in given.items() if not is_host_input(a)]
        if not on_device:
            return X, y, params, None
        where = describe_placement(given[on_device[0]])
        if is_sparse(X) and not is_host_input(X):
            reason = "scikit-learn does not take GPU sparse matrices"
        elif not get_config()["array_api_dispatch"]:
            reason = "scikit-learn's array API dispatch is off"
        elif not _supports_array_api(self.estimator):
            reason = (
                f"{type(self.estimator).__name__} (or one of its steps) does not "
                "support the array API"
            )
        else:
            host = {
                name: a if is_host_input(a) else to_host(a) for name, a in given.items()
            }
            X_host, y_host = host.pop("X"), host.pop("y")
            return X_host, y_host, host, (X, y, params)
        raise ValueError(
            f"{type(self).__name__} got {', '.join(on_device)} as {where} arrays, "
            f"but {reason}. Pass NumPy / SciPy data instead (cupy.asnumpy(X), "
            "X.get() for a cupyx sparse matrix, np.from_dlpack(X)), with "
            "device='cuda' to run the search on the GPU; or, as GridSearchCV "
            "requires, enable sklearn.set_config(array_api_dispatch=True) (with "
            "SCIPY_ARRAY_API=1 set before SciPy is imported) for an estimator "
            "that supports the array API."
        )

    def _search(self, split, adapter, space, X, y, splits, fit_params):
        """Materialize the folds and run the shared search on them."""
        prefix_params, final_params = route_fit_params(
            self.estimator, split, fit_params
        )
        unexpected = sorted(set(final_params) - set(adapter.fit_params))
        if unexpected:
            raise TypeError(
                f"{type(split.final).__name__}.fit got unexpected parameters "
                f"{unexpected}; BilevelSearchCV forwards {list(adapter.fit_params)}."
            )
        encoding = adapter.encode_targets(split.final, y)
        rows = None
        if split.prefix is None:
            X_engine = as_engine_array(X, keep_float32=self.device == "cuda")
            folds = materialize_folds(
                X_engine,
                y,
                splits,
                feature_names=_get_feature_names(X),
                dtype=np.float64,
            )
            if self.device != "cuda":
                rows = SharedRows(X_engine, splits, adapter.fit_intercept(split.final))
        else:
            folds = materialize_folds(
                X,
                y,
                splits,
                prefix=split.prefix,
                prefix_params=prefix_params,
                n_jobs=self.n_jobs,
            )
        sample_weight = final_params.get("sample_weight")
        if sample_weight is not None:
            sample_weight = _check_sample_weight(
                sample_weight, X, dtype=np.float64, ensure_non_negative=True
            )
        weights = fold_weights(
            folds,
            np.asarray(y),
            sample_weight,
            partial(adapter.training_weights, split.final),
        )
        n_outputs = encoding.n_outputs
        if space.structure in MANY_PENALTIES:
            estimator_name = type(split.final).__name__
            check_same_features(folds, estimator_name)
            check_vector_space(space, folds[0].n_features_in, n_outputs, estimator_name)
        engine = engine_folds(
            folds,
            encoding,
            weights,
            penalty=lambda n_features: space.penalty(n_features, n_outputs),
            fit_intercept=adapter.fit_intercept(split.final),
            device=self.device,
            dtype=np.float64,
        )
        if space.structure == "outputs" and space.lam_low.size not in (1, n_outputs):
            raise ValueError(
                f"param_space[{space.name!r}] has bounds for {space.lam_low.size} "
                f"outputs, but y has {n_outputs}."
            )
        options = SearchOptions.from_estimator(self)._replace(
            polish_tol=_polish_tol(self.polish_tol, split.final)
        )
        search = make_search(
            engine, space, options, keep_solutions=True, path=self.path, rows=rows
        )
        return FoldModels(self.estimator, split, adapter, encoding, folds, search)

    def _set_best(self, table, refit_metric):
        """``best_index_``, ``best_score_``, ``best_params_`` as GridSearchCV sets
        them, over the evaluated points.

        A point's scores come from solves as inexact as the search allowed
        (validation losses off by up to ~1e-4 relative): before a point is
        declared best it is re-solved tightly and rescored, until the best
        point is one so re-solved.

        With ``penalty_groups`` the many penalties are the search's choice,
        not the metric's: every "vector" row is scored on whole validation
        folds, half of which its descent saw, so the metric would prefer
        them whether or not they generalize. The search's held-out test
        decides (``penalty_gain > 0``); otherwise the metric chooses among
        the single-value rows. A callable ``refit`` chooses among all rows.
        """
        search = table.fold_models.search
        rows = None
        if search.space.structure == "output-groups" and not callable(self.refit):
            # each target chose its own point by its CV loss: the last
            # record holds every target's choice
            rows = [self._result.best_index]
        elif self.penalty_groups is not None and not callable(self.refit):
            stages = [record.get("stage") for record in search.history]
            if getattr(search, "penalty_gain", 0.0):
                rows = [self._result.best_index]  # polished by the search
            elif "scalar" in stages:
                rows = [i for i, stage in enumerate(stages) if stage == "scalar"]
        for _ in range(len(table.candidates) + 1):
            best = self._best_index(refit_metric, table.results, rows)
            if best in search.polished:
                break
            search.polish(best)
            table.rescore(best)
        self.best_index_ = best
        if not callable(self.refit):
            self.best_score_ = table.results[f"mean_test_{refit_metric}"][best]
        self.best_params_ = table.results["params"][best]

    def _run_search(self, evaluate_candidates, *, callback_ctx=None):
        """Run the gradient search on the fixed splits, then score every point."""
        search = self._fold_models.search
        result = search.run(callback_ctx=callback_ctx, owner=self)
        self._result = result
        self.n_iter_ = len(result.history)
        self.converged_ = result.converged
        history = result.history
        scalar = search.space.structure == "scalar"
        more_results = {
            "outer_iteration": [record["iteration"] for record in history],
            "outer_phase": [record["phase"] for record in history],
            "outer_loss": [record["value"] for record in history],
            "hypergradient_norm": [record["grad_norm"] for record in history],
            "step_accepted": [bool(record["accepted"]) for record in history],
        }
        if all("stage" in record for record in history):
            more_results["outer_stage"] = [record["stage"] for record in history]
        evaluate_candidates(
            [
                {
                    search.space.name: float(record[search.param][0])
                    if scalar
                    else record[search.param]
                }
                for record in history
            ],
            indices=list(range(len(history))),
            more_results=more_results,
        )

    def _best_index(self, refit_metric, results, rows=None):
        """GridSearchCV's choice (among ``rows``, all when None); ties in the
        metric go to the lower outer loss."""
        if callable(self.refit):
            return self._select_best_index(self.refit, refit_metric, results)
        ranks = results[f"rank_test_{refit_metric}"]
        rows = np.arange(ranks.size) if rows is None else np.asarray(rows)
        tied = rows[ranks[rows] == ranks[rows].min()]
        return int(tied[np.argmin(results["outer_loss"][tied])])

    def _refit_best(
        self,
        X,
        y,
        fit_params,
        root_ctx,
        metadata,
        fold_models,
        closed_form=False,
        warm_from=None,
    ):
        """``best_estimator_``: the user's estimator at the best point, fitted on
        ``X, y`` (the input; a device array's too). ``warm_from``: the host data
        and fit parameters ``(X, y, fit_params)`` of the search, on which the
        engine solves the refit's problem to warm-start the estimator's own
        ``fit`` where its adapter asks for it; None: a cold ``fit``."""
        space = fold_models.search.space
        params = estimator_params(space, self.best_params_)
        # one value per feature or group: no value of the parameter gives it
        many = space.structure in MANY_PENALTIES and not params
        self.best_estimator_ = clone(self.estimator).set_params(
            **clone(params, safe=False)
        )
        refit_ctx = root_ctx.subcontext(task_name="refit-with-best-params")
        with refit_ctx.propagate_callback_context(self.best_estimator_):
            refit_ctx.call_on_fit_task_begin(
                estimator=self, X=X, y=y, metadata=metadata
            )
            start = time.perf_counter()
            if many:
                refit_vector_penalty(
                    self.best_estimator_,
                    fold_models,
                    self.best_index_,
                    X,
                    y,
                    fit_params,
                    tol=fold_models.search.options.polish_tol,
                    max_iter=self.inner_max_iter,
                    verbose=self.verbose,
                )
            else:
                shared = closed_form and fold_models.adapter.refit_from_search(
                    self.best_estimator_,
                    fold_models,
                    self.best_index_,
                    X,
                    y,
                    fit_params,
                )
                # the closed form's products of all rows are no longer needed
                # (a fit computes its own beside them otherwise)
                release = getattr(fold_models.search, "release_rows", None)
                if release is not None:
                    release()
                if shared:
                    if self.verbose > 0:
                        print(
                            "Refit from the products the folds shared (one "
                            "factorization, no product of the data with itself)",
                            flush=True,
                        )
                elif warm_from is not None and fold_models.adapter.warm_refit(
                    fold_models.split.final
                ):
                    warm_started_refit(
                        self.best_estimator_,
                        fold_models,
                        self.best_index_,
                        *warm_from,
                        fit_input=(X, y, fit_params),
                        tol=fold_models.search.options.polish_tol,
                        max_iter=self.inner_max_iter,
                        verbose=self.verbose,
                    )
                else:
                    self.best_estimator_.fit(X, y, **fit_params)
            self.refit_time_ = time.perf_counter() - start
        refit_ctx.call_on_fit_task_end(estimator=self, X=X, y=y, metadata=metadata)
        if hasattr(self.best_estimator_, "feature_names_in_"):
            self.feature_names_in_ = self.best_estimator_.feature_names_in_


def _polish_tol(polish_tol, estimator):
    """``polish_tol``, with ``"auto"`` read from the estimator's ``tol``."""
    if polish_tol != "auto":
        return polish_tol
    tol = getattr(estimator, "tol", None)
    if isinstance(tol, Real) and not isinstance(tol, bool) and tol > 0:
        return float(tol)
    return SearchOptions._field_defaults["polish_tol"]


class _CandidateTable:
    """cv_results_ of the evaluated points, scored from the engine's solutions.

    :meth:`add` is the ``evaluate_candidates`` handed to ``_run_search``: it
    scores the fold models of the given evaluated points (``indices`` into the
    search history) and formats everything with BaseSearchCV's
    ``_format_results``. :meth:`rescore` refreshes one row after its point was
    re-solved tightly.
    """

    def __init__(self, owner, fold_models, X, y, scorer, score_params):
        self.owner, self.fold_models = owner, fold_models
        self.X, self.y = X, y
        self.scorer, self.score_params = scorer, score_params
        self.candidates, self.indices, self.out = [], [], []
        self.more = defaultdict(list)
        self.results = {}

    def _score(self, candidates, indices):
        return self.fold_models.score(
            candidates,
            indices,
            self.X,
            self.y,
            scorer=self.scorer,
            score_params=self.score_params,
            return_train_score=self.owner.return_train_score,
            error_score=self.owner.error_score,
        )

    def _format(self, quiet=True):
        # Rows are formatted again after each rescore: the "non-finite scores"
        # warning of _format_results is given once, by the final formatting.
        with warnings.catch_warnings():
            if quiet:
                warnings.filterwarnings("ignore", message=".*scores are non-finite")
            self.results = self.owner._format_results(
                self.candidates, self.owner.n_splits_, self.out, self.more
            )
        return self.results

    def finish(self):
        """The final cv_results_ (warns once about non-finite scores, as
        scikit-learn's formatting does: formatted again only then)."""
        if any(
            key.startswith(("mean_test_", "mean_train_"))
            and not np.all(np.isfinite(values))
            for key, values in self.results.items()
        ):
            return self._format(quiet=False)
        return self.results

    def add(self, candidate_params, indices, more_results):
        candidate_params = list(candidate_params)
        self.out.extend(self._score(candidate_params, indices))
        self.candidates.extend(candidate_params)
        self.indices.extend(indices)
        for key, values in more_results.items():
            self.more[key].extend(values)
        return self._format()

    def rescore(self, row):
        n_splits = self.owner.n_splits_
        index = self.indices[row]
        rows = slice(row * n_splits, (row + 1) * n_splits)
        self.out[rows] = self._score([self.candidates[row]], [index])
        if "outer_loss" in self.more:
            self.more["outer_loss"][row] = self.fold_models.search.history[index][
                "value"
            ]
        return self._format()
