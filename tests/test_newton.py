"""Tests for the Newton-CG solver of the tight re-solves (polish and refit)."""

import array_api_strict
import numpy as np
import pytest
from numpy.testing import assert_allclose

from skbilevel.solvers import (
    empty_memory,
    inv_hessian_product,
    minimize_lbfgs,
    minimize_newton_cg,
)
from skbilevel.solvers._memory import append_pair

from ._problems import LOSS_NAMES, make_fold


def _newton(inner, lam, x0, **kwargs):
    """Newton-CG on ``inner``'s training problem at ``lam`` from ``x0``."""
    return minimize_newton_cg(
        lambda w: inner.value_and_grad(w, lam),
        lambda w: inner.hessp(w, lam),
        x0,
        **kwargs,
    )


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
@pytest.mark.parametrize("structure", ["scalar", "per_feature"])
@pytest.mark.parametrize("loss_name", LOSS_NAMES)
def test_reaches_the_minimizer_lbfgs_finds(loss_name, structure, sparse):
    inner, _, n_hyper = make_fold(loss_name, structure, sparse=sparse)
    lam = np.linspace(-1.0, 1.0, n_hyper)

    def fun(w):
        return inner.value_and_grad(w, lam)

    reference = minimize_lbfgs(fun, inner.model.zeros(), tol=1e-12, ftol=0)
    result = minimize_newton_cg(
        fun, lambda w: inner.hessp(w, lam), inner.model.zeros(), tol=1e-10
    )
    assert result.converged and result.n_iter <= 25
    grad0 = np.linalg.norm(fun(inner.model.zeros())[1])
    assert result.grad_norm <= 1e-10 * grad0
    assert_allclose(result.grad, fun(result.x)[1])
    assert_allclose(result.x, reference.x, rtol=1e-7, atol=1e-9)
    assert result.value == pytest.approx(reference.value, rel=1e-12)


def test_warm_start_near_the_solution_takes_few_steps():
    # Quadratic convergence: from a loose solution, a few Newton steps.
    inner, _, _ = make_fold("multinomial", n_samples=200, n_features=10)
    lam = np.array([-2.0])

    def fun(w):
        return inner.value_and_grad(w, lam)

    scale = float(np.linalg.norm(fun(inner.model.zeros())[1]))
    loose = minimize_lbfgs(fun, inner.model.zeros(), tol=1e-3)
    tight = minimize_newton_cg(
        fun, lambda w: inner.hessp(w, lam), loose.x, tol=1e-10, gtol_scale=scale
    )
    assert tight.converged and tight.n_iter <= 4
    assert tight.grad_norm <= 1e-10 * scale


def test_memory_passes_through_and_input_is_not_modified():
    inner, _, _ = make_fold("binary")
    lam = np.array([0.0])
    rng = np.random.default_rng(0)
    s = rng.standard_normal(inner.n_params)
    memory = append_pair(empty_memory(), s, 2.0 * s, 2.0 * s @ s, 10)
    x0 = rng.standard_normal(inner.n_params)
    copy = x0.copy()
    result = _newton(
        inner,
        lam,
        x0,
        memory=memory,
    )
    assert result.memory is memory
    assert_allclose(x0, copy)
    scale = float(np.linalg.norm(inner.value_and_grad(inner.model.zeros(), lam)[1]))
    again = _newton(
        inner,
        lam,
        result.x,
        gtol_scale=scale,
    )
    assert again.converged and again.n_iter == 0


def test_max_iter_reached_is_not_converged():
    inner, _, _ = make_fold("multinomial")
    lam = np.array([-3.0])
    result = _newton(
        inner,
        lam,
        inner.model.zeros(),
        tol=1e-14,
        max_iter=1,
    )
    assert not result.converged and result.n_iter == 1
    assert "max_iter=1" in result.message


def test_runs_in_another_array_namespace():
    inner, _, _ = make_fold("binary")
    lam = np.array([0.5])

    def fun(w):
        return inner.value_and_grad(w, lam)

    expected = minimize_newton_cg(
        fun, lambda w: inner.hessp(w, lam), inner.model.zeros(), tol=1e-10
    )
    xp = array_api_strict

    # A quadratic with the objective's own Hessian at the optimum, in xp.
    hessian = np.column_stack(
        [inner.hessp(expected.x, lam)(e) for e in np.eye(inner.n_params)]
    )
    H, b = xp.asarray(hessian), xp.asarray(hessian @ expected.x)

    def quadratic(x):
        hx = H @ x
        return 0.5 * xp.sum(x * hx) - xp.sum(b * x), hx - b

    result = minimize_newton_cg(
        quadratic, lambda x: lambda v: H @ v, xp.zeros(inner.n_params), tol=1e-10
    )
    assert result.converged
    assert_allclose(np.asarray(result.x), expected.x, rtol=1e-7, atol=1e-9)


def test_memory_size_keeps_the_last_steps_hessian_pairs():
    # On a quadratic the Hessian is constant: every pair is (p, H p) exactly,
    # with positive curvature, newest last, at most memory_size of them.
    inner, _, _ = make_fold("squared", n_samples=60, n_features=12)
    lam = np.array([0.5])
    hessian = inner.hessp(inner.model.zeros(), lam)
    result = _newton(
        inner,
        lam,
        inner.model.zeros(),
        tol=1e-10,
        memory_size=4,
    )
    assert result.converged and 1 <= len(result.memory) <= 4
    # held as one matrix (its rows), which the hypergradient's operator uses
    m = len(result.memory)
    assert result.memory.stacked.shape == (2 * m, inner.n_params)
    for i in range(m):
        assert np.shares_memory(result.memory.s[i], result.memory.stacked)
        assert np.shares_memory(result.memory.y[i], result.memory.stacked)
        assert_allclose(result.memory.stacked[i], result.memory.s[i])
        assert_allclose(result.memory.stacked[m + i], result.memory.y[i])
    for s, y, sy in zip(result.memory.s, result.memory.y, result.memory.sy):
        assert_allclose(y, hessian(s), rtol=1e-12, atol=1e-12)
        assert sy == pytest.approx(s @ y) and sy > 0
    # the L-BFGS inverse built on them meets the newest pair's secant equation
    assert_allclose(
        inv_hessian_product(np, result.memory, result.memory.y[-1]),
        result.memory.s[-1],
        rtol=1e-8,
    )


def test_memory_is_passed_through_without_memory_size_or_a_step():
    inner, _, _ = make_fold("binary", n_samples=80, n_features=6)
    lam = np.array([0.0])
    s = np.ones(inner.n_params)
    memory = append_pair(empty_memory(), s, 2.0 * s, 2.0 * s @ s, 10)
    solved = _newton(
        inner,
        lam,
        inner.model.zeros(),
        tol=1e-10,
    )
    again = _newton(
        inner,
        lam,
        solved.x,
        tol=1e-6,
        gtol_scale=1.0,
        memory=memory,
        memory_size=5,
    )
    assert again.n_iter == 0 and again.memory is memory


@pytest.mark.parametrize("tol", [1e-3, 1e-5])
def test_loose_tolerance_steps_stop_near_the_target(tol):
    # A loose target is met without solving the last step far past it: the
    # final gradient norm lies within a few decades under the target.
    inner, _, _ = make_fold("multinomial", n_samples=200, n_features=10)
    lam = np.array([-2.0])
    result = _newton(
        inner,
        lam,
        inner.model.zeros(),
        tol=tol,
    )
    scale = np.linalg.norm(inner.value_and_grad(inner.model.zeros(), lam)[1])
    assert result.converged
    assert 1e-4 * tol * scale < result.grad_norm <= tol * scale


def test_newton_steps_take_one_product_for_the_curvature_at_their_point():
    # The accepted trial point becomes x itself: hessp(x) reuses the raw
    # predictions its gradient computed, so each Newton step costs the
    # products of its gradient, its line search and its CG iterations only.
    inner, _, _ = make_fold("binary", n_samples=120, n_features=10)
    lam = np.array([-1.0])
    products = []
    raw = inner.model.raw
    inner.model.raw = lambda w: products.append(w) or raw(w)
    result = _newton(inner, lam, inner.model.zeros(), tol=1e-10)
    # one raw per fun evaluation and per Hessian-vector product (n_fun counts
    # both), none for the curvature at each step's point, nor at the start
    # (w = 0: X @ 0 takes no product)
    assert result.n_iter >= 3
    assert len(products) == result.n_fun - 1


def _diagonal_quadratic(n=200):
    """``f(x) = x'Ax / 2 - b'x`` with a wide diagonal spectrum, and a start
    whose gradient has every entry 5e-4: largest entry 5e-4, norm 7e-3."""
    a = np.geomspace(1.0, 1e3, n)
    b = np.ones(n)

    def fun(x):
        return 0.5 * x @ (a * x) - b @ x, a * x - b

    return fun, (lambda x: lambda v: a * v), (b + 5e-4) / a


@pytest.mark.parametrize("solver", ["newton-cg", "lbfgs"])
def test_max_norm_test_reads_the_largest_gradient_entry(solver):
    # scikit-learn's L-BFGS test: a start whose largest entry passes returns
    # at once, where the Euclidean test at the same tolerance iterates
    fun, hessp, x0 = _diagonal_quadratic()

    def run(norm):
        if solver == "lbfgs":
            return minimize_lbfgs(fun, x0, tol=1e-3, gtol_scale=1.0, gtol_norm=norm)
        return minimize_newton_cg(
            fun, hessp, x0, tol=1e-3, gtol_scale=1.0, gtol_norm=norm
        )

    at_once, euclidean = run("max"), run("l2")
    assert at_once.converged and at_once.n_iter == 0 and at_once.n_fun == 1
    assert euclidean.converged and euclidean.n_iter >= 1
    assert euclidean.grad_norm <= 1e-3


def test_max_norm_newton_step_stops_cg_when_the_model_gradient_passes():
    # Above the target by a factor 2: the last step's CG stops once no entry
    # of the model gradient exceeds half the target, before the Euclidean
    # tolerance (a tenth of the target in norm) would stop it.
    fun, hessp, x0 = _diagonal_quadratic()
    x0 = x0 + 1.5e-3 / np.geomspace(1.0, 1e3, len(x0))  # entries 2e-3
    results = {
        norm: minimize_newton_cg(
            fun, hessp, x0, tol=1e-3, gtol_scale=1.0, gtol_norm=norm
        )
        for norm in ("max", "l2")
    }
    fast = results["max"]
    assert fast.converged
    assert np.max(np.abs(fast.grad)) <= 1e-3
    assert fast.n_fun < results["l2"].n_fun


def _round_off_quadratic(noise_below):
    """``f = -5.5 + (x - x*)'A(x - x*) / 2`` computed from ``x - x*`` (its
    excess at the starts below, about 3e-18, is under the last place of f),
    eight units in the last place too high where the gradient norm is below
    ``noise_below``: round-off that goes the wrong way."""
    a = np.geomspace(1.0, 1e2, 50)
    minimizer = 1.0 / a

    def fun(x):
        d = x - minimizer
        value, grad = -5.5 + 0.5 * d @ (a * d), a * d
        if np.linalg.norm(grad) < noise_below:
            value += 8 * abs(np.spacing(value))
        return value, grad

    x0 = minimizer + 1e-9 * np.cos(np.arange(50.0)) / a
    return fun, (lambda x: lambda v: a * v), x0, minimizer


def test_full_step_that_f_cannot_resolve_is_taken_on_its_gradient():
    # Near the minimizer f moves by round-off only, which may go either way:
    # at the exact Newton step it is higher, which fails the Armijo test,
    # while its gradient is far smaller than the start's. The full step is
    # taken, not backtracked to a point no better than the start.
    fun, hessp, x0, minimizer = _round_off_quadratic(noise_below=1e-12)
    result = minimize_newton_cg(fun, hessp, x0, tol=1e-12, gtol_scale=1.0)
    assert result.n_iter == 1 and result.converged
    assert result.grad_norm < 1e-3 * np.linalg.norm(fun(x0)[1])
    assert_allclose(result.x, minimizer, rtol=1e-12)


def test_a_step_taken_on_its_gradient_lets_the_gradient_test_end_the_solve():
    # The same round-off, with a target below the first step's gradient
    # (2e-13): f's test, which a step f cannot resolve passes at once, does
    # not end the solve; the steps go on to the gradient test.
    fun, hessp, x0, _ = _round_off_quadratic(noise_below=1e-10)
    result = minimize_newton_cg(fun, hessp, x0, tol=1e-15, gtol_scale=1.0)
    assert result.n_iter >= 2
    assert result.converged and result.grad_norm <= 1e-15


@pytest.mark.parametrize("solver", [minimize_newton_cg, minimize_lbfgs])
def test_unknown_gradient_norm_is_a_value_error(solver):
    fun, hessp, x0 = _diagonal_quadratic(5)
    args = (fun, hessp, x0) if solver is minimize_newton_cg else (fun, x0)
    with pytest.raises(ValueError, match="gtol_norm must be 'l2' or 'max'"):
        solver(*args, gtol_norm="inf")


@pytest.mark.parametrize("solver", ["newton-cg", "lbfgs"])
def test_min_iter_steps_from_a_start_that_passes(solver):
    fun, hessp, x0 = _diagonal_quadratic()
    kwargs = dict(tol=1e-2, gtol_scale=1.0, min_iter=1)
    if solver == "lbfgs":
        result = minimize_lbfgs(fun, x0, **kwargs)
    else:
        result = minimize_newton_cg(fun, hessp, x0, **kwargs)
    assert result.converged and result.n_iter >= 1
    assert result.value < fun(x0)[0]


@pytest.mark.parametrize("solver", ["newton-cg", "lbfgs"])
def test_gtol_floor_is_a_floor_under_the_relative_test(solver):
    # every gradient entry 5e-4: below the floor 1e-3, far above the
    # relative test's 1e-8: the solve returns at once; without the floor
    # (or with one below the entries) it iterates
    fun, hessp, x0 = _diagonal_quadratic()

    def run(floor):
        kwargs = dict(tol=1e-8, gtol_scale=1.0, gtol_floor=floor)
        if solver == "lbfgs":
            return minimize_lbfgs(fun, x0, **kwargs)
        return minimize_newton_cg(fun, hessp, x0, **kwargs)

    floored = run(1e-3)
    assert floored.converged and floored.n_iter == 0
    assert run(None).n_iter >= 1
    below = run(1e-4)
    assert below.converged and below.n_iter >= 1
    assert np.max(np.abs(below.grad)) <= 1e-4


@pytest.mark.parametrize("test", [{"gtol_norm": "max"}, {"gtol_floor": 1e-3}])
def test_a_forced_step_at_a_passing_point_is_a_newton_step(test):
    # min_iter forces a step from a start that passes the largest-entry
    # test: CG must still find a direction (not stop at its residual's
    # first test), and the step's curvature pairs replace the memory
    fun, hessp, x0 = _diagonal_quadratic()
    tol = 1e-3 if "gtol_norm" in test else 1e-12
    result = minimize_newton_cg(
        fun, hessp, x0, tol=tol, gtol_scale=1.0, min_iter=1, memory_size=5, **test
    )
    assert result.converged and result.n_iter == 1
    assert len(result.memory) > 0
    assert result.value < fun(x0)[0]


@pytest.mark.parametrize("solver", [minimize_newton_cg, minimize_lbfgs])
def test_negative_min_iter_is_a_value_error(solver):
    fun, hessp, x0 = _diagonal_quadratic(5)
    args = (fun, hessp, x0) if solver is minimize_newton_cg else (fun, x0)
    with pytest.raises(ValueError, match="min_iter must be >= 0"):
        solver(*args, min_iter=-1)


def test_lbfgs_forced_step_from_the_minimizer_still_reports_converged():
    fun, _, x0 = _diagonal_quadratic()
    minimizer = np.ones_like(x0) / np.geomspace(1.0, 1e3, len(x0))
    result = minimize_lbfgs(fun, minimizer, tol=1e-3, gtol_scale=1.0, min_iter=1)
    assert result.converged


def test_xtol_steps_from_a_start_that_passes_far_from_the_minimizer():
    # A weak direction (curvature 1e-6): a start 1 away from the minimizer
    # along it has gradient entries of 1e-6, and passes the largest-entry
    # test at 1e-4 at once. With xtol the solve measures the distance by a
    # Newton step and ends next to the minimizer.
    a = np.array([1e-6, 1.0, 3.0])
    b = np.array([1e-6, 2.0, -1.0])
    minimizer = b / a  # [1, 2, -1/3]

    def fun(x):
        return 0.5 * x @ (a * x) - b @ x, a * x - b

    def hessp(x):
        return lambda v: a * v

    x0 = minimizer + np.array([1.0, 0.0, 0.0])
    kwargs = dict(tol=1e-4, gtol_scale=1.0, gtol_norm="max")
    at_once = minimize_newton_cg(fun, hessp, x0, **kwargs)
    assert at_once.n_iter == 0
    assert_allclose(at_once.x, x0)
    measured = minimize_newton_cg(fun, hessp, x0, xtol=1e-2, **kwargs)
    assert measured.converged and measured.n_iter >= 1
    error = np.linalg.norm(measured.x - minimizer) / np.linalg.norm(minimizer)
    assert error <= 1e-3
    # the step that measured a short distance ends the solve: no extra step
    near = minimizer + np.array([1e-4, 0.0, 0.0])
    short = minimize_newton_cg(fun, hessp, near, xtol=1e-2, **kwargs)
    assert short.converged and short.n_iter == 1


@pytest.mark.parametrize("xtol", [0, -1.0, True, np.inf, np.nan])
def test_invalid_xtol_is_a_value_error(xtol):
    fun, hessp, x0 = _diagonal_quadratic(5)
    with pytest.raises(ValueError, match="xtol must be a finite number > 0"):
        minimize_newton_cg(fun, hessp, x0, xtol=xtol)


def test_xtol_near_a_zero_solution_ends_with_the_gradient_test():
    # the minimizer is 0: steps are as long as the iterate itself, so the
    # step test reads them against the start's norm and the solve ends as
    # soon as the gradient test would without xtol
    fun, hessp, x0 = _diagonal_quadratic()
    a = np.geomspace(1.0, 1e3, len(x0))

    def centred(x):
        return 0.5 * x @ (a * x), a * x

    plain = minimize_newton_cg(centred, hessp, x0, tol=1e-4)
    measured = minimize_newton_cg(centred, hessp, x0, tol=1e-4, xtol=1e-2)
    assert measured.converged
    assert measured.n_fun <= 2 * plain.n_fun
    # at the gradient test's precision (the gradient is a * x)
    assert np.linalg.norm(a * measured.x) <= 1e-4 * np.linalg.norm(a * x0)


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
@pytest.mark.parametrize("loss_name", LOSS_NAMES)
def test_tracked_trial_points_take_no_forward_product(loss_name, sparse, monkeypatch):
    # With the objective's tracker, each trial point's raw predictions are
    # the last point's plus the step's, summed from its conjugate gradient's
    # Hessian products: the solve takes a forward product per Hessian
    # product only (and none at w = 0), reaches the same minimizer, and
    # the raw predictions it ends with are the product's to round-off.
    inner, _, n_hyper = make_fold(loss_name, "scalar", sparse=sparse)
    lam = np.full(n_hyper, -0.5)
    raw = inner.model.raw
    calls = []

    def counted(w):
        calls.append(w)
        return raw(w)

    monkeypatch.setattr(inner.model, "raw", counted)
    results = []
    for tracked in (False, True):
        calls.clear()
        inner._last_point = None
        result = minimize_newton_cg(
            lambda w: inner.value_and_grad(w, lam),
            lambda w: inner.hessp(w, lam),
            inner.model.zeros(),
            tol=1e-10,
            tracker=inner.tracker(lam) if tracked else None,
        )
        results.append((result, len(calls)))
    (plain, plain_calls), (tracked, tracked_calls) = results
    assert plain.converged and tracked.converged
    assert_allclose(tracked.x, plain.x, rtol=1e-9, atol=1e-12)
    products = tracked.n_fun - (tracked.n_iter + 1)  # Hessian products
    assert tracked_calls == products
    # one forward product per trial point more (the start, w = 0, takes none)
    assert plain_calls >= products + tracked.n_iter
    kept = inner.raw_at(tracked.x)
    assert kept is not None
    assert_allclose(kept, raw(tracked.x), rtol=1e-12, atol=1e-12 * np.abs(kept).max())


def test_single_precision_products_leave_the_trial_points_to_products(monkeypatch):
    # products in single precision are not exact enough to stand for the
    # raw predictions: the tracker hands none, and each trial point takes
    # its product
    from skbilevel.objectives import linear

    monkeypatch.setattr(linear, "SINGLE_MIN_SIZE", 0)
    monkeypatch.setattr(linear, "SINGLE_MAX_ERROR", np.inf)
    inner, _, n_hyper = make_fold("multinomial", "scalar")
    lam = np.zeros(n_hyper)
    pairs = inner.tracker(lam, single=True).matvec(inner.model.zeros())
    v = np.random.default_rng(0).standard_normal(inner.n_params)
    product, image = pairs(v)
    assert image is None
    assert_allclose(product, inner.hessp(inner.model.zeros(), lam)(v), rtol=1e-3)
    # double precision: the image is the direction's raw predictions
    product, image = inner.tracker(lam).matvec(inner.model.zeros())(v)
    assert_allclose(image, inner.model.raw(v), rtol=1e-14)


@pytest.mark.parametrize("loss_name", ["binary", "multinomial"])
def test_tracked_steps_back_take_no_forward_product_either(loss_name, monkeypatch):
    # from far away at a weak penalty the line search steps back: those
    # trial points start from the step's start too (its raw predictions
    # held by the tracker while the trial replaced them in the objective)
    inner, _, n_hyper = make_fold(loss_name, "scalar", sparse=True)
    lam = np.full(n_hyper, -4.0)
    raw = inner.model.raw
    calls = []
    monkeypatch.setattr(inner.model, "raw", lambda w: calls.append(w) or raw(w))
    x0 = 3 * np.random.default_rng(0).standard_normal(inner.n_params)
    evaluated = []

    def fun(w):
        evaluated.append(w)
        return inner.value_and_grad(w, lam)

    result = minimize_newton_cg(
        fun, lambda w: inner.hessp(w, lam), x0, tol=1e-10, tracker=inner.tracker(lam)
    )
    assert result.converged
    trials = len(evaluated) - 1  # every fun call but the start's
    assert trials > result.n_iter  # some steps were taken back
    hessian_products = result.n_fun - len(evaluated)
    # one product at the start, then the Hessian products only
    assert len(calls) == 1 + hessian_products
