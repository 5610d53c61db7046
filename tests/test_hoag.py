"""The outer loop (``hoag``) on problems whose optimum is known, and bad input.

The reference problem is a logistic regression on 200 x 20 synthetic data with
5 folds. Its cross-validated log-loss ``h(lambda)`` has an interior minimum near
``lambda = 2.46`` (``C = 0.085``) and is flat at the weakly penalized end
(``|h'(-6)| = 6.5e-5``). The truth is the minimizer of ``h`` over a 200-point grid
of ``lambda`` in [-6, 6] (``log C`` is ``-lambda``: a log grid of ``C``), each
point solved to a relative gradient norm of 1e-10.
"""

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose

from skbilevel.hypergrad import LINEAR_SOLVERS, get_linear_solver
from skbilevel.objectives import (
    BinaryLogisticLoss,
    InnerObjective,
    L2Penalty,
    MultinomialLogisticLoss,
    ValidationLoss,
)
from skbilevel.outer import (
    CrossValidatedProblem,
    Fold,
    _fold_eval,
    hoag,
    tolerance_schedule,
)

from ._problems import HIGH, LOW, VERBOSE_RUNS, make_fold, make_problem

GRID = np.linspace(LOW, HIGH, 200)
GRID_STEP = GRID[1] - GRID[0]
METHODS = [method for method in LINEAR_SOLVERS if method != "identity"]
HISTORY_KEYS = {"lam", "value", "grad_norm", "inner_iter", "n_hvp", "elapsed"}


@pytest.fixture(scope="module")
def grid_minimizer():
    """``lambda`` of the lowest ``h`` on the grid (warm-started, strong end first)."""
    problem = make_problem("cg")
    values = [
        problem.evaluate([lam], inner_tol=1e-10, gradient=False).value
        for lam in GRID[::-1]
    ][::-1]
    best = int(np.argmin(values))
    assert 0 < best < GRID.size - 1, "the reference optimum must be interior"
    return GRID[best]


def assert_best_point_returned(result):
    values = [record["value"] for record in result.history]
    best = int(np.argmin(values))
    assert result.value == values[best]
    np.testing.assert_array_equal(result.lam, result.history[best]["lam"])


def assert_history_complete(result):
    assert len(result.history) >= 1
    elapsed = [record["elapsed"] for record in result.history]
    assert np.all(np.diff(elapsed) >= 0)
    for record in result.history:
        assert HISTORY_KEYS <= set(record)
        assert record["lam"].shape == (1,) and np.all(np.isfinite(record["lam"]))
        assert np.isfinite(record["value"]) and record["grad_norm"] >= 0
        assert isinstance(record["inner_iter"], int) and record["inner_iter"] >= 0
        assert isinstance(record["n_hvp"], int) and record["n_hvp"] >= 0


# -- reaching the optimum ----------------------------------------------------------
#
# tol=1e-5: the stop on the predicted decrease of h, ||g||^2 / (2 L) <= tol |h|,
# leaves |lambda - lambda*| up to sqrt(2 tol |h| / h'') ~ 0.02 here, a third of a
# grid step. With the default tol=1e-4 that is ~0.075, more than one grid step
# (0.06): SHINE-OPA stopped 0.075 and 0.098 away from the bracket and from the
# strong end.
STARTS = {
    "bracket": {"lam0": [0.0], "bracket": 5},
    "middle": {"lam0": [0.0], "bracket": 0},
    "strong-end": {"lam0": [HIGH], "bracket": 0},
    "flat-end": {"lam0": [LOW], "bracket": 0},
}


@pytest.mark.parametrize("start", sorted(STARTS))
@pytest.mark.parametrize("method", METHODS)
def test_hoag_reaches_grid_minimizer(method, start, grid_minimizer):
    result = hoag(make_problem(method), bounds=(LOW, HIGH), tol=1e-5, **STARTS[start])
    assert abs(result.lam[0] - grid_minimizer) <= GRID_STEP, result.message
    assert result.converged, result.message
    assert_best_point_returned(result)
    assert_history_complete(result)


@pytest.mark.xfail(
    strict=True,
    reason="Absolute stopping test: at the flat end |h'(-6)| = 6.5e-5 is already "
    "below the default tol=1e-4 (h' carries a factor exp(lambda)), so hoag "
    "stops at its starting point; bracket > 0 or a smaller tol avoid it.",
)
@pytest.mark.parametrize("method", METHODS)
def test_hoag_leaves_flat_end_with_default_tol(method, grid_minimizer):
    result = hoag(make_problem(method), [LOW], bounds=(LOW, HIGH), bracket=0)
    assert abs(result.lam[0] - grid_minimizer) <= GRID_STEP, result.message


# -- stopping rules, history, best point -------------------------------------------


@pytest.mark.parametrize(
    "bounds, expected", [((LOW, 1.5), 1.5), ((3.5, HIGH), 3.5)], ids=["high", "low"]
)
def test_optimum_beyond_the_box_returns_the_bound(bounds, expected):
    result = hoag(make_problem(), [0.5 * sum(bounds)], bounds=bounds)
    assert result.lam[0] == expected
    assert result.converged, result.message
    assert_best_point_returned(result)


@pytest.mark.parametrize("phase", ["start", "bracket", "gradient"])
def test_callback_stops_the_search(phase):
    seen = []

    def callback(record):
        seen.append(record)
        return record["phase"] == phase

    result = hoag(
        make_problem(),
        [0.0],
        bounds=(LOW, HIGH),
        bracket=5 if phase == "bracket" else 0,
        callback=callback,
    )
    assert "callback" in result.message and not result.converged
    assert seen[-1]["phase"] == phase
    assert len(result.history) == len(seen)
    assert [r["iteration"] for r in seen] == list(range(len(seen)))
    assert len(seen) == (2 if phase == "gradient" else 1)
    assert_history_complete(result)


@pytest.mark.parametrize("bracket", [0, 5])
def test_max_time_is_respected(bracket):
    # The budget is checked after each evaluation, the starting point's
    # included: with none left, the search stops after the first one.
    result = hoag(
        make_problem(), [0.0], bounds=(LOW, HIGH), bracket=bracket, max_time=0.0
    )
    assert "time budget" in result.message and not result.converged
    assert len(result.history) == 1
    assert_best_point_returned(result)
    generous = hoag(make_problem(), [0.0], bounds=(LOW, HIGH), max_time=1e6)
    plain = hoag(make_problem(), [0.0], bounds=(LOW, HIGH))
    assert len(generous.history) == len(plain.history)


def test_max_iter_counts_gradient_steps():
    result = hoag(make_problem(), [LOW], bounds=(LOW, HIGH), max_iter=3, tol=1e-9)
    assert result.n_iter == 3 and not result.converged
    assert "max_iter" in result.message
    assert len(result.history) == 4


# -- values at inexact inner solutions -------------------------------------------------
def _fold_problem(loss_name, structure, method, seed, **params):
    folds = [Fold(*make_fold(loss_name, structure, weighted=True, n_samples=120,
                             seed=seed + k)[:2]) for k in range(3)]  # fmt: skip
    return CrossValidatedProblem(folds, get_linear_solver(method), **params)


@pytest.mark.parametrize("method", ["cg", "shine"])
@pytest.mark.parametrize(
    "loss_name, structure",
    [("binary", "scalar"), ("multinomial", "groups"), ("squared", "per_feature")],
)
def test_corrected_values_are_second_order_in_the_inner_tolerance(
    loss_name, structure, method, monkeypatch
):
    # F(w) - v'g with H v = grad F: the first-order term of each fold's error
    # at an inexact solution cancels. Measured here, worst fold over these
    # problems: 2.9x smaller at tol 1e-2, 13x at 1e-3, 113x at 1e-4 (the
    # typical fold gains 10x, 200x, 1000x). The squared loss is solved
    # iteratively here (its direct solve is exact: nothing to correct).
    monkeypatch.setattr(_fold_eval, "_DIRECT", False)
    n_hyper = _fold_problem(loss_name, structure, "cg", 0).n_hyper
    lam = np.linspace(-1.0, 1.0, n_hyper)
    exact = _fold_problem(loss_name, structure, "cg", 0).evaluate(
        lam, inner_tol=1e-11, gradient=False
    )
    for tol, gain in [(1e-2, 2.5), (1e-3, 10.0), (1e-4, 50.0)]:
        corrected = _fold_problem(loss_name, structure, method, 0).evaluate(
            lam, inner_tol=tol
        )
        plain = _fold_problem(
            loss_name, structure, method, 0, correct_values=False
        ).evaluate(lam, inner_tol=tol)
        assert corrected.corrected and not plain.corrected
        assert_allclose(corrected.grad, plain.grad)  # the hypergradient is unchanged
        plain_error = np.abs(plain.fold_values - exact.fold_values)
        corrected_error = np.abs(corrected.fold_values - exact.fold_values)
        checked = plain_error > 1e-8  # folds with something to correct
        assert checked.any()
        assert np.all(corrected_error[checked] * gain < plain_error[checked])


def test_values_are_not_corrected_without_a_checked_linear_solve():
    # identity reports no residual: its v is not H^{-1} grad F, no correction.
    plain = make_problem("cg", correct_values=False).evaluate([0.0], inner_tol=1e-2)
    identity = make_problem("identity").evaluate([0.0], inner_tol=1e-2)
    assert identity.value == plain.value and not identity.corrected
    no_gradient = make_problem("cg").evaluate([0.0], inner_tol=1e-2, gradient=False)
    assert no_gradient.value == plain.value and not no_gradient.corrected


def test_rough_solutions_and_rough_linear_solves_are_not_corrected():
    # One L-BFGS step from zero: a Newton correction from that far overshoots
    # (measured: exact 0.622, plain 0.599, corrected 0.565), so none is made.
    exact = make_problem().evaluate([0.0], inner_tol=1e-11, gradient=False).value
    rough = make_problem(inner_max_iter=1).evaluate([0.0], inner_tol=1e-6)
    unc = make_problem(inner_max_iter=1, correct_values=False).evaluate(
        [0.0], inner_tol=1e-6
    )
    assert not rough.inner_converged and not rough.corrected
    assert rough.value == unc.value and abs(rough.value - exact) > 1e-3
    # One CG iteration leaves a residual above 0.1: no correction either.
    solver = get_linear_solver("cg").__class__(max_iter=1)
    folds = make_problem().folds
    problem = CrossValidatedProblem(folds, solver)
    evaluation = problem.evaluate([0.0], inner_tol=1e-2, linear_tol=1e-8)
    assert evaluation.residual > 0.1 and not evaluation.corrected


# -- the callback's view of each step -----------------------------------------------
@pytest.mark.parametrize("run", list(VERBOSE_RUNS))
def test_callback_sees_each_record_after_its_step_is_decided(run):
    # The callback gets the same verdict as the history: a rejected step or a
    # bracket point past the minimum arrives with accepted=False.
    seen = []
    result = hoag(
        make_problem(), bounds=(LOW, HIGH), max_iter=8, tol=1e-6,
        callback=lambda record: seen.append(record["accepted"]),
        **VERBOSE_RUNS[run],
    )  # fmt: skip
    assert seen == [record["accepted"] for record in result.history]
    assert all(isinstance(accepted, bool) for accepted in seen)
    assert False in seen


# -- bad input to the outer loop ---------------------------------------------------


@pytest.mark.parametrize(
    "bounds",
    [
        (1.0, 1.0),
        (2.0, 1.0),
        (np.zeros(20), np.r_[np.ones(19), 0.0]),
        (-np.inf, 1.0),
        (0.0, np.nan),
    ],
)
def test_bad_bounds_raise(bounds):
    problem = make_problem(penalty=L2Penalty.per_feature(20))
    with pytest.raises(ValueError, match="bound"):
        hoag(problem, np.zeros(20), bounds=bounds)


def test_bounds_of_wrong_shape_raise():
    # A ValueError, but NumPy's broadcasting message ("operands could not be
    # broadcast together ..."), which does not name the bounds.
    problem = make_problem(penalty=L2Penalty.per_feature(20))
    with pytest.raises(ValueError):
        hoag(problem, np.zeros(20), bounds=(np.zeros(2), np.ones(2)))


def test_unknown_tolerance_schedule_raises():
    with pytest.raises(ValueError, match="Unknown tolerance schedule 'linear'"):
        hoag(make_problem(), [0.0], bounds=(LOW, HIGH), tol_schedule="linear")
    with pytest.raises(ValueError, match="exponential"):
        tolerance_schedule("constant")


def test_unknown_linear_solver_raises():
    with pytest.raises(ValueError, match="Unknown linear solver 'newton'.*'shine'"):
        get_linear_solver("newton")


@pytest.mark.parametrize("lam0", [[np.nan], [np.inf], [-np.inf]])
def test_non_finite_lambda_raises(lam0):
    problem = make_problem()
    with pytest.raises(ValueError, match="finite"):
        problem.evaluate(lam0)
    if np.isnan(lam0[0]):  # infinities are projected on the box
        with pytest.raises(ValueError, match="finite"):
            hoag(problem, lam0, bounds=(LOW, HIGH))


def test_lambda_of_wrong_shape_raises():
    with pytest.raises(ValueError, match="shape"):
        hoag(make_problem(), [0.0, 1.0], bounds=(LOW, HIGH))
    with pytest.raises(ValueError, match="shape"):
        make_problem().evaluate([0.0, 1.0])


# -- bad input to the objectives and folds -----------------------------------------


def small_data(n_samples=12, n_features=3):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n_samples, n_features))
    return X, (X[:, 0] > 0).astype(float), np.ones(n_samples)


def _with(array, index, value):
    array = array.copy()
    array[index] = value
    return array


@pytest.mark.parametrize("value", [np.nan, np.inf])
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_non_finite_X_raises(sparse, value):
    X, y, _ = small_data()
    X = _with(X, (2, 1), value)
    X = sp.csr_matrix(X) if sparse else X
    loss = BinaryLogisticLoss()
    with pytest.raises(ValueError, match="X contains NaN or infinity"):
        InnerObjective(X, y, loss, L2Penalty.scalar())
    with pytest.raises(ValueError, match="X contains NaN or infinity"):
        ValidationLoss(X, y, loss)


@pytest.mark.parametrize("what", ["y", "sample_weight"])
def test_non_finite_targets_and_weights_raise(what):
    X, y, sw = small_data()
    arrays = {"y": y, "sample_weight": sw}
    arrays[what] = _with(arrays[what], 3, np.nan)
    loss = BinaryLogisticLoss()
    match = f"{what} contains NaN or infinity"
    with pytest.raises(ValueError, match=match):
        InnerObjective(X, arrays["y"], loss, L2Penalty.scalar(),
                       sample_weight=arrays["sample_weight"])  # fmt: skip
    with pytest.raises(ValueError, match=match):
        ValidationLoss(X, arrays["y"], loss, sample_weight=arrays["sample_weight"])


@pytest.mark.parametrize(
    "y_shape, n_outputs",
    [((11,), 1), ((13,), 1), ((12, 1), 1), ((12, 2), 3), ((12,), 3)],
)
def test_targets_of_wrong_shape_raise(y_shape, n_outputs):
    X, _, _ = small_data()
    y = np.zeros(y_shape)
    loss = BinaryLogisticLoss() if n_outputs == 1 else MultinomialLogisticLoss()
    with pytest.raises(ValueError, match="y has shape"):
        InnerObjective(X, y, loss, L2Penalty.scalar(), n_outputs)
    with pytest.raises(ValueError, match="y has shape"):
        ValidationLoss(X, y, loss, n_outputs)


def test_sample_weight_of_wrong_length_raises():
    X, y, sw = small_data()
    loss = BinaryLogisticLoss()
    with pytest.raises(ValueError, match="sample_weight has shape"):
        InnerObjective(X, y, loss, L2Penalty.scalar(), sample_weight=sw[:-1])
    with pytest.raises(ValueError, match="sample_weight has shape"):
        ValidationLoss(X, y, loss, sample_weight=sw[:-1])
    with pytest.raises(ValueError, match="positive sum"):
        ValidationLoss(X, y, loss, sample_weight=0 * sw)


def test_penalty_of_wrong_size_raises():
    X, y, _ = small_data()
    with pytest.raises(ValueError, match="penalty maps 5 coefficients.*has 3"):
        InnerObjective(X, y, BinaryLogisticLoss(), L2Penalty.per_feature(5))


# -- a real data set (slow) ----------------------------------------------------------


@pytest.fixture(scope="module")
def breast_cancer_problem():
    from sklearn.datasets import load_breast_cancer
    from sklearn.preprocessing import StandardScaler

    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    grid = np.linspace(-4.0, 6.0, 200)
    problem = make_problem("cg", X, y)
    values = [
        problem.evaluate([lam], inner_tol=1e-10, gradient=False).value
        for lam in grid[::-1]
    ][::-1]
    return X, y, grid, grid[int(np.argmin(values))]


@pytest.mark.slow
@pytest.mark.parametrize("start", ["bracket", "weak-end"])
@pytest.mark.parametrize("method", METHODS)
def test_hoag_on_breast_cancer(method, start, breast_cancer_problem, request):
    X, y, grid, minimizer = breast_cancer_problem
    if method == "truncated":
        request.applymarker(pytest.mark.xfail(
            reason="20 unrolled gradient steps give a hypergradient whose bias does "
            "not shrink with the tolerance; its zero is 1.2 to 1.8 grid steps off.",
        ))  # fmt: skip
    if method == "shine-opa" and start == "weak-end":
        request.applymarker(pytest.mark.xfail(
            reason="SHINE accepts estimates with residual up to 0.5: near the "
            "optimum one had the wrong sign (+9.4e-4 vs -7.9e-4) and hoag shrank "
            "its step to step_tol 1.5 grid steps away.",
        ))  # fmt: skip
    lam0, bracket = ([0.0], 5) if start == "bracket" else ([grid[0]], 0)
    result = hoag(
        make_problem(method, X, y), lam0, bounds=(grid[0], grid[-1]),
        bracket=bracket, tol=1e-5,
    )  # fmt: skip
    assert abs(result.lam[0] - minimizer) <= grid[1] - grid[0], result.message
    assert_best_point_returned(result)


@pytest.mark.parametrize(
    "bounds", [([0.0, 0.0, 0.0], [1.0, 1.0, 1.0]), (0.0,), ("a", 1.0)]
)
def test_bounds_of_the_wrong_shape_are_a_clear_error(bounds):
    from skbilevel.outer.hoag import check_bounds

    with pytest.raises(ValueError, match="bounds must be a pair"):
        check_bounds(bounds, 2)


def _exact_solution(inner, lam, start):
    """The inner problem's minimizer at ``lam`` (Newton-CG to 1e-12)."""
    from skbilevel.solvers import minimize_newton_cg

    return minimize_newton_cg(
        lambda w: inner.value_and_grad(w, lam),
        lambda w: inner.hessp(w, lam),
        start,
        tol=1e-12,
    ).x


def _newton_fold(loss_name, solver, **options):
    """A small fold and the settings of a Newton-CG evaluation with ``solver``."""
    from skbilevel.hypergrad import get_linear_solver
    from skbilevel.outer._fold_eval import FoldSettings

    inner, outer, _ = make_fold(loss_name, n_samples=150, n_features=10)
    settings = FoldSettings(
        linear_solver=get_linear_solver(solver),
        inner_max_iter=100,
        memory_size=10,
        correct_values=False,
        inner_tol=1e-6,
        linear_tol=1e-3,
        gradient=True,
        newton=True,
        **options,
    )
    return inner, Fold(inner, outer), settings


@pytest.mark.parametrize("loss_name", ["binary", "multinomial"])
def test_warm_start_follows_the_secant_of_the_solution_path(loss_name):
    # Solves at lam0, lam1, then lam2 on the same line: the third starts
    # from the secant prediction w1 + (w1 - w0) (lam2 - lam1) / (lam1 - lam0),
    # nearer its solution than w1, and its Newton solve takes fewer
    # function evaluations than from w1 alone.
    from skbilevel.outer._fold_eval import (
        _predicted_start,
        evaluate_fold,
        initial_state,
    )

    inner, fold, settings = _newton_fold(loss_name, "cg")
    state = initial_state(fold)
    for lam in (-1.0, -1.3):
        state = evaluate_fold(fold, state, np.array([lam]), settings).state
    assert state.previous is not None and state.lam[0] == -1.3
    lam2 = np.array([-1.6])
    exact = _exact_solution(inner, lam2, state.w)
    # the last solution's objective at a new lambda from its data part
    penalty = float(inner.penalty_value(state.w, lam2))
    assert state.data_value + penalty == pytest.approx(
        float(inner.value(state.w, lam2)), rel=1e-12
    )
    start, n_fun = _predicted_start(inner, state, lam2, lam2)
    assert n_fun == 1  # the prediction's value only
    assert np.linalg.norm(start - exact) < 0.3 * np.linalg.norm(state.w - exact)
    predicted = evaluate_fold(fold, state, lam2, settings)
    plain = evaluate_fold(fold, state._replace(previous=None), lam2, settings)
    assert predicted.n_fun < plain.n_fun  # the prediction's value counted
    assert predicted.state.previous[1][0] == -1.3
    # a prediction that raises the objective is not taken: the same point
    # again (tau = 0) and a wild previous solution both keep w1
    start, n_fun = _predicted_start(inner, state, state.lam, state.lam)
    assert start is state.w and n_fun == 0
    wild = state._replace(previous=(state.w + 50.0, state.previous[1]))
    assert _predicted_start(inner, wild, lam2, lam2)[0] is state.w


def _spied_inner_solves(monkeypatch):
    """Record every ``_inner_solve`` call of the fold evaluations: (start,
    settings, moved, result)."""
    calls = []
    solve = _fold_eval._inner_solve

    def spied(inner, outer, state, lam, lam_host, settings, moved):
        result = solve(inner, outer, state, lam, lam_host, settings, moved)
        calls.append((state.w, settings, moved, result[0]))
        return result

    monkeypatch.setattr(_fold_eval, "_inner_solve", spied)
    return calls


def test_one_newton_step_at_the_loose_tolerance_is_not_retried():
    # the flat, strongly penalized end: the loose solve's one step stands,
    # retry_tol changes nothing (to the bit)
    from skbilevel.outer._fold_eval import evaluate_fold, initial_state

    _, fold, settings = _newton_fold("binary", "shine")
    loose = settings._replace(inner_tol=0.1)
    flat = np.array([5.0])
    plain = evaluate_fold(fold, initial_state(fold), flat, loose)
    again = evaluate_fold(
        fold, initial_state(fold), flat, loose._replace(retry_tol=1e-6)
    )
    assert plain.n_iter == again.n_iter == 1
    assert np.array_equal(plain.state.w, again.state.w)
    assert plain.value == again.value and np.array_equal(plain.grad, again.grad)


@pytest.mark.parametrize("newton", [True, False], ids=["newton-cg", "lbfgs"])
def test_a_loose_solve_of_more_than_one_step_goes_on_to_retry_tol(monkeypatch, newton):
    from skbilevel.outer._fold_eval import evaluate_fold, initial_state

    inner, fold, settings = _newton_fold("binary", "shine")
    settings = settings._replace(newton=newton)
    loose = settings._replace(inner_tol=0.1)
    lam = np.array([0.0])
    exact = _exact_solution(inner, lam, np.zeros(inner.n_params))
    tight = evaluate_fold(fold, initial_state(fold), lam, settings)
    plain = evaluate_fold(fold, initial_state(fold), lam, loose)
    calls = _spied_inner_solves(monkeypatch)
    again = evaluate_fold(
        fold, initial_state(fold), lam, loose._replace(retry_tol=1e-6)
    )
    (_, _, _, first), (start, resumed, moved, second) = calls
    # the second solve starts where the loose one stopped, at retry_tol,
    # with what is left of the budget, no forced step
    assert first.n_iter > 1 and np.array_equal(first.x, plain.state.w)
    assert np.array_equal(start, first.x) and moved is False
    assert resumed.inner_tol == 1e-6 and resumed.retry_tol is None
    assert resumed.inner_max_iter == settings.inner_max_iter - first.n_iter
    # both solves' costs, the second's verdict
    assert again.n_iter == first.n_iter + second.n_iter
    assert again.n_fun == first.n_fun + second.n_fun  # a cold start: no prediction
    assert again.converged == second.converged
    error = np.linalg.norm(again.state.w - exact) / np.linalg.norm(exact)
    assert error < 1e-5 < np.linalg.norm(plain.state.w - exact) / np.linalg.norm(exact)
    assert again.value == pytest.approx(tight.value, rel=1e-8)
    assert abs(plain.value / tight.value - 1) > 1e-3
    assert_allclose(again.grad, tight.grad, rtol=1e-4)
    # the state is the final solution's: its data part, lambda, no secant
    # from a cold start
    state = again.state
    assert state.lam[0] == 0.0 and state.previous is None
    penalty = float(inner.penalty_value(state.w, lam))
    assert state.data_value + penalty == pytest.approx(
        float(inner.value(state.w, lam)), rel=1e-12
    )


def test_a_retry_keeps_to_the_iteration_budget_and_a_tighter_tolerance(
    monkeypatch,
):
    from skbilevel.outer._fold_eval import evaluate_fold, initial_state

    _, fold, settings = _newton_fold("binary", "cg")
    loose = settings._replace(inner_tol=0.1, retry_tol=1e-10)
    lam = np.array([-3.0])
    calls = _spied_inner_solves(monkeypatch)
    first = evaluate_fold(
        fold, initial_state(fold), lam, loose._replace(retry_tol=None)
    )
    for budget in (2, 3, 4, 6):
        calls.clear()
        capped = loose._replace(inner_max_iter=budget)
        assert evaluate_fold(fold, initial_state(fold), lam, capped).n_iter <= budget
        # no second solve once the loose one has spent the budget
        assert len(calls) == (2 if budget > first.n_iter else 1)
    # a retry_tol not below inner_tol: one solve, as without it
    calls.clear()
    same = evaluate_fold(fold, initial_state(fold), lam, loose._replace(retry_tol=0.1))
    plain = evaluate_fold(
        fold, initial_state(fold), lam, loose._replace(retry_tol=None)
    )
    assert len(calls) == 2 and same.value == plain.value and same.n_fun == plain.n_fun


def test_the_problem_hands_retry_tol_to_every_fold():
    lam = np.array([-1.0])
    plain = make_problem("cg").evaluate(lam, inner_tol=0.1, linear_tol=1e-2)
    again = make_problem("cg").evaluate(
        lam, inner_tol=0.1, linear_tol=1e-2, retry_tol=1e-8
    )
    tight = make_problem("cg").evaluate(lam, inner_tol=1e-8, linear_tol=1e-8)
    assert_allclose(again.fold_values, tight.fold_values, rtol=1e-6)
    assert abs(plain.value / tight.value - 1) > 1e-3  # 2.3% here
    assert again.inner_iter > plain.inner_iter


class _RecordedProblem:
    """A problem that records the options of every evaluation."""

    def __init__(self, problem):
        self.problem, self.options = problem, []
        self.n_hyper = problem.n_hyper

    def evaluate(self, lam, **options):
        self.options.append(options)
        return self.problem.evaluate(lam, **options)


def test_the_bracket_asks_retry_tol_of_its_first_point_only():
    from skbilevel.outer._bracket import FIRST_LOOSEN, FIRST_RETRY

    problem = _RecordedProblem(make_problem("cg"))
    hoag(problem, [HIGH], bounds=(LOW, HIGH), bracket=5, tol_start=1e-4)
    first, *rest = problem.options
    assert first["inner_tol"] == pytest.approx(FIRST_LOOSEN * 1e-4)
    assert first["retry_tol"] == pytest.approx(FIRST_RETRY * 1e-4)
    assert rest and all("retry_tol" not in options for options in rest)


def test_loosened_bracket_points_solve_their_linear_systems_as_loosely():
    # the linear tolerance follows the inner one's loosening (capped at
    # LINEAR_LOOSEN times LINEAR_CAP); points at the schedule's own tolerance
    # keep LINEAR_CAP
    from skbilevel.outer._bracket import FIRST_LOOSEN, LOOSEN
    from skbilevel.outer.hoag import LINEAR_CAP, LINEAR_LOOSEN, LINEAR_SLACK

    problem = _RecordedProblem(make_problem("cg"))
    hoag(problem, [HIGH], bounds=(LOW, HIGH), bracket=5, tol_start=1e-4)
    # the first point (100 times looser) and the full jumps (10 times): 10%;
    # the schedule's own tolerance: 1%
    loosened = {FIRST_LOOSEN: 0.1, LOOSEN: 0.1, 1.0: 0.01}
    seen = set()
    for options in problem.options:
        factor = round(options["inner_tol"] / 1e-4, 9)
        if factor in loosened:  # a bracket point (gradient steps: tighter)
            seen.add(factor)
            assert options["linear_tol"] == pytest.approx(loosened[factor])
        # never looser than the slack allows
        assert options["linear_tol"] <= LINEAR_SLACK * options["inner_tol"]
    assert {FIRST_LOOSEN, LOOSEN} <= seen
    assert (LINEAR_CAP, LINEAR_LOOSEN) == (0.01, 10.0)


def test_the_secant_prediction_projects_several_penalties_on_the_last_step():
    # two groups of penalties: a new step orthogonal to the last one gives
    # tau = 0 (the last solution, no product); along it, a prediction
    from skbilevel.outer._fold_eval import _predicted_start

    inner, _, n_hyper = make_fold("binary", "per_feature", n_features=6)

    def solution(lam, start):
        return _exact_solution(inner, lam, start)

    lam1 = np.zeros(n_hyper)
    lam0 = lam1.copy()
    lam0[0] = 0.5
    w_prev = solution(lam0, np.zeros(inner.n_params))
    w = solution(lam1, w_prev)
    # the state evaluate_fold leaves: the data part of the last objective
    data_value = float(inner.value(w, lam1)) - float(inner.penalty_value(w, lam1))
    state = _fold_eval.FoldState(
        w, lam=lam1, previous=(w_prev, lam0), data_value=data_value
    )
    orthogonal = lam1.copy()
    orthogonal[1] = -0.5
    start, n_fun = _predicted_start(inner, state, orthogonal, orthogonal)
    assert start is w and n_fun == 0
    along = lam1.copy()
    along[0] = -0.5  # tau = 1: the prediction is w + (w - w_prev)
    start, n_fun = _predicted_start(inner, state, along, along)
    assert n_fun == 1  # the prediction's value only
    assert_allclose(start, 2 * w - w_prev)
    exact = solution(along, w)
    assert np.linalg.norm(start - exact) < 0.5 * np.linalg.norm(w - exact)


def test_newton_pairs_replace_the_memory_and_shift_it_only_when_kept(monkeypatch):
    # With newton_pairs, a solve that takes a step returns its own curvature
    # pairs: the memory it came with is not shifted to the new lambda for
    # nothing. A solve that makes no product returns that memory, shifted.
    from skbilevel.outer._fold_eval import evaluate_fold, initial_state

    inner, fold, settings = _newton_fold("multinomial", "shine", newton_pairs=True)
    # after a hypergradient the pairs are not kept (the next solve at another
    # lambda makes its own); without one (a polish) they are
    first = evaluate_fold(fold, initial_state(fold), np.array([-1.0]), settings)
    assert len(first.state.memory) == 0 and first.n_hvp > 0
    state = evaluate_fold(
        fold, initial_state(fold), np.array([-1.0]), settings._replace(gradient=False)
    ).state
    assert len(state.memory)
    shifts = []
    shift = _fold_eval._shift_memory

    def counted_shift(xp, memory, change):
        if change is not None:
            shifts.append(change)
        return shift(xp, memory, change)

    monkeypatch.setattr(_fold_eval, "_shift_memory", counted_shift)
    stepped = evaluate_fold(fold, state, np.array([-1.3]), settings)
    assert stepped.n_iter >= 1 and shifts == []
    # no step allowed (every solve at a new lambda takes one otherwise): no
    # product
    loose = settings._replace(gradient=False, inner_max_iter=0)
    kept = evaluate_fold(fold, state, np.array([-1.3]), loose)
    assert kept.n_iter == 0 and len(shifts) == 1
    lam_old, lam_new = np.array([-1.0]), np.array([-1.3])
    change = inner.penalty_curvature(lam_new) - inner.penalty_curvature(lam_old)
    expected = shift(np, state.memory, change)
    assert len(kept.state.memory) == len(expected)
    for got, want in zip(kept.state.memory.y, expected.y):
        assert_allclose(got, want, rtol=1e-14)
