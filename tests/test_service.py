"""The search service (search/_service.py): the best point is the lowest of the
history and polished, the kept fold solutions are scikit-learn's fits there, and
the warnings, callback and progress lines of a run.

The problem: binary logistic regression on 90 x 5 samples, 3 folds; its CV
log-loss is lowest near ``C = 13`` in ``[0.01, 100]``.
"""

from functools import partial

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import KFold, StratifiedKFold

from skbilevel.hypergrad import get_linear_solver
from skbilevel.model_selection import LogisticRegressionAdapter, RidgeAdapter
from skbilevel.objectives import L2Penalty
from skbilevel.outer import CrossValidatedProblem, _fold_eval
from skbilevel.search import (
    GradientSearch,
    HyperSpace,
    SearchOptions,
    engine_folds,
    fold_weights,
    materialize_folds,
)

SPACE = HyperSpace.from_values("clf__C", 1e-2, 1e2, log_sign=-1)
# The tests of what a polish computes ask for tight fold fits; the default
# polish_tol (scikit-learn's tol=1e-4) has tests of its own.
TIGHT = SearchOptions(polish_tol=1e-10)


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(n_samples=90, n_features=5, random_state=0)
    return X, y, list(StratifiedKFold(3).split(X, y))


def _folds(data, per_feature=False):
    """Fresh engine folds (each search warm-starts, and so changes, its own)."""
    X, y, splits = data
    adapter, clf = LogisticRegressionAdapter(), LogisticRegression()
    encoding = adapter.encode_targets(clf, y)
    folds = materialize_folds(X, y, splits)
    weights = fold_weights(folds, y, None, partial(adapter.training_weights, clf))

    def penalty(n_features):
        return L2Penalty.per_feature(n_features) if per_feature else L2Penalty.scalar()

    return engine_folds(folds, encoding, weights, penalty=penalty, fit_intercept=True)


def _exact(data, lam):
    """The CV loss at ``lam`` from fold fits to 1e-10, on folds of its own."""
    problem = CrossValidatedProblem(_folds(data), get_linear_solver("cg"))
    return problem.evaluate(np.atleast_1d(lam), inner_tol=1e-10, gradient=False)


@pytest.fixture(scope="module")
def searched(data):
    search = GradientSearch(_folds(data), SPACE, TIGHT, keep_solutions=True)
    return search, search.run()


# -- the best point ------------------------------------------------------------------
def test_best_point_is_the_lowest_of_the_history_and_polished(searched, data):
    search, result = searched
    values = [record["value"] for record in result.history]
    assert result.best_index == int(np.argmin(values))
    assert result.value == values[result.best_index]
    assert_array_equal(result.lam, result.history[result.best_index]["lam"])
    assert result.best_index in search.polished
    exact = _exact(data, result.lam)
    assert result.value == pytest.approx(exact.value, rel=1e-7)
    assert_allclose(
        result.history[result.best_index]["fold_values"], exact.fold_values, rtol=1e-7
    )
    assert result.converged and 1 <= result.n_iter <= SearchOptions().max_iter
    assert result.history is search.history
    for record in result.history:  # each record names the parameter, as "C"
        assert_allclose(record["C"], np.exp(-record["lam"]), rtol=1e-15)
    phases = [record["phase"] for record in result.history]
    assert phases[0] == "bracket" and "start" not in phases


def test_the_box_is_broadcast_to_the_folds_hyperparameters(data):
    search = GradientSearch(_folds(data, per_feature=True), SPACE, SearchOptions())
    assert search.problem.n_hyper == 5
    assert_allclose(search.space.lam_low, np.full(5, -np.log(100.0)))
    assert_allclose(search.space.lam_high, np.full(5, np.log(100.0)))
    assert search.param == "C"


def _with_history(data, lams, values):
    """A search whose history holds ``values`` (inexact on purpose) at ``lams``."""
    search = GradientSearch(_folds(data), SPACE, TIGHT)
    search.history = [
        {"lam": np.array([lam]), "value": value, "time": 0.0}
        for lam, value in zip(lams, values)
    ]
    return search


def test_polish_best_polishes_until_the_lowest_is_polished(data, monkeypatch):
    # Inexact values ranking the points wrongly: 0 looks best, then 1; once
    # polished, both rise above their true values' ~0.08 and ~0.12.
    lams = [-2.0, 0.0, 2.0]
    search = _with_history(data, lams, [0.0, 0.01, 10.0])
    polished = []
    polish = search.polish
    monkeypatch.setattr(search, "polish", lambda i: polished.append(i) or polish(i))
    best = search.polish_best()
    exact = [_exact(data, lam).value for lam in lams[:2]]
    assert polished == [0, 1] and search.polished == {0, 1}
    assert best == int(np.argmin(exact)) == 0
    for record, value in zip(search.history, exact):
        assert record["value"] == pytest.approx(value, rel=1e-7)
        assert record["time"] > 0
    assert search.history[2]["value"] == 10.0  # never the lowest: left alone


def test_polish_best_stops_when_the_polished_point_stays_lowest(data):
    search = _with_history(data, [-2.0, 0.0], [0.0, 10.0])
    assert search.polish_best() == 0
    assert search.polished == {0}
    assert search.history[0]["value"] == pytest.approx(_exact(data, -2.0).value)


# -- warnings and callback ------------------------------------------------------------
def test_max_iter_zero_with_a_start_evaluates_it_and_warns(data):
    space = HyperSpace.from_values("clf__C", 1e-2, 1e2, log_sign=-1, start=3.0)
    search = GradientSearch(_folds(data), space, TIGHT._replace(max_iter=0))
    with pytest.warns(ConvergenceWarning, match="max_iter") as caught:
        result = search.run()
    (warning,) = caught
    assert "The search for C stopped before convergence" in str(warning.message)
    assert [record["phase"] for record in result.history] == ["start"]
    assert result.history[0]["C"] == pytest.approx([3.0])
    assert (result.n_iter, result.best_index, result.converged) == (0, 0, False)
    assert result.value == pytest.approx(_exact(data, -np.log(3.0)).value, rel=1e-7)


def test_truthy_callback_stops_the_search(data):
    seen = []

    def callback(record):
        seen.append(record["C"].copy())
        return np.True_ if len(seen) == 3 else None

    search = GradientSearch(_folds(data), SPACE, SearchOptions(callback=callback))
    with pytest.warns(ConvergenceWarning, match="callback"):
        result = search.run()
    assert len(result.history) == len(seen) == 3
    assert_allclose(seen, [record["C"] for record in result.history])


@pytest.mark.parametrize("falsy", [None, 0, False, np.False_])
def test_falsy_callback_does_not_stop(searched, data, falsy):
    _, reference = searched
    options = TIGHT._replace(callback=lambda record: falsy)
    result = GradientSearch(_folds(data), SPACE, options).run()
    assert len(result.history) == len(reference.history) and result.converged


# -- kept solutions -------------------------------------------------------------------
def test_kept_solutions_at_the_polished_point_are_sklearns_fits(searched, data):
    X, y, splits = data
    search, result = searched
    for index, record in enumerate(result.history):
        C = float(record["C"][0])
        solutions = search.solutions(index)
        assert len(solutions) == len(splits)
        errors = []
        for (coef, intercept), (train, _) in zip(solutions, splits):
            assert coef.dtype == intercept.dtype == np.float64
            assert coef.shape == (5,) and intercept.shape == (1,)
            expected = LogisticRegression(C=C, tol=1e-10).fit(X[train], y[train])
            errors.append(
                max(
                    np.max(np.abs(coef - expected.coef_.ravel())),
                    np.max(np.abs(intercept - expected.intercept_)),
                )
            )
        if index in search.polished:
            assert max(errors) < 1e-5


def test_solutions_need_keep_solutions(data):
    search = GradientSearch(_folds(data), SPACE, SearchOptions())
    with pytest.raises(RuntimeError, match="keep_solutions=False"):
        search.solutions(0)


def test_mean_solution_is_the_mean_of_the_folds_solutions(searched):
    search, result = searched
    expected = np.mean(np.stack(search.problem.solutions()), axis=0)
    assert_allclose(search.mean_solution(), expected, rtol=1e-15)
    # After the run, the folds hold the polished best point.
    kept = search.solutions(result.best_index)
    for w, (coef, intercept) in zip(search.problem.solutions(), kept):
        assert_array_equal(w, np.concatenate([coef, intercept]))


def test_polish_best_when_every_point_needs_a_polish(data):
    # Both inexact values are low; polished, 0 (~0.08) is lower than 1 (~0.12).
    search = _with_history(data, [-2.0, 0.0], [0.0, 0.01])
    best = search.polish_best()
    assert search.polished == {0, 1}
    assert best == int(np.argmin([record["value"] for record in search.history]))


def test_folds_hold_the_last_polished_point_after_two_polishes(data):
    # The best is 0, but 1 was polished last: the folds (and mean_solution,
    # the refit's warm start) hold point 1, as documented.
    search = _with_history(data, [-2.0, 0.0, 2.0], [0.0, 0.01, 10.0])
    assert search.polish_best() == 0 and search.polished == {0, 1}
    reference = CrossValidatedProblem(_folds(data), get_linear_solver("cg"))
    reference.evaluate(
        [0.0], inner_tol=TIGHT.polish_tol, gradient=False, newton=True, per_sample=True
    )
    assert_allclose(
        search.mean_solution(), np.mean(reference.solutions(), axis=0), rtol=1e-6
    )


# -- what a run prints ------------------------------------------------------------------
@pytest.mark.parametrize("verbose", [0, 1])
def test_verbose_prints_the_header_and_the_polish(data, verbose, capsys):
    options = TIGHT._replace(verbose=verbose)
    search = GradientSearch(_folds(data), SPACE, options)
    result = search.run()
    lines = capsys.readouterr().out.splitlines()
    if verbose == 0:
        assert lines == []
        return
    assert lines[0] == "Fitting 3 folds: gradient search of clf__C in [0.01, 100]"
    assert lines[1].split()[:3] == ["eval", "phase", "step"]
    best = result.best_index
    (polish,) = [line for line in lines if line.startswith("Re-solved")]
    assert polish.startswith(
        f"Re-solved the folds of evaluation {best} "
        f"({SPACE.describe(result.lam)}) to tol 1e-10: CV loss {result.value:.6g}, "
    )
    assert lines.index(polish) == 2 + len(result.history)  # after the rows
    assert lines[-1].startswith("Search converged after")


# -- the default polish: scikit-learn's tolerance -------------------------------------
def _sklearn_gradient(X, y, C, coef, intercept):
    """Gradient of LogisticRegression's objective (per-sample scaling) by hand."""
    z = X @ coef + intercept[0]
    residual = 1 / (1 + np.exp(-z)) - y
    grad = np.concatenate([X.T @ residual + coef / C, [residual.sum()]])
    return grad / X.shape[0]


def test_default_polish_meets_sklearns_gradient_test_and_no_more(data):
    X, y, splits = data
    search = GradientSearch(_folds(data), SPACE, SearchOptions(), keep_solutions=True)
    result = search.run()
    C = float(result.history[result.best_index]["C"][0])
    largest = [
        np.max(np.abs(_sklearn_gradient(X[train], y[train], C, coef, intercept)))
        for (coef, intercept), (train, _) in zip(
            search.solutions(result.best_index), splits
        )
    ]
    # max |grad| <= tol: LogisticRegression(tol=1e-4)'s own (L-BFGS) test
    assert max(largest) <= 1e-4
    # folds that already pass the test are not re-solved: a second polish of
    # the same point costs no Newton step and changes nothing
    again = search.polish(result.best_index)
    assert again.inner_iter == 0
    assert again.value == result.value


def test_polish_tol_sets_how_far_the_folds_are_solved(data):
    X, y, splits = data
    errors = {}
    for tol in (1e-3, 1e-9):
        search = GradientSearch(
            _folds(data), SPACE, SearchOptions(polish_tol=tol), keep_solutions=True
        )
        result = search.run()
        C = float(result.history[result.best_index]["C"][0])
        errors[tol] = max(
            np.max(np.abs(_sklearn_gradient(X[train], y[train], C, coef, intercept)))
            for (coef, intercept), (train, _) in zip(
                search.solutions(result.best_index), splits
            )
        )
    assert errors[1e-9] <= 1e-9 < errors[1e-3] <= 1e-3


# -- the inner solver -----------------------------------------------------------------
def test_both_inner_solvers_find_the_same_point(data):
    results = {
        solver: GradientSearch(
            _folds(data), SPACE, TIGHT._replace(inner_solver=solver)
        ).run()
        for solver in ("lbfgs", "newton-cg")
    }
    lbfgs, newton = results["lbfgs"], results["newton-cg"]
    assert lbfgs.converged and newton.converged
    assert_allclose(newton.lam, lbfgs.lam, atol=0.05)
    # both polished to 1e-10: the same CV loss up to the curve's flatness
    assert newton.value == pytest.approx(lbfgs.value, rel=1e-4)
    assert newton.value == pytest.approx(_exact(data, newton.lam).value, rel=1e-7)


def test_newton_solves_hand_shine_their_conjugate_directions(data, monkeypatch):
    from skbilevel.outer import _fold_eval

    handed = []
    hypergradient = _fold_eval.hypergradient

    def recorded(*args, memory=None, **kwargs):
        handed.append(memory)
        return hypergradient(*args, memory=memory, **kwargs)

    monkeypatch.setattr(_fold_eval, "hypergradient", recorded)
    problem = CrossValidatedProblem(
        _folds(data),
        get_linear_solver("shine"),
        memory_size=4,
        inner_solver="newton-cg",
    )
    lam = np.array([0.0])
    problem.evaluate(lam, inner_tol=1e-6)
    assert len(handed) == len(problem.folds)
    for fold, state, memory in zip(problem.folds, problem.states, handed):
        assert 1 <= len(memory) <= 4
        # pairs (p, H p) of the Hessian at the last Newton step's start, next
        # to the solution
        hessian = fold.inner.hessp(state.w, lam)
        for s, y in zip(memory.s, memory.y):
            assert_allclose(y, hessian(s), rtol=0.1, atol=1e-8 * np.linalg.norm(y))
        # served, they are not kept: the next solve makes its own
        assert len(state.memory) == 0


def test_unknown_inner_solver_is_refused(data):
    with pytest.raises(ValueError, match="inner_solver must be one of"):
        CrossValidatedProblem(_folds(data), get_linear_solver("cg"), inner_solver="x")


def test_shine_opa_needs_lbfgs_inner_solves(data):
    with pytest.raises(ValueError, match="inner_solver='lbfgs'"):
        CrossValidatedProblem(
            _folds(data), get_linear_solver("shine-opa"), inner_solver="newton-cg"
        )
    CrossValidatedProblem(_folds(data), get_linear_solver("shine-opa"))  # lbfgs


@pytest.mark.parametrize("inner_solver", ["lbfgs", "newton-cg"])
def test_per_sample_tolerance_applies_to_both_inner_solvers(data, inner_solver):
    X, y, splits = data
    problem = CrossValidatedProblem(
        _folds(data), get_linear_solver("cg"), inner_solver=inner_solver
    )
    problem.evaluate([0.0], inner_tol=1e-6, gradient=False, per_sample=True)
    for w, (train, _) in zip(problem.solutions(), splits):
        coef, intercept = w[:-1], w[-1:]
        grad = _sklearn_gradient(X[train], y[train], 1.0, coef, intercept)
        assert np.max(np.abs(grad)) <= 1e-6  # LogisticRegression(tol=1e-6)


def test_squared_loss_polish_stays_relative(monkeypatch):
    # a squared loss's gradient carries the units of y: the polish's test is
    # relative to the gradient at zero, so rescaling y rescales nothing else
    # (on the iterative path: the direct one is exact whatever the tolerance)
    monkeypatch.setattr(_fold_eval, "_DIRECT", False)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 4))
    y = X @ rng.standard_normal(4) + rng.standard_normal(60)
    splits = list(KFold(3).split(X))
    values = []
    for scale in (1e-3, 1.0, 1e3):
        adapter, reg = RidgeAdapter(), Ridge()
        encoding = adapter.encode_targets(reg, scale * y)
        folds = materialize_folds(X, scale * y, splits)
        weights = fold_weights(
            folds, scale * y, None, partial(adapter.training_weights, reg)
        )
        engine = engine_folds(
            folds,
            encoding,
            weights,
            penalty=lambda n: L2Penalty.scalar(),
            fit_intercept=True,
        )
        problem = CrossValidatedProblem(
            engine, get_linear_solver("cg"), inner_solver="lbfgs"
        )
        evaluation = problem.evaluate(
            [0.0], inner_tol=1e-2, gradient=False, newton=True, per_sample=True
        )
        values.append(evaluation.value / scale**2)
    assert values[0] == pytest.approx(values[1], rel=1e-9)
    assert values[2] == pytest.approx(values[1], rel=1e-9)


@pytest.mark.parametrize("floor", [None, 1e-4])
@pytest.mark.parametrize("inner_solver", ["lbfgs", "newton-cg"])
def test_a_new_lambda_moves_the_fold_solutions_whatever_the_tolerance(
    data, inner_solver, floor
):
    # At a loose tolerance (or under the search's floor) the solutions of a
    # nearby lambda pass the test as they are: the hypergradient would be
    # that lambda's, and so would the value alone. Each fold takes a step;
    # re-evaluating the same lambda does not.
    n_folds = len(data[2])
    problem = CrossValidatedProblem(
        _folds(data), get_linear_solver("cg"), inner_solver=inner_solver
    )
    problem.evaluate([0.0], inner_tol=1e-8, linear_tol=1e-10)
    previous = problem.evaluate([0.0], inner_tol=1e-1, linear_tol=1e-10)
    assert previous.inner_iter == 0
    nearby = problem.evaluate([0.05], inner_tol=1e-1, linear_tol=1e-10, floor=floor)
    assert nearby.inner_iter >= n_folds
    exact = CrossValidatedProblem(_folds(data), get_linear_solver("cg")).evaluate(
        [0.05], inner_tol=1e-10, linear_tol=1e-10
    )
    stale, moved = abs(previous.grad - exact.grad), abs(nearby.grad - exact.grad)
    assert moved < 0.25 * stale
    assert problem.evaluate([0.05], inner_tol=1e-1).inner_iter == 0
    value_only = problem.evaluate([0.1], inner_tol=1e-1, gradient=False)
    assert value_only.inner_iter >= n_folds
    assert problem.evaluate([0.1], inner_tol=1e-1, gradient=False).inner_iter == 0


def test_a_floor_stops_the_fold_fits_at_scikit_learns_test(data):
    # inner_tol=1e-10 relative would solve the folds to round-off; the floor
    # stops each one once no gradient entry per unit of weight exceeds it
    X, y, splits = data
    costs = {}
    for floor in (None, 1e-4):
        problem = CrossValidatedProblem(_folds(data), get_linear_solver("cg"))
        evaluation = problem.evaluate([0.0], inner_tol=1e-10, floor=floor)
        costs[floor] = evaluation.n_fun
        largest = [
            np.max(np.abs(_sklearn_gradient(X[train], y[train], 1.0, w[:-1], w[-1:])))
            for w, (train, _) in zip(problem.solutions(), splits)
        ]
        assert max(largest) <= (1e-4 if floor else 1e-8)
    assert costs[1e-4] < costs[None]


def test_the_floor_leaves_a_squared_loss_relative(monkeypatch):
    # a squared loss's gradient carries the units of y: no absolute floor
    monkeypatch.setattr(_fold_eval, "_DIRECT", False)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 4))
    y = 1e3 * (X @ rng.standard_normal(4) + rng.standard_normal(60))
    splits = list(KFold(3).split(X))
    adapter, reg = RidgeAdapter(), Ridge()
    results = []
    for floor in (None, 1e3):
        folds = materialize_folds(X, y, splits)
        weights = fold_weights(folds, y, None, partial(adapter.training_weights, reg))
        engine = engine_folds(
            folds,
            adapter.encode_targets(reg, y),
            weights,
            penalty=lambda n: L2Penalty.scalar(),
            fit_intercept=True,
        )
        problem = CrossValidatedProblem(engine, get_linear_solver("cg"))
        results.append(problem.evaluate([0.0], inner_tol=1e-8, floor=floor))
    assert results[0].n_fun == results[1].n_fun
    assert results[0].value == results[1].value


def test_the_search_floors_its_fold_fits_at_a_tenth_of_polish_tol(data, monkeypatch):
    search = GradientSearch(_folds(data), SPACE, SearchOptions(polish_tol=1e-3))
    floors = []
    evaluate = search.problem.evaluate

    def spy(lam, **kwargs):
        floors.append((kwargs.get("gradient", True), kwargs.get("floor")))
        return evaluate(lam, **kwargs)

    monkeypatch.setattr(search.problem, "evaluate", spy)
    search.run()
    # every evaluation of the search takes the floor; the polish does not
    assert {floor for gradient, floor in floors if gradient} == {1e-4}
    assert {floor for gradient, floor in floors if not gradient} == {None}


def test_the_newton_refit_centers_multinomial_intercepts():
    # The softmax ignores a constant added to every class's score: from
    # intercepts summing to 3 Newton-CG never moves along that direction
    # (zero gradient and curvature), and the fit would end with scikit-learn's
    # predictions but intercepts shifted by 1. The refit ends on the
    # solution scikit-learn's fit from zero reaches (intercepts summing to 0).
    from sklearn.datasets import load_iris
    from sklearn.preprocessing import StandardScaler

    from skbilevel.objectives import InnerObjective, MultinomialLogisticLoss
    from skbilevel.search._service import newton_refit

    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    loss = MultinomialLogisticLoss()
    inner = InnerObjective(
        X, loss.encode(np, y, np.arange(3), np.float64), loss, L2Penalty(), 3
    )
    w0 = inner.model.zeros()
    w0[inner.model.n_coef :] = 1.0
    C = 10.0
    result = newton_refit(inner, np.array([-np.log(C)]), w0, tol=1e-10, max_iter=100)
    coef, intercept = inner.model.split(result.x)
    reference = LogisticRegression(C=C, solver="newton-cholesky", tol=1e-12)
    reference.fit(X, y)
    assert abs(float(np.sum(intercept))) < 1e-10
    assert_allclose(intercept, reference.intercept_, rtol=1e-6, atol=1e-6)
    assert_allclose(coef.T, reference.coef_, rtol=1e-6, atol=1e-6)
