"""The closed-form search of ridge penalties (skbilevel/search/_ridge*.py)."""

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose
from scipy.linalg import eigvalsh_tridiagonal
from sklearn.datasets import load_diabetes, make_classification, make_regression
from sklearn.linear_model import LogisticRegression, Ridge, RidgeClassifier
from sklearn.model_selection import GridSearchCV, KFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skbilevel import BilevelSearchCV
from skbilevel.hypergrad import get_linear_solver
from skbilevel.model_selection import RidgeAdapter
from skbilevel.objectives import L2Penalty
from skbilevel.outer import CrossValidatedProblem
from skbilevel.search import (
    RidgePathSearch,
    SearchOptions,
    SharedRows,
    _ridge_factor,
    engine_folds,
    fold_weights,
    make_search,
    materialize_folds,
)
from skbilevel.search._ridge_factor import (
    CompactFolds,
    _FoldPath,
    choose_factorization,
    krylov_budget,
    lanczos,
)

CASES = {
    # n_samples, n_features, n_targets, sparse, weighted, fit_intercept
    "gram": (60, 8, 1, False, False, True),
    "kernel-weighted": (40, 70, 3, False, True, True),
    "sparse-no-intercept": (80, 10, 2, True, True, False),
}


def _folds(case, per_target):
    n, p, q, sparse, weighted, fit_intercept = CASES[case]
    X, y = make_regression(n, p, n_targets=q, noise=5.0, random_state=0)
    y = y + 30.0
    if sparse:
        X[np.abs(X) < 0.7] = 0.0
        X = sp.csr_matrix(X)
    weights = np.random.default_rng(0).uniform(0.5, 2.0, n) if weighted else None
    encoding = RidgeAdapter().encode_targets(Ridge(fit_intercept=fit_intercept), y)
    splits = list(KFold(3, shuffle=True, random_state=0).split(X))
    data = materialize_folds(X, y, splits)

    def penalty(n_features):
        if per_target:
            return L2Penalty.per_output(n_features, q)
        return L2Penalty.scalar()

    folds = engine_folds(
        data,
        encoding,
        fold_weights(data, y, weights, lambda y_train, w: w),
        penalty=penalty,
        fit_intercept=fit_intercept,
    )
    return folds, X, y, weights, splits, encoding


# The folds' factorizations, imposed on the search in turn (not by the cost
# model): the same global minimum either way. (A Krylov basis, for one
# target only, is imposed where the test has one.)
FACTORIZATIONS = ("eigen", "tridiagonal")


def _weighted_folds(
    X, Y, splits, weights, fit_intercept=True, storage="auto", scalar=False
):
    """Engine folds of Ridge on ``(X, Y)``, weighted; one alpha per target, or
    one for all (``scalar``)."""
    encoding = RidgeAdapter().encode_targets(Ridge(fit_intercept=fit_intercept), Y)
    data = materialize_folds(X, Y, splits, storage=storage)
    return engine_folds(
        data,
        encoding,
        fold_weights(data, Y, weights, lambda y_train, w: w),
        penalty=lambda p: (
            L2Penalty.scalar()
            if scalar
            else L2Penalty.per_output(p, encoding.n_outputs)
        ),
        fit_intercept=fit_intercept,
    )


def _h(paths, alpha, per_target):
    curves = [path.curve(np.asarray(alpha)[None], second=False) for path in paths]
    values = np.array([c[0][0] for c in curves])
    grads = np.array([c[1][0] for c in curves]).mean(axis=0)
    return values.sum(axis=1), grads if per_target else np.array([grads.sum()])


@pytest.mark.parametrize("per_target", [False, True], ids=["scalar", "per-target"])
@pytest.mark.parametrize("case", list(CASES))
def test_h_and_derivative_match_the_iterative_engine(case, per_target):
    folds, *_ = _folds(case, per_target)
    q = folds[0].inner.model.n_outputs
    if per_target and q == 1:
        pytest.skip("one target")
    lam = np.linspace(-1.0, 2.0, q) if per_target else np.array([0.7])
    problem = CrossValidatedProblem(folds, get_linear_solver("exact"))
    reference = problem.evaluate(lam, inner_tol=1e-12, linear_tol=1e-12)
    paths = [_FoldPath(fold) for fold in folds]
    alpha = np.broadcast_to(np.exp(lam), (q,))
    fold_values, grad = _h(paths, alpha, per_target)
    assert_allclose(fold_values, reference.fold_values, rtol=1e-10)
    assert_allclose(grad, reference.grad, rtol=1e-4, atol=1e-9 * abs(reference.value))
    # and finite differences of the closed form itself, in log alpha
    eps = 1e-5
    for j in range(lam.size):
        step = np.zeros(lam.size)
        step[j] = eps
        up = _h(paths, np.broadcast_to(np.exp(lam + step), (q,)), per_target)[0]
        down = _h(paths, np.broadcast_to(np.exp(lam - step), (q,)), per_target)[0]
        assert grad[j] == pytest.approx((up.mean() - down.mean()) / (2 * eps), rel=1e-6)


def _assert_ridge_fit(solution, alpha, case, data, train):
    """``(coef, intercept)`` in the engine's layout is ``Ridge(alpha)`` fit
    on rows ``train`` of ``case``'s data ``(X, y, weights, encoding)`` from
    :func:`_folds` (targets less the engine's offset)."""
    X, y, weights, encoding = data
    fit_intercept = CASES[case][5]
    coef, intercept = solution
    ridge = Ridge(alpha=alpha, fit_intercept=fit_intercept, tol=1e-12)
    ridge.fit(
        X[train],
        (y - encoding.context["offset"])[train],
        sample_weight=None if weights is None else weights[train],
    )
    assert_allclose(coef.T.reshape(ridge.coef_.shape), ridge.coef_, atol=1e-8)
    if fit_intercept:
        assert_allclose(intercept, np.atleast_1d(ridge.intercept_), atol=1e-8)


@pytest.mark.parametrize("case", list(CASES))
def test_fold_solutions_are_ridge_fits(case):
    folds, X, y, weights, splits, encoding = _folds(case, per_target=False)
    paths = [_FoldPath(fold) for fold in folds]
    alphas = [np.full(y.shape[1] if y.ndim > 1 else 1, a) for a in (0.1, 10.0)]
    for path, (train, _) in zip(paths, splits):
        for alpha, solution in zip(alphas, path.solutions(alphas)):
            _assert_ridge_fit(
                solution, alpha[0], case, (X, y, weights, encoding), train
            )


@pytest.mark.parametrize("data", ["diabetes", "kernel"])
def test_scalar_alpha_is_the_fine_grids_argmin(data, monkeypatch, capsys):
    if data == "diabetes":
        X, y = load_diabetes(return_X_y=True)
    else:  # more features than training samples: the fold kernels
        X, y = make_regression(80, 120, effective_rank=10, noise=1.0, random_state=0)
    splits = list(KFold(5, shuffle=True, random_state=0).split(X))
    grid = np.logspace(-4, 4, 201)
    reference = GridSearchCV(
        Ridge(), {"alpha": grid}, cv=splits, scoring="neg_mean_squared_error"
    ).fit(X, y)
    step = np.log(grid[1] / grid[0])
    # the Krylov basis's budget lifted: systems this small are reduced
    monkeypatch.setattr(_ridge_factor, "_KRYLOV_SHARE", 1e3)
    for factorization in FACTORIZATIONS + ("krylov",):
        monkeypatch.setattr(_ridge_factor, "_FACTORIZATION", factorization)
        search = BilevelSearchCV(
            Ridge(),
            {"alpha": (1e-4, 1e4)},
            cv=splits,
            scoring="neg_mean_squared_error",
            verbose=1,
        ).fit(X, y)
        kinds = {"eigen": "eigendecomposition", "tridiagonal": "tridiagonal"}
        kinds["krylov"] = "Krylov (Lanczos) basis per fold"
        assert kinds[factorization] in capsys.readouterr().out
        alpha = search.best_params_["alpha"]
        assert abs(np.log(alpha / reference.best_params_["alpha"])) <= step
        # and its CV loss is at least as good as the grid's best
        ours = cross_validate(
            Ridge(alpha=alpha), X, y, cv=splits, scoring="neg_mean_squared_error"
        )["test_score"].mean()
        assert ours >= reference.best_score_ - 1e-9 * abs(reference.best_score_)
        assert search.history_[-1]["phase"] == "root"
        assert search.history_[-1]["grad_norm"] < 1e-6 * search.history_[-1]["value"]


def test_each_target_gets_its_own_global_optimum(monkeypatch):
    # Targets of very different noise levels: their optimal alphas differ by
    # orders of magnitude; each must be at its own grid optimum.
    X, Y = make_regression(150, 12, n_targets=3, noise=0.0, random_state=0)
    rng = np.random.default_rng(0)
    Y = Y + rng.standard_normal(Y.shape) * np.array([0.1, 30.0, 300.0])
    splits = list(KFold(5, shuffle=True, random_state=0).split(X))
    grid = np.logspace(-3, 5, 161)
    step = np.log(grid[1] / grid[0])
    references = [
        GridSearchCV(
            Ridge(), {"alpha": grid}, cv=splits, scoring="neg_mean_squared_error"
        )
        .fit(X, Y[:, j])
        .best_params_["alpha"]
        for j in range(3)
    ]
    for factorization in FACTORIZATIONS:
        monkeypatch.setattr(_ridge_factor, "_FACTORIZATION", factorization)
        search = BilevelSearchCV(
            Ridge(), {"alpha": ([1e-3] * 3, [1e5] * 3)}, cv=splits
        ).fit(X, Y)
        alphas = np.asarray(search.best_params_["alpha"])
        for j in range(3):
            assert abs(np.log(alphas[j] / references[j])) <= step, (factorization, j)
        assert alphas[2] > 10 * alphas[0]


def test_pipeline_weights_and_ridge_classifier_take_the_closed_form(capsys):
    X, y = make_classification(200, 8, random_state=0)
    weights = np.random.default_rng(1).uniform(0.5, 2.0, y.size)
    pipe = make_pipeline(StandardScaler(), RidgeClassifier())
    space = {"ridgeclassifier__alpha": (1e-3, 1e3)}
    closed = BilevelSearchCV(pipe, space, cv=4, verbose=1).fit(
        X, y, ridgeclassifier__sample_weight=weights
    )
    assert "closed-form search" in capsys.readouterr().out
    gradient = BilevelSearchCV(pipe, space, cv=4, path="gradient", tol=1e-7).fit(
        X, y, ridgeclassifier__sample_weight=weights
    )
    best = min(r["value"] for r in closed.history_)
    # the gradient search cannot beat the exact global minimum
    assert min(r["value"] for r in gradient.history_) >= best * (1 - 1e-7)
    assert min(r["value"] for r in gradient.history_) <= best * (1 + 1e-3)


def test_path_choice_and_its_errors(capsys):
    X, y = make_regression(30, 60, random_state=0)
    X_sparse = sp.csr_matrix(np.where(np.abs(X) > 1, X, 0.0))
    BilevelSearchCV(Ridge(), {"alpha": (1e-2, 1e2)}, cv=3, verbose=1).fit(X_sparse, y)
    out = capsys.readouterr().out
    assert "Gradient search: sparse data with more features than samples" in out
    with pytest.raises(ValueError, match="closed-form.*does not apply"):
        BilevelSearchCV(Ridge(), {"alpha": (1e-2, 1e2)}, cv=3, path="closed-form").fit(
            X_sparse, y
        )
    Xc, yc = make_classification(60, 4, random_state=0)
    with pytest.raises(ValueError, match="not the squared loss"):
        BilevelSearchCV(
            LogisticRegression(), {"C": (1e-2, 1e2)}, cv=3, path="closed-form"
        ).fit(Xc, yc)


def test_make_search_picks_by_problem():
    folds, *_ = _folds("gram", per_target=False)
    from skbilevel.search import HyperSpace

    space = HyperSpace.from_values("alpha", 1e-3, 1e3, log_sign=1)
    assert isinstance(make_search(folds, space, SearchOptions()), RidgePathSearch)
    gradient = make_search(folds, space, SearchOptions(), path="gradient")
    assert not isinstance(gradient, RidgePathSearch)
    with pytest.raises(ValueError, match="path must be one of"):
        make_search(folds, space, SearchOptions(), path="eigen")


def test_per_target_boxes_of_their_own_reach_the_interior_optimum():
    # Each target scans its own box: an upper bound just above one target's
    # optimum must not pin that target to the bound.
    X, Y = make_regression(150, 12, n_targets=2, noise=0.0, random_state=0)
    rng = np.random.default_rng(0)
    Y = Y + rng.standard_normal(Y.shape) * np.array([30.0, 300.0])
    splits = list(KFold(5, shuffle=True, random_state=0).split(X))
    wide = BilevelSearchCV(Ridge(), {"alpha": ([1e-3] * 2, [1e5] * 2)}, cv=splits)
    optimum = np.asarray(wide.fit(X, Y).best_params_["alpha"])
    high = np.array([1.1 * optimum[0], 1e5])
    narrow = BilevelSearchCV(Ridge(), {"alpha": ([1e-3] * 2, high)}, cv=splits)
    alphas = np.asarray(narrow.fit(X, Y).best_params_["alpha"])
    assert_allclose(alphas, optimum, rtol=1e-5)
    assert alphas[0] < high[0] / 1.05


def test_features_with_large_offsets_are_centred_exactly():
    # Columns such as years or timestamps: means far above their spread.
    X, y = make_regression(80, 5, noise=5.0, random_state=0)
    X_offset = X + np.array([1e6, 1e7, 0.0, -1e5, 1e8])
    splits = list(KFold(4, shuffle=True, random_state=0).split(X))
    plain = BilevelSearchCV(Ridge(), {"alpha": (1e-3, 1e3)}, cv=splits).fit(X, y)
    offset = BilevelSearchCV(Ridge(), {"alpha": (1e-3, 1e3)}, cv=splits)
    offset.fit(X_offset, y)
    # float64 keeps ~16 digits of x: an offset of 1e8 leaves ~1e-8 of the spread
    assert_allclose(
        offset.cv_results_["outer_loss"], plain.cv_results_["outer_loss"], rtol=1e-6
    )
    assert offset.best_params_["alpha"] == pytest.approx(
        plain.best_params_["alpha"], rel=1e-5
    )


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("offset", [0.0, 1e3], ids=["centred", "offset"])
@pytest.mark.parametrize("shape", [(45, 80), (90, 6)], ids=["kernel", "gram"])
def test_products_of_all_rows_give_each_folds_own_path(shape, fit_intercept, offset):
    # Fold kernels taken as blocks of one kernel of all rows, fold Grams as
    # the Gram of all rows minus the rows a fold leaves out (centred once):
    # what each fold's own products give, values, slopes and solutions.
    X, Y = make_regression(*shape, n_targets=2, noise=5.0, random_state=0)
    X = X + offset * np.arange(1, shape[1] + 1) / shape[1]
    weights = np.random.default_rng(0).uniform(0.5, 2.0, len(X))
    # 5 folds: the Gram of all rows saves work from 4 folds on
    splits = list(KFold(5, shuffle=True, random_state=0).split(X))
    folds = _weighted_folds(X, Y, splits, weights, fit_intercept)
    rows = SharedRows(X, splits, fit_intercept, min_work=0)
    assert rows.applies(folds)
    alphas = np.array([[0.3, 30.0], [3.0, 0.03]])
    kind = "kernel" if shape[0] < shape[1] else "gram"
    for k, fold in enumerate(folds):
        products = rows.products(k)
        assert products[0] == kind
        own, shared = _FoldPath(fold), _FoldPath(fold, products)
        # offset features without an intercept: a kernel of condition ~1e8,
        # whose two summation orders agree to ~1e-5 (both are that accurate)
        rtol = 1e-4 if offset and not fit_intercept else 1e-7
        for a, b in zip(own.curve(alphas), shared.curve(alphas)):
            assert_allclose(b, a, rtol=rtol, atol=1e-10 * np.abs(a).max())
        for (coef_a, int_a), (coef_b, int_b) in zip(
            own.solutions(alphas), shared.solutions(alphas)
        ):
            assert_allclose(coef_b, coef_a, rtol=10 * rtol, atol=1e-9)
            if fit_intercept:
                assert_allclose(int_b, int_a, rtol=1e-7)


def test_fold_grams_are_their_own_when_weights_differ_by_fold():
    # Weights computed on each training fold (class weights): a row's weight
    # differs between folds, and the Gram of all rows does not apply.
    X, y = make_regression(90, 6, random_state=0)
    splits = list(KFold(5, shuffle=True, random_state=0).split(X))
    encoding = RidgeAdapter().encode_targets(Ridge(), y)
    data = materialize_folds(X, y, splits)
    folds = engine_folds(
        data,
        encoding,
        fold_weights(
            data, y, None, lambda y_train, w: np.full(y_train.size, y_train.std())
        ),
        penalty=lambda p: L2Penalty.scalar(),
        fit_intercept=True,
    )
    rows = SharedRows(X, splits, True, min_work=0)
    assert rows.applies(folds)
    assert all(rows.products(k) is None for k in range(5))


@pytest.mark.parametrize("case", list(CASES))
def test_curve_derivatives_are_those_of_the_values(case):
    folds, *_ = _folds(case, per_target=True)
    q = folds[0].inner.model.n_outputs
    lam = np.linspace(-1.0, 1.5, q)
    eps = 1e-4
    for fold in folds:
        path = _FoldPath(fold)
        values, slopes, bends = path.curve(np.exp([lam, lam + eps, lam - eps]))
        single = path.curve(np.exp(lam)[None])
        assert_allclose(values[0], single[0][0], rtol=1e-12)
        assert_allclose(slopes[0], single[1][0], rtol=1e-10)
        assert_allclose(
            slopes[0], (values[1] - values[2]) / (2 * eps), rtol=1e-6, atol=1e-12
        )
        assert_allclose(
            bends[0], (slopes[1] - slopes[2]) / (2 * eps), rtol=1e-5, atol=1e-11
        )


SCORINGS = [
    None,
    "r2",
    "neg_mean_squared_error",
    "neg_root_mean_squared_error",
    ["r2", "neg_mean_squared_error"],
    {"fit": "r2", "error": "neg_root_mean_squared_error"},
    "neg_mean_absolute_error",  # scored through the fold models
]


@pytest.mark.parametrize("n_targets", [1, 3])
@pytest.mark.parametrize("scoring", SCORINGS, ids=str)
def test_scores_from_predictions_equal_scikit_learns(scoring, n_targets):
    # The closed form scores squared-error metrics from its validation
    # predictions: every split score must equal scikit-learn's at that alpha.
    X, y = make_regression(70, 6, n_targets=n_targets, noise=10.0, random_state=0)
    y = y + 50.0
    splits = list(KFold(4, shuffle=True, random_state=0).split(X))
    search = BilevelSearchCV(
        Ridge(fit_intercept=n_targets == 1),
        {"alpha": (1e-2, 1e2)},
        cv=splits,
        scoring=scoring,
        refit=False if isinstance(scoring, (list, dict)) else True,
    ).fit(X, y)
    results = search.cv_results_
    if scoring is None or isinstance(scoring, str):
        names, metrics = ["score"], [scoring]
    elif isinstance(scoring, list):
        names, metrics = scoring, scoring
    else:
        names, metrics = list(scoring), list(scoring.values())
    for row in (0, 7, len(results["params"]) - 1):
        alpha = results["params"][row]["alpha"]
        for name, metric in zip(names, metrics):
            reference = cross_validate(
                Ridge(alpha=alpha, fit_intercept=n_targets == 1),
                X,
                y,
                cv=splits,
                scoring=metric,
            )["test_score"]
            ours = [results[f"split{k}_test_{name}"][row] for k in range(4)]
            assert_allclose(ours, reference, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("case", ["gram", "sparse-no-intercept"])
def test_compact_curve_equals_the_direct_one(case):
    # Many points and targets at once take ||R z - u||^2 + floor (a QR of the
    # validation products): the same values and derivatives as the residuals.
    folds, *_ = _folds(case, per_target=True)
    q = folds[0].inner.model.n_outputs
    alphas = np.exp(np.linspace(-4, 6, 40))[:, None] * np.ones(q)
    for fold in folds:
        compact = _FoldPath(fold, None, "eigen")
        direct = _FoldPath(fold, None, "eigen")
        direct._compact = False
        assert len(compact.M) > compact.rank
        for a, b in zip(compact.curve(alphas), direct.curve(alphas)):
            assert_allclose(a, b, rtol=1e-9, atol=1e-12 * np.abs(b).max())
        assert compact._compact  # the compact form was taken


def test_training_folds_that_repeat_rows_compute_their_own_products():
    # A bootstrap-like cv repeats rows in a training fold: its Gram is not
    # the Gram of all rows minus the others; scores must equal scikit-learn's.
    X, y = make_regression(200, 5, noise=10.0, random_state=0)
    rng = np.random.default_rng(0)
    splits = []
    for train, test in KFold(5, shuffle=True, random_state=0).split(X):
        splits.append((np.concatenate([train, rng.choice(train, 60)]), test))
    search = BilevelSearchCV(
        Ridge(), {"alpha": (1e-2, 1e3)}, cv=splits, scoring="neg_mean_squared_error"
    ).fit(X, y)
    for row in (0, len(search.cv_results_["params"]) - 1):
        alpha = search.cv_results_["params"][row]["alpha"]
        reference = cross_validate(
            Ridge(alpha=alpha), X, y, cv=splits, scoring="neg_mean_squared_error"
        )["test_score"]
        ours = [search.cv_results_[f"split{k}_test_score"][row] for k in range(5)]
        assert_allclose(ours, reference, rtol=1e-9)


class _ClippedRidge(Ridge):
    def predict(self, X):
        return np.clip(super().predict(X), -10.0, 10.0)


def test_subclasses_and_single_sample_folds_are_scored_by_their_models():
    # A registered subclass may predict otherwise, and r2 of one sample is
    # undefined (NaN in scikit-learn): neither is scored from the solutions.
    from skbilevel.model_selection import RidgeAdapter, register_adapter

    X, y = make_regression(40, 4, noise=10.0, random_state=0)
    register_adapter(_ClippedRidge, RidgeAdapter())
    splits = list(KFold(4).split(X))
    search = BilevelSearchCV(_ClippedRidge(), {"alpha": (1e-2, 1e2)}, cv=splits)
    search.fit(X, y)
    alpha = search.best_params_["alpha"]
    reference = cross_validate(_ClippedRidge(alpha=alpha), X, y, cv=splits)
    best = [
        search.cv_results_[f"split{k}_test_score"][search.best_index_] for k in range(4)
    ]
    assert_allclose(best, reference["test_score"], rtol=1e-8)
    one = [(np.delete(np.arange(40), i), np.array([i])) for i in range(3)]
    with pytest.warns(UserWarning):
        single = BilevelSearchCV(Ridge(), {"alpha": (1e-2, 1e2)}, cv=one).fit(X, y)
    assert np.isnan(single.cv_results_["split0_test_score"]).all()


KERNEL_CASES = {
    # n_samples, n_features, n_targets, weighted, fit_intercept
    "gram": (90, 12, 2, False, True),
    "gram-weighted-no-intercept": (90, 12, 2, True, False),
    "kernel": (45, 80, 2, False, True),
    "kernel-weighted": (45, 80, 3, True, True),
}


def _paths(shape, factorization, shared=False):
    n, p, q, weighted, fit_intercept = shape
    X, Y = make_regression(n, p, n_targets=q, noise=5.0, random_state=0)
    X = X + 10.0
    weights = np.random.default_rng(0).uniform(0.5, 2.0, n) if weighted else None
    return _fold_paths(X, Y, factorization, weights, fit_intercept, shared)


def _fold_paths(X, Y, factorization, weights, fit_intercept, shared, **options):
    """The ``_FoldPath`` of each of 5 shuffled folds of ``(X, Y)``
    (``options``: ``scalar`` for one alpha, ``alpha_low`` for the paths)."""
    scalar = options.pop("scalar", False)
    splits = list(KFold(5, shuffle=True, random_state=0).split(X))
    folds = _weighted_folds(X, Y, splits, weights, fit_intercept, scalar=scalar)
    rows = SharedRows(X, splits, fit_intercept, min_work=0) if shared else None
    if rows is not None:
        assert rows.applies(folds)
    return [
        _FoldPath(
            fold, None if rows is None else rows.products(k), factorization, **options
        )
        for k, fold in enumerate(folds)
    ]


def _assert_paths_agree(references, paths, alphas, tolerances, intercept):
    """Each path's curve (values and both derivatives), predictions and fold
    solutions at ``alphas`` are its reference's: ``tolerances`` is
    ``(rtol, atol of the curves, atol of the rest)``, the absolute ones
    relative to each array's largest entry."""
    rtol, curve_atol, atol = tolerances
    for a, b in zip(references, paths):
        for one, other in zip(a.curve(alphas), b.curve(alphas)):
            assert_allclose(other, one, rtol=rtol, atol=curve_atol * np.abs(one).max())
        for one, other in zip(a.predictions(alphas), b.predictions(alphas)):
            assert_allclose(other, one, rtol=rtol, atol=atol * np.abs(one).max())
        for (coef_a, int_a), (coef_b, int_b) in zip(
            a.solutions(alphas), b.solutions(alphas)
        ):
            assert_allclose(coef_b, coef_a, rtol=rtol, atol=atol * np.abs(coef_a).max())
            if intercept:
                assert_allclose(int_b, int_a, rtol=1e-8)


@pytest.mark.parametrize("shared", [False, True], ids=["own", "shared"])
@pytest.mark.parametrize("case", list(KERNEL_CASES))
def test_tridiagonal_reduction_gives_the_eigen_paths_curve(case, shared):
    # (T + alpha I)^{-k} C with T tridiagonal, one Cholesky factorization per
    # alpha: the values, both derivatives, predictions and fold solutions of
    # the eigendecomposition, at shared and per-target alphas alike.
    shape = KERNEL_CASES[case]
    q = shape[2]
    eigen = _paths(shape, "eigen", shared)
    reduced = _paths(shape, "tridiagonal", shared)
    assert {path.factorization for path in reduced} == {"tridiagonal"}
    assert {path.factorization for path in eigen} == {"eigen"}
    shared_alphas = np.exp(np.linspace(-6, 8, 8))[:, None] * np.ones(q)
    own_alphas = np.exp(np.linspace(-3, 4, 3 * q)).reshape(3, q)
    for alphas in (shared_alphas, own_alphas):
        _assert_paths_agree(eigen, reduced, alphas, (1e-8, 1e-11, 1e-10), shape[4])
    # the tridiagonal path is still one: no fallback was needed
    assert {path.factorization for path in reduced} == {"tridiagonal"}


def test_tridiagonal_path_of_a_singular_system_continues_as_eigen():
    # A rank-3 Gram matrix of dimension 8 has eigenvalues of round-off size,
    # some negative: below them T + alpha I is not positive definite, its
    # Cholesky factorization fails and T is diagonalized (as the eigen path,
    # with its eigenvalues clipped at zero).
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 3)) @ rng.standard_normal((3, 8))
    y = X @ rng.standard_normal(8) + rng.standard_normal(40)
    assert np.linalg.eigvalsh(X.T @ X)[0] < 0
    splits = list(KFold(4, shuffle=True, random_state=0).split(X))
    folds = _weighted_folds(X, y, splits, None, fit_intercept=False, scalar=True)
    alphas = np.array([[1e-2], [1.0], [1e2]])
    singular = 0
    for fold in folds:
        path = _FoldPath(fold, None, "tridiagonal")
        eigen = _FoldPath(fold, None, "eigen")
        before = path.curve(alphas)
        assert path.factorization == "tridiagonal"
        lowest = eigvalsh_tridiagonal(*path._tridiagonal)[0]
        if lowest < 0:
            singular += 1
            assert np.all(np.isfinite(path.curve(np.array([[-lowest / 2]]))[0]))
            assert path.factorization == "eigen"
        for one, other, again in zip(eigen.curve(alphas), before, path.curve(alphas)):
            assert_allclose(other, one, rtol=1e-7)
            assert_allclose(again, one, rtol=1e-7)
    assert singular


def test_cost_model_reduces_large_systems_of_shared_alphas():
    # diabetes' 10 x 10 Gram matrix: calls would cost more than the flops
    assert choose_factorization(10, 88, 1, 25, 1) == "eigen"
    # the 1600 x 1600 fold kernels of a 2000 x 3000 problem: a reduction
    # saves ~3 m^3 (and the read-out's product) against ~30 O(m) solves
    assert choose_factorization(1600, 400, 1, 25, 1) == "tridiagonal"
    # one alpha per target, 50 targets of a 400 x 400 Gram matrix: each
    # target's root search factorizes on its own
    assert choose_factorization(400, 1000, 50, 25, 50) == "eigen"
    assert choose_factorization(1, 10, 1, 25, 1) == "eigen"
    # one target and a floor on alpha: the Krylov basis is tried on large
    # systems (it falls back to the above when it would cost more)
    assert choose_factorization(1600, 400, 1, 25, 1, 1e-4) == "krylov"
    assert choose_factorization(1600, 400, 2, 25, 1, 1e-4) == "tridiagonal"
    assert choose_factorization(100, 400, 1, 25, 1, 1e-4) != "krylov"


def test_search_reports_its_factorization(capsys):
    X, y = make_regression(300, 400, effective_rank=20, noise=1.0, random_state=0)
    search = BilevelSearchCV(Ridge(), {"alpha": (1e-3, 1e3)}, cv=3, verbose=1)
    search.fit(X, y)
    assert "one tridiagonal reduction per fold" in capsys.readouterr().out
    assert search.history_[-1]["phase"] == "root"
    X, y = load_diabetes(return_X_y=True)
    BilevelSearchCV(Ridge(), {"alpha": (1e-3, 1e3)}, cv=3, verbose=1).fit(X, y)
    assert "one eigendecomposition per fold" in capsys.readouterr().out


@pytest.mark.parametrize("factorization", FACTORIZATIONS)
@pytest.mark.parametrize("shape", [(45, 80), (90, 6)], ids=["kernel", "gram"])
def test_folds_reading_rows_in_place_give_the_copies_path(shape, factorization):
    # A fold of the "view" storage trains on every row of X with weight zero
    # off its training rows: its path (own products, or those of all rows)
    # is that of the fold's own copy of its rows.
    X, Y = make_regression(*shape, n_targets=2, noise=5.0, random_state=0)
    weights = np.random.default_rng(0).uniform(0.5, 2.0, len(X))
    splits = list(KFold(5, shuffle=True, random_state=0).split(X))
    engine = {
        storage: _weighted_folds(X, Y, splits, weights, storage=storage)
        for storage in ("copy", "view")
    }
    assert engine["view"][0].inner.model.X is X
    rows = SharedRows(X, splits, True, min_work=0)
    assert rows.applies(engine["view"])
    alphas = np.array([[0.3, 30.0], [3.0, 0.03]])
    for k, (copy, view) in enumerate(zip(engine["copy"], engine["view"])):
        reference = _FoldPath(copy, None, factorization)
        for path in (
            _FoldPath(view, None, factorization),
            _FoldPath(view, rows.products(k), factorization),
        ):
            assert path.rank == min(len(splits[k][0]), shape[1])
            for a, b in zip(reference.curve(alphas), path.curve(alphas)):
                assert_allclose(b, a, rtol=1e-7, atol=1e-10 * np.abs(a).max())
            for a, b in zip(reference.predictions(alphas), path.predictions(alphas)):
                assert_allclose(b, a, rtol=1e-7, atol=1e-9)
            for (coef_a, int_a), (coef_b, int_b) in zip(
                reference.solutions(alphas), path.solutions(alphas)
            ):
                assert_allclose(coef_b, coef_a, rtol=1e-6, atol=1e-9)
                assert_allclose(int_b, int_a, rtol=1e-7)


@pytest.mark.parametrize("factorization", FACTORIZATIONS)
@pytest.mark.parametrize("shape", [(45, 80), (90, 6)], ids=["kernel", "gram"])
def test_rows_of_zero_weight_are_left_out(shape, factorization):
    # Rows a fold weighs zero add nothing to its ridge fit: the path drops
    # them (a smaller system), and its solutions are scikit-learn's.
    X, y = make_regression(*shape, noise=5.0, random_state=0)
    weights = np.random.default_rng(0).uniform(0.5, 2.0, len(X))
    weights[::4] = 0.0
    splits = list(KFold(3, shuffle=True, random_state=0).split(X))
    encoding = RidgeAdapter().encode_targets(Ridge(), y)
    folds = _weighted_folds(X, y, splits, weights, scalar=True)
    for fold, (train, _) in zip(folds, splits):
        path = _FoldPath(fold, None, factorization)
        assert path.rank == min(np.count_nonzero(weights[train]), shape[1])
        ((coef, intercept),) = path.solutions([np.array([2.0])])
        ridge = Ridge(alpha=2.0, tol=1e-12).fit(
            X[train],
            (y - encoding.context["offset"])[train],
            sample_weight=weights[train],
        )
        assert_allclose(coef, ridge.coef_, atol=1e-8)
        assert_allclose(intercept, np.atleast_1d(ridge.intercept_), atol=1e-8)


def test_closed_form_searches_offer_the_search_interface():
    # BilevelSearchCV drives every search through GradientSearch's interface
    folds, X, y, weights, splits, encoding = _folds("gram", per_target=False)
    from skbilevel.search import HyperSpace
    from skbilevel.search._banded import BandedRidgeSearch
    from skbilevel.search._service import GradientSearch

    space = HyperSpace.from_values("alpha", 1e-3, 1e3, log_sign=1)
    search = make_search(folds, space, SearchOptions(), keep_solutions=True)
    search.run()
    best = int(np.argmin([r["value"] for r in search.history]))
    search.polish(best)  # exact already: nothing to re-solve
    assert best in search.polished
    # the best point's fold models are Ridge fits at its alpha
    alpha = float(search.history[best]["alpha"][0])
    for solution, (train, _) in zip(search.solutions(best), splits):
        _assert_ridge_fit(solution, alpha, "gram", (X, y, weights, encoding), train)
    # its value is the CV mean squared error of those fits, and no point of
    # a fine grid does better

    def cv_mse(a):
        return np.mean(
            [
                np.mean((Ridge(alpha=a).fit(X[tr], y[tr]).predict(X[te]) - y[te]) ** 2)
                for tr, te in splits
            ]
        )

    assert search.history[best]["value"] == pytest.approx(cv_mse(alpha), rel=1e-10)
    grid = min(cv_mse(a) for a in np.logspace(-3, 3, 301))
    assert cv_mse(alpha) <= grid * (1 + 1e-10)
    for cls in (RidgePathSearch, BandedRidgeSearch):
        for name in ("run", "polish", "solutions", "param"):
            assert hasattr(cls, name) and hasattr(GradientSearch, name), name


@pytest.mark.parametrize("n_splits", [5, 30], ids=["kfold-kept", "many-folds"])
def test_many_disjoint_folds_keep_no_block_per_fold(n_splits):
    # Each fold's block of left-out rows is kept for it only while the K
    # p x p blocks take no more memory than X; with more folds (leave-one-out
    # alike) each fold computes its own again: the same products either way.
    X, Y = make_regression(60, 6, n_targets=2, noise=5.0, random_state=0)
    weights = np.random.default_rng(0).uniform(0.5, 2.0, len(X))
    splits = list(KFold(n_splits).split(X))
    folds = _weighted_folds(X, Y, splits, weights, True)
    rows = SharedRows(X, splits, True, min_work=0)
    assert rows.applies(folds)
    alphas = np.array([[0.3, 30.0]])
    for k, fold in enumerate(folds):
        products = rows.products(k)
        assert (rows._blocks is None) == (n_splits * X.shape[1] > len(X))
        own, shared = _FoldPath(fold), _FoldPath(fold, products)
        for a, b in zip(own.curve(alphas), shared.curve(alphas)):
            assert_allclose(b, a, rtol=1e-7, atol=1e-10 * np.abs(a).max())


def _ill_conditioned(n, p, seed=0):
    """Rows whose singular values fall as ``30 / i``: a kernel whose Krylov
    solutions converge slowly at small alpha."""
    rng = np.random.default_rng(seed)
    U = np.linalg.qr(rng.standard_normal((n, n)))[0]
    V = np.linalg.qr(rng.standard_normal((p, n)))[0]
    X = (U * (30.0 / np.arange(1, n + 1))) @ V.T
    return X, X @ rng.standard_normal(p) + 0.1 * rng.standard_normal(n)


def _scalar_paths(X, y, factorization, alpha_low, weights=None, **options):
    fit_intercept, shared = options.get("fit_intercept", True), options.get("shared")
    return _fold_paths(
        X, y, factorization, weights, fit_intercept, shared,
        scalar=True, alpha_low=alpha_low,
    )  # fmt: skip


KRYLOV_CASES = {
    # n_samples, n_features, weighted, fit_intercept
    "kernel": (300, 400, False, True),
    "kernel-weighted-no-intercept": (300, 400, True, False),
    "gram-weighted": (500, 200, True, True),
}


@pytest.mark.parametrize("shared", [False, True], ids=["own", "shared"])
@pytest.mark.parametrize("case", list(KRYLOV_CASES))
def test_krylov_basis_gives_the_eigen_paths_curve_above_its_floor(
    case, shared, monkeypatch
):
    # The Lanczos basis of the right-hand side's Krylov space holds the
    # solutions at every alpha >= alpha_low to ~1e-10: the values, both
    # derivatives, predictions and fold solutions of the eigendecomposition,
    # from a basis far smaller than the system. (Systems this small are
    # reduced by the cost model: its budget is lifted.)
    monkeypatch.setattr(_ridge_factor, "_KRYLOV_SHARE", 10.0)
    n, p, weighted, fit_intercept = KRYLOV_CASES[case]
    X, y = make_regression(n, p, effective_rank=30, noise=1.0, random_state=0)
    X = X + 10.0
    weights = np.random.default_rng(0).uniform(0.5, 2.0, n) if weighted else None
    options = {"fit_intercept": fit_intercept, "shared": shared}
    alpha_low = 1e-3
    eigen = _scalar_paths(X, y, "eigen", alpha_low, weights, **options)
    krylov = _scalar_paths(X, y, "krylov", alpha_low, weights, **options)
    for path, reference in zip(krylov, eigen):
        assert path.factorization == "krylov"
        # the tolerance was reached before the space was exhausted
        assert path.krylov_steps == path.rank < reference.rank / 2
    alphas = np.exp(np.linspace(np.log(alpha_low), np.log(1e4), 9))[:, None]
    # (X + 10 without an intercept: a kernel of condition ~1e8, whose
    # derivatives neither factorization has to more than ~1e-8 of their
    # scale; the eigendecomposition's move by that much between the fold's
    # products and those of all rows)
    _assert_paths_agree(eigen, krylov, alphas, (1e-7, 1e-7, 1e-8), fit_intercept)


def test_lanczos_error_estimate_bounds_the_solutions_error():
    # Against direct solves: each alpha at or above the floor is solved to
    # the tolerance by the returned basis; the basis is orthonormal and
    # T = Q S Q'.
    rng = np.random.default_rng(0)
    U = np.linalg.qr(rng.standard_normal((300, 300)))[0]
    S, b = (U * np.logspace(0, -2, 300)) @ U.T, rng.standard_normal(300)
    (Q, theta, Z), steps = lanczos(S, b, 1e-3, 300, tol=1e-10)
    assert steps == len(Q) < 150
    assert_allclose(Q @ Q.T, np.eye(steps), atol=1e-12)
    assert_allclose(Q @ S @ Q.T, (Z * theta) @ Z.T, atol=1e-10 * theta.max())
    for alpha in (1e-3, 1e-1, 10.0):
        exact = np.linalg.solve(S + alpha * np.eye(300), b)
        krylov = Q.T @ (Z @ ((Z.T @ (Q @ b)) / (theta + alpha)))
        assert np.linalg.norm(krylov - exact) <= 1e-9 * np.linalg.norm(exact)
    # a tighter tolerance needs more steps; an exhausted space is exact
    assert lanczos(S, b, 1e-3, 300, tol=1e-13)[1] > steps
    small = S[:20, :20] + np.eye(20)
    (Q, theta, Z), steps = lanczos(small, b[:20], 0.0, 300)
    assert steps <= 20
    solution = Q.T @ (Z @ ((Z.T @ (Q @ b[:20])) / theta))
    assert_allclose(solution, np.linalg.solve(small, b[:20]), rtol=1e-10)
    # a zero right-hand side has no Krylov space
    assert lanczos(S, np.zeros(300), 1e-3, 300) == (None, 0)


def test_krylov_basis_gives_up_on_a_badly_conditioned_system(monkeypatch):
    # Singular values falling as 1/i down to alpha_low = 1e-8: the error
    # decays too slowly to reach the tolerance within the budget, which the
    # extrapolation sees after two checks, long before the budget (lifted
    # here: it is a few steps for systems this small); the folds are
    # reduced after all and give the eigendecomposition's curve.
    monkeypatch.setattr(_ridge_factor, "_KRYLOV_SHARE", 10.0)
    X, y = _ill_conditioned(300, 400)
    alphas = np.exp(np.linspace(np.log(1e-8), np.log(1e4), 7))[:, None]
    eigen = _scalar_paths(X, y, "eigen", 1e-8)
    tried = _scalar_paths(X, y, "krylov", 1e-8)
    for path, reference in zip(tried, eigen):
        assert path.factorization in ("tridiagonal", "eigen")
        assert path.krylov_steps < krylov_budget(reference.rank)
        for one, other in zip(reference.curve(alphas), path.curve(alphas)):
            assert_allclose(other, one, rtol=1e-7)


def test_search_reports_its_krylov_bases(capsys, monkeypatch):
    monkeypatch.setattr(_ridge_factor, "_KRYLOV_MIN_SIZE", 100)
    monkeypatch.setattr(_ridge_factor, "_KRYLOV_SHARE", 10.0)
    X, y = make_regression(300, 400, effective_rank=20, noise=1.0, random_state=0)
    krylov = BilevelSearchCV(Ridge(), {"alpha": (1e-3, 1e3)}, cv=3, verbose=1)
    krylov.fit(X, y)
    out = capsys.readouterr().out
    assert "one Krylov (Lanczos) basis per fold" in out
    monkeypatch.setattr(_ridge_factor, "_KRYLOV_MIN_SIZE", 10**9)
    reduced = BilevelSearchCV(Ridge(), {"alpha": (1e-3, 1e3)}, cv=3).fit(X, y)
    assert krylov.best_params_["alpha"] == pytest.approx(
        reduced.best_params_["alpha"], rel=1e-8
    )
    monkeypatch.setattr(_ridge_factor, "_KRYLOV_MIN_SIZE", 100)
    X, y = _ill_conditioned(300, 400)
    BilevelSearchCV(Ridge(), {"alpha": (1e-8, 1e3)}, cv=3, verbose=1).fit(X, y)
    out = capsys.readouterr().out
    assert "the Krylov basis of 3 fold(s) would not reach its accuracy" in out


@pytest.mark.parametrize("case", ["gram", "gram-weighted-no-intercept"])
def test_compact_folds_give_each_folds_curve(case, monkeypatch):
    # The batched curves of small folds are each fold's own: values, slopes
    # and curvatures, shared and per-target alphas, with and without the
    # second derivative.
    paths = _paths(KERNEL_CASES[case], "eigen")
    batch = CompactFolds.of(paths)
    assert batch is not None
    # the reference: the same folds from their residuals, without the
    # compact form the batch was built from
    direct = _paths(KERNEL_CASES[case], "eigen")
    for path in direct:
        path._compact = False
    q = paths[0].C.shape[1]
    shared_alphas = np.exp(np.linspace(-6, 8, 8))[:, None] * np.ones(q)
    own_alphas = np.exp(np.linspace(-3, 4, 3 * q)).reshape(3, q)
    for alphas in (shared_alphas, own_alphas):
        for second in (True, False):
            together = batch.curves(alphas, second)
            for k, path in enumerate(direct):
                alone = path.curve(alphas, second)
                for one, other in zip(alone, together):
                    if one is None:
                        assert other is None
                    else:
                        assert_allclose(other[k], one, rtol=1e-10, atol=1e-14)
    # folds too large for it, or reduced, are evaluated one by one
    assert CompactFolds.of(_paths(KERNEL_CASES[case], "tridiagonal")) is None
    monkeypatch.setattr(_ridge_factor, "_BATCH_SIZE", 18 * 12**2 - 1)
    assert CompactFolds.of(paths) is None  # 18 validation rows, rank 12


def test_compact_form_with_fewer_rows_than_rank_and_targets():
    # 12 validation rows, rank 10, 5 targets: the QR's triangle has fewer
    # rows than its columns; the weighted squared residuals are still the
    # read-out's (||R z - u||^2 + floor against ||sqrt(s) (M z - Y)||^2).
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((60, 10)), rng.standard_normal((60, 5))
    splits = list(KFold(5, shuffle=True, random_state=0).split(X))
    weights = rng.uniform(0.5, 2.0, 60)
    fold = _weighted_folds(X, Y, splits, weights)[0]
    path = _FoldPath(fold, None, "eigen")
    assert len(path.Y_val) == 12 and path.rank == 10
    R, u, floor = path.compact()
    root = np.sqrt(path.s_val)[:, None]
    for alpha in (1e-2, 1.0, 1e2):
        z = path.C / (path.d[:, None] + alpha)
        direct = np.sum((root * (path.M @ z + path.y_mean - path.Y_val)) ** 2, axis=0)
        compact = np.sum((R @ z - u) ** 2, axis=0) + floor
        assert_allclose(compact, direct, rtol=1e-10)


def test_search_of_small_folds_evaluates_them_together(monkeypatch):
    X, y = load_diabetes(return_X_y=True)
    splits = list(KFold(5, shuffle=True, random_state=0).split(X))
    calls = []
    curves = CompactFolds.curves

    def counted(self, alphas, second=True):
        calls.append((np.array(alphas), second))
        return curves(self, alphas, second)

    monkeypatch.setattr(CompactFolds, "curves", counted)
    batched = BilevelSearchCV(Ridge(), {"alpha": (1e-4, 1e4)}, cv=splits).fit(X, y)
    # the scan with its curvatures (25 points), then the root search's
    # Newton steps, one point each; none at a scan point (the best one's
    # curvature came with the scan)
    (scan, scan_second), steps = calls[0], calls[1:]
    assert scan.shape[0] == 25 and scan_second
    assert steps and all(alphas.shape[0] == 1 and second for alphas, second in steps)
    assert not any(np.isin(alphas, scan).any() for alphas, _ in steps)
    calls.clear()
    monkeypatch.setattr(_ridge_factor, "_BATCH_SIZE", 0)
    alone = BilevelSearchCV(Ridge(), {"alpha": (1e-4, 1e4)}, cv=splits).fit(X, y)
    assert not calls
    assert batched.best_params_["alpha"] == pytest.approx(
        alone.best_params_["alpha"], rel=1e-12
    )
    assert_allclose(
        batched.cv_results_["mean_test_score"],
        alone.cv_results_["mean_test_score"],
        rtol=1e-12,
    )
    # the search's own record of the curve (values and slopes)
    for key in ("value", "grad_norm"):
        assert_allclose(
            [r[key] for r in batched.history_],
            [r[key] for r in alone.history_],
            rtol=1e-10,
        )


def test_lanczos_waits_for_a_second_estimate():
    # An eigenvalue 1e-6 that b barely excites (1e-10): until the Krylov
    # space reaches it, the smallest Ritz value (about 1) makes the error
    # estimate 1e5 times too small. One passing estimate (2e-11 at step 40)
    # would have stopped with an error of 1e-7; the next check sees the
    # eigenvalue (the estimate rises to 5e-6) and the basis is not kept
    # (a search's fold is then reduced: exact). A basis returned is accurate.
    rng = np.random.default_rng(0)
    U = np.linalg.qr(rng.standard_normal((600, 600)))[0]
    eigenvalues = np.concatenate([[1e-6], np.linspace(1.0, 10.0, 599)])
    S = (U * eigenvalues) @ U.T
    coefficients = rng.standard_normal(600)
    coefficients[0] = 1e-10
    b = U @ coefficients
    assert lanczos(S, b, 1e-4, 600) == (None, 50)
