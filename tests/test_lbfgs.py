"""Tests for the array-API L-BFGS solver, its line search and its memory."""

import pickle

import array_api_strict
import numpy as np
import pytest
from scipy.optimize import minimize

from skbilevel.solvers import (
    LBFGSMemory,
    LBFGSResult,
    empty_memory,
    inv_hessian_operator,
    inv_hessian_product,
    minimize_lbfgs,
)
from skbilevel.solvers._line_search import line_search_wolfe
from skbilevel.solvers._memory import append_pair, stacked_memory

C1, C2 = 1e-4, 0.9


def spd_matrix(rng, n, condition):
    """Random SPD matrix with eigenvalues log-spaced in [1, condition]."""
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return (q * np.logspace(0, np.log10(condition), n)) @ q.T


def quadratic(a, b):
    """``0.5 x'Ax - b'x`` and its gradient, with the namespace's own operators."""

    def fun(x):
        ax = a @ x
        return 0.5 * (x @ ax) - b @ x, ax - b

    return fun


def rosenbrock(x):
    head, tail = x[:-1], x[1:]
    value = np.sum(100.0 * (tail - head**2) ** 2 + (1.0 - head) ** 2)
    grad = np.zeros_like(x)
    grad[:-1] = -400.0 * head * (tail - head**2) - 2.0 * (1.0 - head)
    grad[1:] += 200.0 * (tail - head**2)
    return value, grad


def logistic_loss(X, y, alpha):
    """Mean logistic loss with labels in {-1, 1} plus ``alpha / 2 ||w||^2``."""

    def fun(w):
        margin = y * (X @ w)
        value = np.mean(np.logaddexp(0.0, -margin)) + 0.5 * alpha * (w @ w)
        # d/dm log(1 + exp(-m)) = -1 / (1 + exp(m)) = -exp(-logaddexp(0, m))
        dloss = -y * np.exp(-np.logaddexp(0.0, margin))
        return value, X.T @ dloss / X.shape[0] + alpha * w

    return fun


class Recorder:
    """Wrap ``fun`` and record every evaluation."""

    def __init__(self, fun):
        self.fun = fun
        self.calls = []

    def __call__(self, x):
        value, grad = self.fun(x)
        self.calls.append((x.copy(), float(value), grad.copy()))
        return value, grad

    def value_at(self, x):
        return next(v for xi, v, _ in self.calls if np.array_equal(xi, x))


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-6), (np.float32, 3e-2)])
def test_quadratic_matches_linear_solve(seed, dtype, rtol):
    # float32 stops at ftol = 10 eps: f - f* ~ 10 eps |f| leaves a relative error
    # in x of order sqrt(10 eps condition) ~ 3e-2 for condition 1e3.
    rng = np.random.default_rng(seed)
    a = spd_matrix(rng, 50, 1e3)
    b = rng.standard_normal(50)
    fun = quadratic(a.astype(dtype), b.astype(dtype))
    result = minimize_lbfgs(fun, np.zeros(50, dtype=dtype), tol=1e-10)
    assert isinstance(result, LBFGSResult)
    assert result.converged, result.message
    assert result.x.dtype == dtype
    expected = np.linalg.solve(a, b)
    assert np.linalg.norm(result.x - expected) <= rtol * np.linalg.norm(expected)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("alpha", [1e-1, 1e-3])
def test_logistic_matches_scipy(seed, alpha):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((300, 20))
    y = np.where(X @ rng.standard_normal(20) + rng.standard_normal(300) > 0, 1.0, -1.0)
    fun = logistic_loss(X, y, alpha)
    reference = minimize(
        fun, np.zeros(20), jac=True, method="L-BFGS-B",
        options={"gtol": 1e-12, "ftol": 1e-15, "maxiter": 10_000},
    )  # fmt: skip
    result = minimize_lbfgs(fun, np.zeros(20), tol=1e-10)
    assert result.converged, result.message
    np.testing.assert_allclose(result.x, reference.x, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("n", [2, 10])
def test_rosenbrock_converges_to_ones(n):
    x0 = np.tile([-1.2, 1.0], n // 2)
    result = minimize_lbfgs(rosenbrock, x0, tol=1e-8, max_iter=5000)
    assert result.converged, result.message
    np.testing.assert_allclose(result.x, np.ones(n), atol=1e-5)


@pytest.mark.parametrize("n", [2, 10])
def test_accepted_steps_satisfy_strong_wolfe(n):
    # With s = x_{k+1} - x_k = step d, both conditions are invariant to the split
    # of s into step and d: f_{k+1} <= f_k + c1 g_k's, |g_{k+1}'s| <= c2 |g_k's|.
    recorder = Recorder(rosenbrock)
    iterates = []

    def callback(x, grad):
        iterates.append((x.copy(), grad.copy()))

    x0 = np.tile([-1.2, 1.0], n // 2)
    value0, grad0 = rosenbrock(x0)
    minimize_lbfgs(recorder, x0, tol=1e-8, max_iter=5000, callback=callback)
    assert len(iterates) > 10
    x_prev, value_prev, grad_prev = x0, float(value0), grad0
    for x, grad in iterates:
        value = recorder.value_at(x)
        s = x - x_prev
        # Within sqrt(eps) |f| of f_k, the solver tests decrease on slopes.
        slack = np.sqrt(np.finfo(np.float64).eps) * abs(value_prev)
        assert value <= value_prev + C1 * (grad_prev @ s) + slack
        assert abs(grad @ s) <= C2 * abs(grad_prev @ s)
        x_prev, value_prev, grad_prev = x, value, grad


def phi_cases():
    """One-dimensional functions ``phi(t) -> (value, slope)`` with phi'(0) < 0."""
    return {
        "quadratic_far": lambda t: ((t - 30.0) ** 2, 2 * (t - 30.0)),
        "quadratic_near": lambda t: ((t - 0.01) ** 2, 2 * (t - 0.01)),
        "quartic": lambda t: ((t - 2.0) ** 4 - 3 * t, 4 * (t - 2.0) ** 3 - 3),
        "wavy": lambda t: (-np.sin(t) + 0.05 * t**2, -np.cos(t) + 0.1 * t),
        "overflow": lambda t: (
            (np.inf, np.nan) if t > 5 else ((t - 3) ** 2, 2 * (t - 3))
        ),
    }


@pytest.mark.parametrize("case", sorted(phi_cases()))
@pytest.mark.parametrize("step_init", [1e-3, 1.0, 100.0])
def test_line_search_strong_wolfe(case, step_init):
    phi = phi_cases()[case]
    value0, slope0 = phi(0.0)
    calls = []

    def evaluate(step):
        calls.append(step)
        value, slope = phi(step)
        return value, slope, ("point", step)

    result = line_search_wolfe(evaluate, value0, slope0, step_init, c1=C1, c2=C2)
    assert result.success
    assert result.n_eval == len(calls) <= 20
    assert result.point == ("point", result.step)
    value, slope = phi(result.step)
    assert (result.value, result.slope) == (value, slope)
    assert value <= value0 + C1 * result.step * slope0
    assert abs(slope) <= C2 * abs(slope0)


def test_line_search_accepts_unit_step_with_one_evaluation():
    # phi(1) = -0.5 and phi'(1) = 0: both conditions hold at the first trial.
    result = line_search_wolfe(lambda t: (t * t - 2 * t + 0.5, 2 * t - 2, t), 0.5, -2.0)
    assert result.success and result.step == 1.0 and result.n_eval == 1


def test_line_search_failure_reports_best_point():
    # The slope claims descent but phi increases: no step can be accepted.
    result = line_search_wolfe(lambda t: (t, -1.0, t), 0.0, -1.0, max_eval=7)
    assert not result.success
    assert result.n_eval == 7
    assert result.point is None


@pytest.mark.parametrize("step_init", [0.3, 1.5, 40.0])
def test_line_search_tests_decrease_on_slopes_below_value_tol(step_init):
    # phi(t) = 1e-14 (t - 1)^2 evaluated with a round-off error of +1e-13 at every
    # trial: the values never show a decrease, the slopes 2e-14 (t - 1) are exact.
    def evaluate(step):
        return 1e-14 * (step - 1) ** 2 + 1e-13, 2e-14 * (step - 1), step

    exact = line_search_wolfe(evaluate, 1e-14, -2e-14, step_init)
    approx = line_search_wolfe(evaluate, 1e-14, -2e-14, step_init, value_tol=1e-12)
    assert not exact.success
    assert approx.success
    assert abs(approx.slope) <= C2 * 2e-14
    assert approx.slope <= (1 - 2 * C1) * 2e-14


def dense_bfgs_inverse(pairs, gamma):
    """Inverse Hessian from the explicit BFGS update, starting at ``gamma I``."""
    h = gamma * np.eye(len(pairs[0][0]))
    for s, y in pairs:
        rho = 1.0 / (s @ y)
        left = np.eye(len(s)) - rho * np.outer(s, y)
        h = left @ h @ left.T + rho * np.outer(s, s)
    return h


def random_pairs(rng, n, n_pairs):
    a = spd_matrix(rng, n, 1e2)
    steps = rng.standard_normal((n_pairs, n))
    return [(s, a @ s) for s in steps]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("n_pairs", [1, 3, 8])
@pytest.mark.parametrize("gamma_max", [None, 1e-3])
def test_two_loop_matches_dense_bfgs(seed, n_pairs, gamma_max):
    rng = np.random.default_rng(seed)
    pairs = random_pairs(rng, 12, n_pairs)
    memory = empty_memory()
    for s, y in pairs:
        memory = append_pair(memory, s, y, s @ y, max_size=10)
    s_new, y_new = pairs[-1]
    gamma = (s_new @ y_new) / (y_new @ y_new)
    if gamma_max is not None:
        assert gamma > gamma_max  # the cap is active
        gamma = gamma_max
    h = dense_bfgs_inverse(pairs, gamma)
    xp = array_api_strict
    for v in rng.standard_normal((3, 12)):
        product = inv_hessian_product(np, memory, v, gamma_max=gamma_max)
        np.testing.assert_allclose(product, h @ v, rtol=1e-10)
        strict_memory = LBFGSMemory(
            *(tuple(xp.asarray(a) for a in field) for field in memory)
        )
        strict = inv_hessian_product(
            xp, strict_memory, xp.asarray(v), gamma_max=gamma_max
        )
        np.testing.assert_allclose(np.asarray(strict), h @ v, rtol=1e-10)
        # the compact form, factored once for many products
        operator = inv_hessian_operator(np, memory, gamma_max=gamma_max)
        np.testing.assert_allclose(operator(v), h @ v, rtol=1e-10)
        strict = inv_hessian_operator(xp, strict_memory, gamma_max=gamma_max)
        np.testing.assert_allclose(np.asarray(strict(xp.asarray(v))), h @ v, rtol=1e-10)


@pytest.mark.parametrize("memory_size", [1, 10])
@pytest.mark.parametrize("gamma_max", [None, 1e-2])
def test_stacked_inverse_matches_the_two_loops_on_a_run(memory_size, gamma_max):
    # The pairs of an L-BFGS run on a logistic regression (ill-conditioned,
    # far from random), applied as gamma v + Z' M (Z v) with Z = [S; Y]
    # stacked, and by the two loops: the same matrix, to round-off.
    rng = np.random.default_rng(5)
    X = rng.standard_normal((200, 30)) * np.logspace(0, 2, 30)
    y = np.where(X @ rng.standard_normal(30) + rng.standard_normal(200) > 0, 1.0, -1.0)
    fun = logistic_loss(X, y, 1e-3)
    memory = minimize_lbfgs(fun, np.zeros(30), tol=1e-6, memory_size=memory_size).memory
    assert len(memory) == memory_size
    operator = inv_hessian_operator(np, memory, gamma_max=gamma_max)
    xp = array_api_strict
    strict_memory = LBFGSMemory(*(tuple(xp.asarray(a) for a in f) for f in memory))
    strict = inv_hessian_operator(xp, strict_memory, gamma_max=gamma_max)
    for v in rng.standard_normal((3, 30)):
        expected = inv_hessian_product(np, memory, v, gamma_max=gamma_max)
        atol = 1e-12 * np.abs(expected).max()
        np.testing.assert_allclose(operator(v), expected, rtol=1e-10, atol=atol)
        product = np.asarray(strict(xp.asarray(v)))
        np.testing.assert_allclose(product, expected, rtol=1e-10, atol=atol)


class _NoStack:
    """A namespace whose ``stack`` fails: the pairs must not be copied."""

    def __init__(self, xp):
        self._xp = xp

    def __getattr__(self, name):
        if name == "stack":
            raise AssertionError("the pairs were stacked again")
        return getattr(self._xp, name)


@pytest.mark.parametrize("namespace", ["numpy", "array_api_strict"])
def test_stacked_memory_holds_the_pairs_once(namespace):
    # A memory built as one matrix: its pairs are that matrix's rows, the
    # two-loop product and the compact operator agree with those of the same
    # pairs held apart, and the operator multiplies by the matrix itself.
    xp = np if namespace == "numpy" else array_api_strict
    rng = np.random.default_rng(3)
    pairs = random_pairs(rng, 9, 4)
    s = [xp.asarray(p[0]) for p in pairs]
    y = [xp.asarray(p[1]) for p in pairs]
    sy = [xp.sum(a * b) for a, b in zip(s, y)]
    memory = stacked_memory(xp, s, y, sy)
    apart = LBFGSMemory(tuple(s), tuple(y), tuple(sy))
    assert len(memory) == 4 and memory.stacked.shape == (8, 9)
    assert len(tuple(memory)) == 3  # the three fields, as any memory's
    for i in range(4):
        np.testing.assert_array_equal(np.asarray(memory.s[i]), np.asarray(s[i]))
        np.testing.assert_array_equal(np.asarray(memory.y[i]), np.asarray(y[i]))
        np.testing.assert_array_equal(
            np.asarray(memory.stacked[4 + i, :]), np.asarray(y[i])
        )
    if xp is np:
        assert all(np.shares_memory(a, memory.stacked) for a in memory.s + memory.y)
    operator = inv_hessian_operator(_NoStack(xp), memory, gamma_max=0.3)
    reference = inv_hessian_operator(xp, apart, gamma_max=0.3)
    for v in rng.standard_normal((3, 9)):
        v = xp.asarray(v)
        expected = np.asarray(inv_hessian_product(xp, apart, v, gamma_max=0.3))
        np.testing.assert_allclose(np.asarray(operator(v)), expected, rtol=1e-10)
        np.testing.assert_allclose(np.asarray(reference(v)), expected, rtol=1e-10)
        np.testing.assert_allclose(
            np.asarray(inv_hessian_product(xp, memory, v, gamma_max=0.3)),
            expected,
            rtol=1e-12,
        )
    with pytest.raises(AssertionError, match="stacked again"):
        inv_hessian_operator(_NoStack(xp), apart)
    if xp is np:  # pickled as its matrix, rows again views of it
        copy = pickle.loads(pickle.dumps(memory))
        assert all(np.shares_memory(a, copy.stacked) for a in copy.s + copy.y)
        np.testing.assert_array_equal(copy.stacked, memory.stacked)
        assert len(pickle.dumps(memory)) < len(pickle.dumps(apart))
        assert pickle.loads(pickle.dumps(apart)).stacked is None
        # one made by the tuple's own constructor holds no matrix, and
        # pickles as a plain memory
        made = type(memory)(memory.s, memory.y, memory.sy)
        assert made.stacked is None
        assert pickle.loads(pickle.dumps(made)).stacked is None
    assert len(stacked_memory(xp, [], [], [])) == 0


def test_shifted_stacked_memory_stays_stacked_and_lets_the_old_one_go():
    # A new lambda shifts every y by (c_new - c_old) s: a stacked memory
    # gives a stacked one, equal to the shift of the same pairs held apart,
    # whose pairs are not views of the old matrix (which would keep the old
    # y alive beside the new).
    from skbilevel.outer._fold_eval import _shift_memory

    rng = np.random.default_rng(4)
    pairs = random_pairs(rng, 7, 3)
    s, y = [p[0] for p in pairs], [p[1] for p in pairs]
    sy = [a @ b for a, b in zip(s, y)]
    stacked = stacked_memory(np, s, y, sy)
    apart = LBFGSMemory(tuple(s), tuple(y), tuple(sy))
    shifted = _shift_memory(np, stacked, 0.3)
    reference = _shift_memory(np, apart, 0.3)
    assert reference.stacked is None and len(shifted) == len(reference) == 3
    assert shifted.stacked is not None
    assert not np.shares_memory(shifted.stacked, stacked.stacked)
    for a, b in zip(shifted[:3], reference[:3]):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-14)
    assert _shift_memory(np, stacked, None) is stacked


def test_empty_memory_product_is_scaled_identity():
    v = np.arange(3.0)
    np.testing.assert_array_equal(inv_hessian_product(np, empty_memory(), v), v)
    np.testing.assert_array_equal(
        inv_hessian_product(np, empty_memory(), v, gamma_max=0.5), 0.5 * v
    )
    np.testing.assert_array_equal(inv_hessian_operator(np, empty_memory())(v), v)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_warm_start_takes_fewer_iterations(seed):
    rng = np.random.default_rng(seed)
    a = spd_matrix(rng, 50, 1e3)
    b = rng.standard_normal(50)
    scale = np.linalg.norm(b)
    first = minimize_lbfgs(quadratic(a, b), np.zeros(50), tol=1e-8)
    perturbed = quadratic(a + 0.01 * np.eye(50), b)
    cold = minimize_lbfgs(perturbed, np.zeros(50), tol=1e-8, gtol_scale=scale)
    warm = minimize_lbfgs(
        perturbed, first.x, tol=1e-8, gtol_scale=scale, memory=first.memory
    )
    assert cold.converged and warm.converged
    assert warm.n_iter < cold.n_iter
    assert np.linalg.norm(warm.x - cold.x) <= 1e-5 * np.linalg.norm(cold.x)


def test_warm_memory_used_from_first_iteration():
    # Pairs along the eigenvectors of a diagonal quadratic make B^{-1} = A^{-1}:
    # the first direction is the Newton step, accepted at the unit step.
    diagonal = np.logspace(0, 3, 8)
    b = np.ones(8)
    memory = empty_memory()
    for i in np.argsort(-diagonal):
        s = np.eye(8)[i]
        memory = append_pair(memory, s, diagonal * s, diagonal[i], max_size=10)
    fun = quadratic(np.diag(diagonal), b)
    warm = minimize_lbfgs(fun, np.zeros(8), tol=1e-10, memory=memory)
    assert (warm.n_iter, warm.n_fun) == (1, 2)
    np.testing.assert_allclose(warm.x, b / diagonal, rtol=1e-12)
    assert minimize_lbfgs(fun, np.zeros(8), tol=1e-10).n_iter > 5


def test_ftol_stops_early():
    x0 = np.tile([-1.2, 1.0], 5)
    loose = minimize_lbfgs(rosenbrock, x0, tol=1e-10, ftol=1e-2)
    tight = minimize_lbfgs(rosenbrock, x0, tol=1e-10)
    assert loose.converged and "ftol" in loose.message
    assert loose.n_iter < tight.n_iter
    assert loose.grad_norm > 1e-10 * np.linalg.norm(rosenbrock(x0)[1])


def test_max_iter_respected():
    recorder = Recorder(rosenbrock)
    result = minimize_lbfgs(recorder, np.array([-1.2, 1.0]), max_iter=5, tol=1e-12)
    assert result.n_iter == 5
    assert not result.converged
    assert "max_iter" in result.message
    assert result.n_fun == len(recorder.calls)


def test_max_iter_zero_evaluates_once():
    recorder = Recorder(rosenbrock)
    result = minimize_lbfgs(recorder, np.array([-1.2, 1.0]), max_iter=0)
    assert (result.n_iter, result.n_fun, len(recorder.calls)) == (0, 1, 1)
    assert not result.converged
    np.testing.assert_array_equal(result.x, [-1.2, 1.0])


def test_optimal_start_returns_without_iterating():
    rng = np.random.default_rng(0)
    a = spd_matrix(rng, 10, 10.0)
    b = rng.standard_normal(10)
    recorder = Recorder(quadratic(a, b))
    x0 = np.linalg.solve(a, b)
    result = minimize_lbfgs(recorder, x0, tol=1e-6, gtol_scale=np.linalg.norm(b))
    assert result.converged
    assert (result.n_iter, result.n_fun, len(recorder.calls)) == (0, 1, 1)
    assert len(result.memory) == 0


def test_inputs_not_modified():
    returned = []

    def fun(x):
        value, grad = rosenbrock(x)
        returned.append((x, grad, grad.copy()))
        return value, grad

    x0 = np.array([-1.2, 1.0, 0.5, -0.3])
    x0_copy = x0.copy()
    minimize_lbfgs(fun, x0, tol=1e-8, memory_size=3)
    np.testing.assert_array_equal(x0, x0_copy)
    for _, grad, grad_copy in returned:
        np.testing.assert_array_equal(grad, grad_copy)


@pytest.mark.parametrize("memory_size", [1, 3, 7])
def test_memory_size_respected(memory_size):
    x0 = np.tile([-1.2, 1.0], 5)
    result = minimize_lbfgs(rosenbrock, x0, tol=1e-8, memory_size=memory_size)
    assert result.n_iter > memory_size
    assert len(result.memory) == memory_size
    assert all(len(field) == memory_size for field in result.memory)
    assert result.memory.stacked is None  # L-BFGS appends its pairs one by one
    # A larger warm-start memory is trimmed to the newest memory_size pairs.
    big = minimize_lbfgs(rosenbrock, x0, tol=1e-8, memory_size=20).memory
    warm = minimize_lbfgs(
        rosenbrock, result.x, memory=big, memory_size=memory_size, max_iter=2
    )
    assert len(warm.memory) <= memory_size


def test_callback_stops():
    seen = []

    def callback(x, grad):
        seen.append(x)
        return len(seen) == 3

    result = minimize_lbfgs(rosenbrock, np.array([-1.2, 1.0]), callback=callback)
    assert result.n_iter == 3 and not result.converged
    assert result.message == "stopped by callback"
    np.testing.assert_array_equal(result.x, seen[-1])


def test_wrong_gradient_fails_line_search():
    # The gradient points uphill: no step along -grad decreases f.
    def fun(x):
        value, grad = rosenbrock(x)
        return value, -grad

    result = minimize_lbfgs(fun, np.array([-1.2, 1.0]), max_linesearch=10)
    assert not result.converged
    assert "line search failed" in result.message
    assert result.n_iter == 0 and result.n_fun == 11
    assert result.value <= rosenbrock(np.array([-1.2, 1.0]))[0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_float32_stops_on_ftol(seed):
    rng = np.random.default_rng(seed)
    a = spd_matrix(rng, 50, 1e3).astype(np.float32)
    b = rng.standard_normal(50).astype(np.float32)
    result = minimize_lbfgs(quadratic(a, b), np.zeros(50, np.float32), tol=1e-12)
    assert result.converged
    assert "ftol" in result.message
    assert result.n_iter < 200


def quadratic_with_probes(seed):
    rng = np.random.default_rng(seed)
    n = 30
    a = spd_matrix(rng, n, 1e3)
    b = rng.standard_normal(n)
    u = rng.standard_normal(n)
    return a, b, u


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_opa_improves_inverse_hessian_along_direction(seed):
    # A probe along d adds the secant pair (t d, t A d): B^{-1} (A d) = d. SHINE
    # needs B^{-1} u for an outer gradient u, hence probes along d = A^{-1} u
    # (which SHINE-OPA approximates by the current B^{-1} u).
    a, b, u = quadratic_with_probes(seed)
    target = np.linalg.solve(a, u)

    def error(memory):
        product = inv_hessian_product(np, memory, u)
        return np.linalg.norm(product - target) / np.linalg.norm(target)

    plain = minimize_lbfgs(quadratic(a, b), np.zeros(len(b)), tol=1e-6)
    recorder = Recorder(quadratic(a, b))
    opa = minimize_lbfgs(
        recorder, np.zeros(len(b)), tol=1e-6, secant_direction=lambda x: target
    )
    assert opa.converged and plain.converged
    assert error(plain.memory) > 0.1
    assert error(opa.memory) < 1e-3
    # One probe per iteration, counted in n_fun; the probes do not move the iterate.
    assert opa.n_fun == len(recorder.calls) >= 2 * opa.n_iter + 1
    assert np.linalg.norm(opa.grad) <= 1e-6 * np.linalg.norm(b)


@pytest.mark.parametrize("secant_every", [1, 3])
def test_opa_probes_follow_secant_every(secant_every):
    a, b, u = quadratic_with_probes(0)
    recorder = Recorder(quadratic(a, b))
    iterates = [np.zeros(len(b))]
    probed = []

    def secant_direction(x):
        probed.append(len(iterates))  # k: x_1 .. x_{k-1} are in iterates
        # No probe when the direction is None.
        return None if len(probed) == 1 else 3.0 * u

    result = minimize_lbfgs(
        recorder, iterates[0], tol=1e-12, max_iter=9,
        secant_direction=secant_direction, secant_every=secant_every,
        callback=lambda x, grad: iterates.append(x.copy()),
    )  # fmt: skip
    assert result.n_iter == 9
    assert probed == list(range(secant_every, 10, secant_every))
    # Each probe is x_k + t u with ||t u|| = ||x_k - x_{k-1}||.
    expected = [
        iterates[k]
        + np.linalg.norm(iterates[k] - iterates[k - 1]) * u / np.linalg.norm(u)
        for k in probed[1:]
    ]
    probes = [
        x for x, _, _ in recorder.calls if any(np.allclose(x, p) for p in expected)
    ]
    assert len(probes) == len(expected)
    assert result.n_fun == len(recorder.calls)


def test_first_step_is_bounded_steepest_descent():
    # Without memory the first trial is x0 - min(1, 1 / ||g||) g.
    for shift in [0.1, 100.0]:
        a = np.diag([1.0, 2.0])
        recorder = Recorder(quadratic(a, np.array([shift, 0.0])))
        minimize_lbfgs(recorder, np.zeros(2), max_iter=1)
        grad0 = recorder.calls[0][2]
        step = min(1.0, 1.0 / np.linalg.norm(grad0))
        np.testing.assert_allclose(recorder.calls[1][0], -step * grad0)


def test_non_descent_memory_is_dropped():
    # A pair of negative curvature makes B^{-1} indefinite: here -B^{-1} g is an
    # ascent direction, which is dropped before any evaluation along it.
    a = np.diag([1.0, 10.0])
    b = np.array([1.0, 1.0])
    bogus = append_pair(empty_memory(), b, -b, np.float64(-2.0), max_size=10)
    grad0 = -b
    assert grad0 @ inv_hessian_product(np, bogus, grad0) < 0
    cold = minimize_lbfgs(quadratic(a, b), np.zeros(2), tol=1e-10)
    warm = minimize_lbfgs(quadratic(a, b), np.zeros(2), tol=1e-10, memory=bogus)
    assert (warm.n_fun, warm.n_iter) == (cold.n_fun, cold.n_iter)
    np.testing.assert_array_equal(warm.x, cold.x)


def test_pairs_failing_curvature_condition_are_not_stored():
    # f = x1^2 / 2 + cos(x2) from x2 = 0: the iterates stay on x2 = 0, where the
    # curvature along the OPA probes e2 is -1: s'y = -t sin(t) < 0 for t = 1.
    def fun(x):
        return 0.5 * x[0] ** 2 + np.cos(x[1]), np.array([x[0], -np.sin(x[1])])

    result = minimize_lbfgs(
        fun, np.array([2.0, 0.0]), max_iter=3, secant_direction=lambda x: np.eye(2)[1]
    )
    assert result.n_fun > result.n_iter + 1  # probes were evaluated
    assert len(result.memory) > 0
    assert all(s[1] == 0 for s in result.memory.s)
    assert all(sy > 0 for sy in result.memory.sy)


@pytest.mark.parametrize("seed", [0, 1])
def test_array_api_strict_matches_numpy(seed):
    xp = array_api_strict
    rng = np.random.default_rng(seed)
    a = spd_matrix(rng, 20, 1e2)
    b = rng.standard_normal(20)
    u = rng.standard_normal(20)
    expected = minimize_lbfgs(
        quadratic(a, b), np.zeros(20), tol=1e-8, secant_direction=lambda x: u
    )
    result = minimize_lbfgs(
        quadratic(xp.asarray(a), xp.asarray(b)), xp.zeros(20, dtype=xp.float64),
        tol=1e-8, secant_direction=lambda x: xp.asarray(u),
    )  # fmt: skip
    assert type(result.x).__module__.startswith("array_api_strict")
    assert result.converged
    assert (result.n_iter, result.n_fun) == (expected.n_iter, expected.n_fun)
    np.testing.assert_allclose(np.asarray(result.x), expected.x, rtol=1e-10)
    assert all(isinstance(s, type(result.x)) for s in result.memory.s)
