"""HOAGLogisticRegression against scikit-learn's own estimators and a fine grid."""

import pickle
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.datasets import (
    load_breast_cancer,
    load_digits,
    load_iris,
    make_classification,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedKFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skbilevel import HOAGLogisticRegression
from skbilevel.objectives import linear
from skbilevel.outer import _fold_eval


@pytest.fixture(scope="module")
def breast_cancer():
    X, y = load_breast_cancer(return_X_y=True)
    return StandardScaler().fit_transform(X), y


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def _fit_at(C, X, y, **params):
    """Refit at a fixed C without searching (max_iter=0), to a tight tolerance
    unless ``polish_tol`` is given."""
    params.setdefault("polish_tol", 1e-8)
    sample_weight = params.pop("sample_weight", None)
    model = HOAGLogisticRegression(C_init=C, max_iter=0, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, y, sample_weight=sample_weight)


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("dataset", ["breast_cancer", "iris"])
@pytest.mark.parametrize("C", [0.01, 1.0])
def test_refit_matches_sklearn_at_fixed_C(dataset, C, fit_intercept, sparse, request):
    X, y = request.getfixturevalue(dataset)
    if sparse:
        X = sp.csr_matrix(np.where(np.abs(X) < 0.5, 0.0, X))
    ours = _fit_at(C, X, y, fit_intercept=fit_intercept)
    reference = LogisticRegression(
        C=C, fit_intercept=fit_intercept, tol=1e-10, max_iter=10000
    ).fit(X, y)
    scale = np.abs(reference.coef_).max()
    assert_allclose(ours.coef_, reference.coef_, rtol=1e-4, atol=1e-5 * scale)
    assert_allclose(ours.intercept_, reference.intercept_, rtol=1e-4, atol=1e-5 * scale)
    assert_allclose(ours.predict_proba(X), reference.predict_proba(X), atol=1e-5)


def _sklearn_gradient(model, X, y, sample_weight=None):
    """Gradient of LogisticRegression's objective (divided by the weights' sum,
    as scikit-learn scales it) at ``model``'s coefficients, by hand."""
    sw = np.ones(len(y)) if sample_weight is None else sample_weight
    z = X @ model.coef_.T + model.intercept_
    if model.coef_.shape[0] == 1:
        residual = 1 / (1 + np.exp(-z)) - (y == model.classes_[1])[:, None]
    else:
        p = np.exp(z - z.max(axis=1, keepdims=True))
        residual = p / p.sum(axis=1, keepdims=True) - (y[:, None] == model.classes_)
    residual = residual * sw[:, None]
    grad = np.concatenate(
        [(X.T @ residual + model.coef_.T / model.C_).ravel(), residual.sum(axis=0)]
    )
    return grad / sw.sum()


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("dataset", ["breast_cancer", "iris"])
def test_default_refit_meets_sklearns_gradient_test(dataset, weighted, request):
    # polish_tol=1e-4 (the default): no entry of the refit's gradient, scaled
    # as scikit-learn scales it, exceeds LogisticRegression's default tol
    # (its L-BFGS test)
    X, y = request.getfixturevalue(dataset)
    sw = np.random.default_rng(0).uniform(0.2, 3.0, y.size) if weighted else None
    model = _fit_at(0.5, X, y, polish_tol=1e-4, sample_weight=sw)
    assert np.max(np.abs(_sklearn_gradient(model, X, y, sw))) <= 1e-4
    tight = _fit_at(0.5, X, y, polish_tol=1e-10, sample_weight=sw)
    assert np.max(np.abs(_sklearn_gradient(tight, X, y, sw))) <= 1e-10


def test_refit_at_the_upper_bound_matches_sklearn_with_a_tight_polish_tol(
    breast_cancer,
):
    X, y = breast_cancer
    model = HOAGLogisticRegression(C_bounds=(1e-4, 1e-2), polish_tol=1e-8).fit(X, y)
    assert model.C_ == pytest.approx(
        1e-2, rel=1e-12
    )  # the CV optimum lies above: the search ends at the bound
    reference = LogisticRegression(C=1e-2, tol=1e-12, max_iter=10000).fit(X, y)
    assert_allclose(model.coef_, reference.coef_, rtol=1e-6, atol=1e-9)
    assert_allclose(model.intercept_, reference.intercept_, rtol=1e-6)


def test_sample_and_class_weights_match_sklearn(iris):
    X, y = iris
    sw = np.random.default_rng(0).uniform(0.2, 3.0, y.size)
    ours = _fit_at(0.5, X, y, class_weight="balanced")
    ours_sw = HOAGLogisticRegression(
        C_init=0.5, max_iter=0, class_weight="balanced", polish_tol=1e-8
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours_sw.fit(X, y, sample_weight=sw)
    for model, weights in [(ours, None), (ours_sw, sw)]:
        reference = LogisticRegression(
            C=0.5, class_weight="balanced", tol=1e-10, max_iter=10000
        ).fit(X, y, sample_weight=weights)
        assert_allclose(model.coef_, reference.coef_, rtol=1e-4, atol=1e-6)


def _grid_cv_losses(X, y, Cs, cv):
    """Mean validation log-loss of scikit-learn's LogisticRegression at each C
    (``cv``: a splitter or a list of ``(train, test)`` pairs)."""
    splits = list(cv.split(X, y)) if hasattr(cv, "split") else cv
    losses = []
    for C in Cs:
        fold_losses = []
        for train, test in splits:
            model = LogisticRegression(C=C, tol=1e-8, max_iter=10000)
            model.fit(X[train], y[train])
            fold_losses.append(log_loss(y[test], model.predict_proba(X[test])))
        losses.append(np.mean(fold_losses))
    return np.array(losses)


@pytest.mark.parametrize("hypergradient", ["shine", "cg"])
def test_reaches_fine_grid_optimum(breast_cancer, hypergradient):
    X, y = breast_cancer
    cv = StratifiedKFold(5)
    # brackets the optimum (C ~ 1) with steps of 0.068 in log C
    Cs = np.logspace(-2, 2, 60)
    grid = _grid_cv_losses(X, y, Cs, cv)
    model = HOAGLogisticRegression(cv=cv, hypergradient=hypergradient).fit(X, y)
    best = np.argmin(grid)
    assert 0 < best < Cs.size - 1, "the grid must bracket the optimum"
    assert model.converged_
    # within 0.2% of the best CV log-loss of the fine grid, and next to its argmin
    assert model.cv_loss_ <= grid[best] * 1.002
    step = np.log(Cs[1] / Cs[0])
    assert abs(np.log(model.C_ / Cs[best])) <= 2 * step
    # cv_loss_ is the CV log-loss that scikit-learn measures at C_
    assert_allclose(model.cv_loss_, _grid_cv_losses(X, y, [model.C_], cv)[0], rtol=1e-3)


@pytest.mark.parametrize("structure", ["features", "groups"])
def test_per_feature_and_group_penalties_match_rescaled_features(
    breast_cancer, structure, monkeypatch
):
    # One C_j per feature is scikit-learn's C=1 on features scaled by sqrt(C_j):
    # with w_j = sqrt(C_j) u_j, sum_j w_j^2 / C_j = ||u||^2 and X w = (X sqrt(C)) u.
    # So cv_loss_ and coef_ can be checked against LogisticRegression. The
    # default vector search keeps the single C here (breast_cancer's held-out
    # halves are too small to prefer many): the plain search moves them apart.
    monkeypatch.setattr("skbilevel.search._vector.DEFAULT_STRATEGY", "cv-loss")
    X, y = breast_cancer
    groups = np.arange(X.shape[1]) % 3
    penalty_groups = "features" if structure == "features" else groups
    cv = StratifiedKFold(5)
    model = HOAGLogisticRegression(
        cv=cv, penalty_groups=penalty_groups, max_iter=5, polish_tol=1e-8
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    n_hyper = X.shape[1] if structure == "features" else 3
    assert model.C_.shape == (n_hyper,)
    C_per_feature = model.C_ if structure == "features" else model.C_[groups]
    assert np.ptp(np.log(C_per_feature)) > 0.01  # the penalties did move apart
    scale = np.sqrt(C_per_feature)
    assert_allclose(
        model.cv_loss_, _grid_cv_losses(X * scale, y, [1.0], cv)[0], rtol=1e-6
    )
    reference = LogisticRegression(C=1.0, tol=1e-10, max_iter=10000).fit(X * scale, y)
    assert_allclose(model.coef_, reference.coef_ * scale, rtol=1e-4, atol=1e-6)
    assert_allclose(model.intercept_, reference.intercept_, rtol=1e-4, atol=1e-6)


def test_group_penalty_equals_scalar_when_one_group(breast_cancer):
    X, y = breast_cancer
    scalar = HOAGLogisticRegression(C_init=1.0, max_iter=3, hypergradient="cg")
    grouped = clone(scalar).set_params(penalty_groups=np.zeros(X.shape[1], dtype=int))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        scalar.fit(X, y)
        grouped.fit(X, y)
    assert_allclose(grouped.C_, [scalar.C_], rtol=1e-8)
    assert_allclose(grouped.coef_, scalar.coef_, rtol=1e-6)


def test_string_labels_and_probabilities(iris):
    X, y = iris
    labels = np.array(["setosa", "versicolor", "virginica"])[y]
    model = HOAGLogisticRegression(C_init=1.0, max_iter=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, labels)
    assert list(model.classes_) == list(
        labels[np.sort(np.unique(y, return_index=True)[1])]
    )
    proba = model.predict_proba(X)
    assert_allclose(proba.sum(axis=1), 1.0)
    scores = model.decision_function(X)
    expected = np.exp(scores - scores.max(1, keepdims=True))
    assert_allclose(proba, expected / expected.sum(1, keepdims=True), rtol=1e-12)
    assert_allclose(model.predict_log_proba(X), np.log(proba))
    assert set(model.predict(X)) <= set(labels)
    assert model.score(X, labels) > 0.9


def test_pipeline_clone_pickle_cross_validate(breast_cancer):
    X, y = load_breast_cancer(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), HOAGLogisticRegression(max_iter=5))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        pipe.fit(X, y)
        results = cross_validate(clone(pipe), X, y, cv=3)
    assert np.all(results["test_score"] > 0.9)
    restored = pickle.loads(pickle.dumps(pipe))
    assert_allclose(restored.predict_proba(X), pipe.predict_proba(X))


@pytest.mark.parametrize(
    "params, fit_args, message",
    [
        ({"C_bounds": (1.0, 0.1)}, {}, "C_bounds must satisfy"),
        ({"C_bounds": (0.0, 1.0)}, {}, "C_bounds must satisfy"),
        ({"C_bounds": (1.0,)}, {}, "C_bounds must be a pair"),
        ({"penalty_groups": [0, 1]}, {}, "one group label per feature"),
        ({"hypergradient": "newton"}, {}, "hypergradient"),
        ({"cv": 50}, {"n": 20}, "n_samples=20"),
        ({}, {"single_class": True}, "only 1 class"),
        ({}, {"nan": True}, "NaN"),
    ],
)
def test_bad_input_gets_a_clear_error(params, fit_args, message):
    X, y = make_classification(
        n_samples=fit_args.get("n", 60), n_features=4, random_state=0
    )
    if fit_args.get("single_class"):
        y = np.zeros_like(y)
    if fit_args.get("nan"):
        X[3, 1] = np.nan
    with pytest.raises(ValueError, match=message):
        HOAGLogisticRegression(**params).fit(X, y)


def test_max_iter_warns_and_returns_best_point(breast_cancer):
    X, y = breast_cancer
    with pytest.warns(ConvergenceWarning, match="max_iter"):
        model = HOAGLogisticRegression(C_init=1e-3, max_iter=2).fit(X, y)
    assert model.cv_loss_ == min(r["value"] for r in model.history_)
    assert not model.converged_


def test_verbose_callback_and_warm_start(breast_cancer, capsys):
    X, y = breast_cancer
    seen = []

    def callback(record):
        seen.append(record["value"])
        return len(seen) >= 4

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = HOAGLogisticRegression(verbose=1, callback=callback).fit(X, y)
    out = capsys.readouterr().out.splitlines()
    rows = [line for line in out if line.split()[0].isdigit()]
    assert len(seen) == 4 == len(model.history_) == len(rows)
    assert out[0].startswith("Fitting 5 folds: gradient search of C in [0.0001, 1e+04]")
    assert out[1].split()[:2] == ["eval", "phase"]
    for row, record in zip(rows, model.history_):
        assert f"C={record['C'][0]:.4g}" in row
    assert "stopped by callback" in out[-2] and out[-1].startswith("Refit on all")
    first_C = model.C_
    model.set_params(warm_start=True, callback=None, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    assert_allclose(model.history_[0]["C"], first_C)


def test_verbose_rows_of_a_per_feature_search(breast_cancer, capsys):
    X, y = breast_cancer
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = HOAGLogisticRegression(
            penalty_groups="features", max_iter=3, verbose=2
        ).fit(X, y)
    lines = capsys.readouterr().out.splitlines()
    rows = [line.split() for line in lines if line.split()[0].isdigit()]
    header = lines[1].split()
    assert len(rows) == len(model.history_)
    assert all(len(row) == len(rows[0]) for row in rows)  # one token per cell
    for row, record in zip(rows, model.history_):
        C = record["C"]
        single = np.ptp(C) == 0
        expected = f"C={C[0]:.4g}" if single else f"C=[{C.min():.3g}..{C.max():.3g}]"
        assert row[header.index("parameter")] == expected
    assert any("[" in row[header.index("parameter")] for row in rows)


def test_inputs_not_modified(breast_cancer):
    X, y = breast_cancer
    X_sparse = sp.csr_matrix(X)
    sw = np.ones(y.size)
    copies = X.copy(), X_sparse.copy(), y.copy(), sw.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        HOAGLogisticRegression(max_iter=2).fit(X, y, sample_weight=sw)
        HOAGLogisticRegression(max_iter=2).fit(X_sparse, y)
    assert_allclose(X, copies[0])
    assert_allclose(X_sparse.toarray(), copies[1].toarray())
    assert_allclose(y, copies[2])
    assert_allclose(sw, copies[3])


def test_refit_from_the_fold_mean_reaches_the_solution_on_sparse_data():
    # High-dimensional sparse data: the mean of the fold solutions (each fit
    # on 4/5 of the rows at the same C) passes scikit-learn's gradient test
    # at the default polish_tol while 1% off in coefficients; the refit's
    # step test (xtol) takes it to the solution.
    rng = np.random.default_rng(0)
    X = sp.random(
        2000,
        4000,
        density=0.005,
        format="csr",
        random_state=rng,
        data_rvs=rng.standard_normal,
    )
    y = X @ rng.standard_normal(4000) + 0.5 * rng.standard_normal(2000) > 0
    model = HOAGLogisticRegression().fit(X, y.astype(int))
    reference = LogisticRegression(C=model.C_, tol=1e-10, max_iter=10000).fit(
        X, y.astype(int)
    )
    error = np.linalg.norm(model.coef_ - reference.coef_)
    assert error <= 1e-3 * np.linalg.norm(reference.coef_)
    assert_allclose(model.intercept_, reference.intercept_, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("data", ["binary", "digits"])
def test_single_precision_hessians_leave_the_search_where_it_was(data, monkeypatch):
    # The searches' Hessian products in single precision (small dense folds,
    # SINGLE_MAX_ERROR) against the double-precision engine: their searches
    # take other paths (on the digits subset 9 evaluations against 8), and
    # end at C values equally good to 0.05% (the accuracy the searches are
    # held to against a fine grid), by scikit-learn's CV log-loss at each.
    # The curve is flat there: on the digits subset the picks were 1.79 and
    # 1.92 on one machine (CV losses 4e-5 apart), 1.5 is 0.15% worse.
    # (folds large enough for the single path: SINGLE_MIN_SIZE)
    if data == "binary":
        X, y = make_classification(4000, 20, n_informative=8, random_state=0)
    else:
        X, y = load_digits(return_X_y=True)
        X, y = X[:600], y[:600]
    X = StandardScaler().fit_transform(X)
    cv = list(StratifiedKFold(5).split(X, y))
    # products the single path served after its checks
    counts = {"checks": 0, "single": 0}
    checked = linear._checked_single

    def counted(exact, single, floor):
        counts["checks"] += 1

        def counted_single(v):
            counts["single"] += 1
            return single(v)

        return checked(exact, counted_single, floor)

    monkeypatch.setattr(linear, "_checked_single", counted)
    fits = {}
    for single in (True, False):
        monkeypatch.setattr(_fold_eval, "_SINGLE", single)
        fits[single] = HOAGLogisticRegression(cv=cv).fit(X, y)
        if single:
            assert counts["single"] > 2 * counts["checks"] > 0
    scored = dict(zip(fits, _grid_cv_losses(X, y, [f.C_ for f in fits.values()], cv)))
    assert scored[True] == pytest.approx(scored[False], rel=5e-4)
    assert fits[True].C_ == pytest.approx(fits[False].C_, rel=0.25)
    assert fits[True].cv_loss_ == pytest.approx(fits[False].cv_loss_, rel=5e-4)
    assert_allclose(
        fits[True].predict_proba(X), fits[False].predict_proba(X), atol=2e-2
    )


def test_a_tight_hypergradient_solve_keeps_double_precision_products():
    # A linear tolerance below SINGLE_LINEAR_TOL: the hypergradient is the
    # double-precision one to the bit, whatever the single switch says.
    from skbilevel.hypergrad import get_linear_solver
    from skbilevel.outer import Fold
    from skbilevel.outer._fold_eval import FoldSettings, evaluate_fold, initial_state

    from ._problems import make_fold

    inner, outer, _ = make_fold("multinomial", n_samples=3000, n_features=20)
    fold = Fold(inner, outer)
    settings = FoldSettings(
        linear_solver=get_linear_solver("cg"),
        inner_max_iter=100,
        memory_size=10,
        correct_values=True,
        inner_tol=1e-6,
        linear_tol=_fold_eval.SINGLE_LINEAR_TOL / 10,
        gradient=True,
        newton=False,
    )
    lam = np.array([0.0])
    results = [
        evaluate_fold(fold, initial_state(fold), lam, settings._replace(single=s))
        for s in (True, False)
    ]
    assert_array_equal(results[0].grad, results[1].grad)
    loose = settings._replace(linear_tol=_fold_eval.SINGLE_LINEAR_TOL)
    results = [
        evaluate_fold(fold, initial_state(fold), lam, loose._replace(single=s))
        for s in (True, False)
    ]
    assert not np.array_equal(results[0].grad, results[1].grad)
    # both solved to a relative residual of 1e-2
    assert_allclose(results[0].grad, results[1].grad, rtol=2e-2)


def test_dense_and_sparse_data_agree_to_the_searchs_accuracy():
    # Dense folds above SINGLE_MIN_SIZE run their Hessian products in single
    # precision, sparse ones in double: the two searches end at equally good
    # points to the search's accuracy, not to round-off. Judged by
    # scikit-learn's CV log-loss at each pick (to 0.05%): where the curve is
    # flat, C itself may move further than its loss (within 25% here).
    X, y = make_classification(4000, 20, n_informative=8, random_state=1)
    X = StandardScaler().fit_transform(X)
    cv = list(StratifiedKFold(5).split(X, y))
    dense = HOAGLogisticRegression(cv=cv).fit(X, y)
    sparse = HOAGLogisticRegression(cv=cv).fit(sp.csr_matrix(X), y)
    scored = _grid_cv_losses(X, y, [dense.C_, sparse.C_], cv)
    assert scored[0] == pytest.approx(scored[1], rel=5e-4)
    assert dense.C_ == pytest.approx(sparse.C_, rel=0.25)
    assert dense.cv_loss_ == pytest.approx(sparse.cv_loss_, rel=5e-4)
