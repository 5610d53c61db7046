"""Linear solvers of the hypergradient system ``H v = b`` (skbilevel.hypergrad)."""

import ast
import importlib
import inspect

import array_api_strict
import numpy as np
import pytest
from numpy.testing import assert_allclose

from skbilevel.hypergrad import (
    LINEAR_SOLVERS,
    ConjugateGradientSolver,
    InnerSystem,
    LinearSolver,
    NeumannSolver,
    ShineSolver,
    TruncatedSolver,
    get_linear_solver,
)
from skbilevel.solvers._memory import LBFGSMemory, inv_hessian_product
from skbilevel.utils._array_api import get_namespace, to_numpy

N_PARAMS = 30


class QuadraticObjective:
    """``G(w, lam) = w'Qw / 2 - c'w + exp(lam) ||P w||^2 / 2``, P a 0/1 mask."""

    def __init__(self, xp, Q, c, penalized=None):
        self.xp = xp
        self.Q = xp.asarray(Q)
        self.c = xp.asarray(c)
        mask = np.ones(len(c)) if penalized is None else penalized
        self.penalized = xp.asarray(np.asarray(mask, dtype=np.float64))
        self.counts = {"grad": 0, "hvp": 0}

    def value_and_grad(self, w, lam):
        self.counts["grad"] += 1
        xp = self.xp
        Qw = self.Q @ w
        mu_w = xp.exp(lam[0]) * self.penalized * w
        value = xp.sum(w * (0.5 * Qw + 0.5 * mu_w - self.c))
        return value, Qw - self.c + mu_w

    def hessp(self, w, lam):
        mu_mask = self.xp.exp(lam[0]) * self.penalized

        def matvec(v):
            self.counts["hvp"] += 1
            return self.Q @ v + mu_mask * v

        return matvec

    def hessian(self, w, lam):
        eye = self.xp.eye(self.Q.shape[0], dtype=self.Q.dtype)
        return self.Q + eye * (self.xp.exp(lam[0]) * self.penalized)


def random_psd(rng, eigenvalues):
    basis, _ = np.linalg.qr(rng.standard_normal((len(eigenvalues),) * 2))
    return (basis * eigenvalues) @ basis.T


def conjugate_pairs(rng, H, m):
    """``m`` secant pairs ``(s, H s)`` with H-conjugate steps.

    L-BFGS with exact line searches on a quadratic produces such steps; BFGS
    updates along conjugate steps keep every earlier secant equation, so ``n``
    of them make ``B^{-1} = H^{-1}`` exactly.
    """
    steps = []
    for _ in range(m):
        s = rng.standard_normal(H.shape[0])
        for t in steps:
            s = s - (t @ H @ s) / (t @ H @ t) * t
        steps.append(s)
    return [(s, H @ s) for s in steps]


def krylov_pairs(H, c, m):
    """The pairs of ``m`` steps of CG on ``H w = c`` from 0 (= BFGS, exact search)."""
    r, p, pairs = c.copy(), c.copy(), []
    for _ in range(m):
        Hp = H @ p
        alpha = (r @ r) / (p @ Hp)
        pairs.append((alpha * p, alpha * Hp))
        r_new = r - alpha * Hp
        p = r_new + (r_new @ r_new) / (r @ r) * p
        r = r_new
    return pairs


def to_memory(xp, pairs):
    s = tuple(xp.asarray(s) for s, _ in pairs)
    y = tuple(xp.asarray(y) for _, y in pairs)
    return LBFGSMemory(
        s, y, tuple(xp.sum(si * yi) for si, yi in zip(s, y, strict=True))
    )


class Problem:
    """A quadratic inner problem; ``system(xp)`` builds its InnerSystem."""

    def __init__(self, rng, q_eigenvalues=None, log_mu=0.0, penalized=None, Q=None):
        self.rng = rng
        self.Q = random_psd(rng, np.asarray(q_eigenvalues)) if Q is None else Q
        n = self.Q.shape[0]
        self.c = rng.standard_normal(n)
        self.b = rng.standard_normal(n)
        self.log_mu = log_mu
        self.penalized = np.ones(n) if penalized is None else penalized
        self.H = self.Q + np.diag(np.exp(log_mu) * self.penalized)

    def system(self, xp=np, pairs=None, memory="none"):
        objective = QuadraticObjective(xp, self.Q, self.c, self.penalized)
        lam = xp.asarray(np.array([self.log_mu]))
        w = xp.asarray(np.linalg.lstsq(self.H, self.c, rcond=None)[0])
        if pairs is not None:
            memory = to_memory(xp, pairs)
        elif memory == "empty":
            memory = LBFGSMemory((), (), ())
        else:
            memory = None
        return InnerSystem(
            xp=xp,
            objective=objective,
            w=w,
            lam=lam,
            hessp=objective.hessp(w, lam),
            memory=memory,
            curvature_floor=float(np.exp(self.log_mu)),
        )

    def residual(self, v):
        v = to_numpy(v)
        return np.linalg.norm(self.H @ v - self.b) / np.linalg.norm(self.b)


def well_conditioned(seed, **kwargs):
    rng = np.random.default_rng(seed)
    return Problem(rng, rng.uniform(0.0, 3.0, N_PARAMS), **kwargs)


ITERATIVE = {
    "shine": {},
    "shine-opa": {},
    "shine-refine": {"max_iter": 30},
    "cg": {},
    "neumann": {"max_iter": 200},
}


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("tol", [1e-3, 1e-6])
@pytest.mark.parametrize("method", sorted(ITERATIVE) + ["exact"])
def test_solver_reaches_tolerance(method, tol, seed):
    problem = well_conditioned(seed)
    system = problem.system(pairs=krylov_pairs(problem.H, problem.c, 10))
    params = dict(ITERATIVE.get(method, {}))
    if method in ("shine", "shine-opa"):
        # SHINE accepts its estimate up to min(0.5, sqrt(tol)) by default.
        default = get_linear_solver(method).solve(system, problem.b, tol=tol)
        assert problem.residual(default.solution) <= min(0.5, tol**0.5) * (1 + 1e-9)
        params["fallback_residual"] = tol
    result = get_linear_solver(method, **params).solve(system, problem.b, tol=tol)
    true_residual = problem.residual(result.solution)
    assert true_residual <= tol * (1 + 1e-6)
    assert result.residual == pytest.approx(true_residual, rel=1e-6, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("method", ["exact", "cg"])
def test_tight_solve_matches_dense_solve(method, seed):
    problem = well_conditioned(seed)
    result = get_linear_solver(method).solve(problem.system(), problem.b, tol=1e-10)
    assert_allclose(result.solution, np.linalg.solve(problem.H, problem.b), rtol=1e-8)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("n_steps", [1, 5, 20])
@pytest.mark.parametrize("method", ["neumann", "truncated"])
def test_fixed_cost_solvers_stay_within_their_bias(method, n_steps, seed):
    # With a = 1 / L and L >= lambda_max, the residual of K terms is
    # (I - a H)^K b, of norm at most (1 - mu_min / L)^K ||b||; the power
    # iteration gives L <= 1.05 lambda_max.
    problem = well_conditioned(seed)
    eigenvalues = np.linalg.eigvalsh(problem.H)
    result = get_linear_solver(method, max_iter=n_steps).solve(
        problem.system(), problem.b, tol=0.0
    )
    bound = (1 - eigenvalues[0] / (1.05 * eigenvalues[-1])) ** n_steps
    assert problem.residual(result.solution) <= bound + 1e-12


@pytest.mark.parametrize("seed", [0, 1])
def test_identity_returns_b_for_free(seed):
    problem = well_conditioned(seed)
    result = get_linear_solver("identity").solve(problem.system(), problem.b)
    assert_allclose(result.solution, problem.b)
    assert (result.n_hvp, result.n_grad, result.residual) == (0, 0, None)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("method", ["shine", "shine-opa"])
def test_shine_with_full_conjugate_memory_is_exact(method, seed):
    problem = well_conditioned(seed)
    pairs = conjugate_pairs(problem.rng, problem.H, N_PARAMS)
    system = problem.system(pairs=pairs)
    system = system._replace(hessp=_counting(system.hessp))
    result = get_linear_solver(method).solve(system, problem.b, tol=1e-12)
    assert_allclose(result.solution, np.linalg.solve(problem.H, problem.b), rtol=1e-9)
    assert result.n_hvp == system.hessp.count == 1
    assert result.residual < 1e-10


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("intercept_curvature", [1e-3, 1e-2])
def test_shine_gamma_cap_prevents_overshoot(intercept_curvature, seed):
    # The intercept (last coordinate) is unpenalized and barely curved, so an
    # exact secant pair along it has gamma = 1 / intercept_curvature > 1 / mu:
    # uncapped, H0 = gamma I inflates every direction the memory never saw.
    rng = np.random.default_rng(seed)
    Q = np.zeros((N_PARAMS, N_PARAMS))
    Q[:-1, :-1] = random_psd(rng, rng.uniform(0.0, 3.0, N_PARAMS - 1))
    Q[-1, -1] = intercept_curvature
    penalized = np.r_[np.ones(N_PARAMS - 1), 0.0]
    problem = Problem(rng, Q=Q, penalized=penalized)
    step = np.r_[np.zeros(N_PARAMS - 1), 1.0]
    system = problem.system(pairs=[(step, problem.H @ step)])
    exact = np.linalg.solve(problem.H, problem.b)

    uncapped = inv_hessian_product(np, system.memory, problem.b)
    result = ShineSolver(fallback_residual=None).solve(system, problem.b)
    capped = inv_hessian_product(np, system.memory, problem.b, gamma_max=1.0)
    assert_allclose(result.solution, capped)
    assert (result.n_hvp, result.residual) == (0, None)
    error = np.linalg.norm(result.solution - exact)
    assert error < 0.05 * np.linalg.norm(uncapped - exact)
    # With the residual check, the capped estimate is then refined to tol.
    refined = ShineSolver().solve(system, problem.b, tol=1e-8)
    assert problem.residual(refined.solution) <= 1e-8


@pytest.mark.parametrize("seed", [0, 1])
def test_shine_cap_is_inactive_for_current_pairs(seed):
    # Exact pairs of H >= mu I have gamma = s'Hs / s'H^2 s <= 1 / mu.
    problem = well_conditioned(seed)
    system = problem.system(pairs=krylov_pairs(problem.H, problem.c, 5))
    result = ShineSolver(fallback_residual=None).solve(system, problem.b)
    assert_allclose(result.solution, inv_hessian_product(np, system.memory, problem.b))


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("n_pairs", [0, 1])
def test_shine_falls_back_to_pcg_when_residual_is_poor(n_pairs, seed):
    rng = np.random.default_rng(seed)
    # Three stiff directions dominate a random pair: gamma ~ 1e-4 then
    # shrinks the estimate in the 27 soft ones.
    q_eigenvalues = np.r_[rng.uniform(5e3, 1e4, 3), rng.uniform(0.0, 1.0, 27)]
    problem = Problem(rng, q_eigenvalues)
    pairs = conjugate_pairs(rng, problem.H, n_pairs)
    system = problem.system(pairs=pairs) if n_pairs else problem.system(memory="empty")
    system = system._replace(hessp=_counting(system.hessp))
    # The estimate alone (b / mu for an empty memory) is poor ...
    estimate = ShineSolver(fallback_residual=None).solve(system, problem.b)
    assert problem.residual(estimate.solution) > 0.5
    assert system.hessp.count == 0
    # ... so the checked solve refines it.
    result = ShineSolver().solve(system, problem.b, tol=1e-6)
    assert problem.residual(result.solution) <= 1e-6
    assert result.n_hvp == system.hessp.count > 1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_shine_refine_needs_fewer_hvps_than_cg(seed):
    # Ten stiff directions the inner L-BFGS has explored: the preconditioner
    # B^{-1} removes them from the spectrum CG has to resolve.
    rng = np.random.default_rng(seed)
    q_eigenvalues = np.concatenate([rng.uniform(100, 1000, 10), rng.uniform(0, 1, 20)])
    problem = Problem(rng, q_eigenvalues)
    system = problem.system(pairs=krylov_pairs(problem.H, problem.c, 12))
    cg = ConjugateGradientSolver().solve(system, problem.b, tol=1e-6)
    refine = get_linear_solver("shine-refine", max_iter=30).solve(
        system, problem.b, tol=1e-6
    )
    assert problem.residual(cg.solution) <= 1e-6
    assert problem.residual(refine.solution) <= 1e-6
    assert refine.n_hvp < cg.n_hvp


def _counting(hessp):
    def counted(v):
        counted.count += 1
        return hessp(v)

    counted.count = 0
    return counted


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("method", LINEAR_SOLVERS)
def test_reported_costs_count_every_evaluation(method, seed):
    rng = np.random.default_rng(seed)
    problem = Problem(rng, rng.uniform(0.0, 100.0, N_PARAMS))
    system = problem.system(pairs=conjugate_pairs(rng, problem.H, 3))
    solver = get_linear_solver(method)
    state = None
    for _ in range(2):  # the second call is warm-started where supported
        counts = system.objective.counts
        counts.update(grad=0, hvp=0)
        result = solver.solve(system, problem.b, tol=1e-6, state=state)
        assert result.n_hvp == counts["hvp"]
        assert result.n_grad == counts["grad"]
        state = result.state


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("n_terms", [1, 5, 30])
def test_neumann_equals_dense_series(n_terms, seed):
    problem = well_conditioned(seed)

    def dense_series(a):
        A = np.eye(N_PARAMS) - a * problem.H
        return a * sum(np.linalg.matrix_power(A, k) @ problem.b for k in range(n_terms))

    a = 0.9 / np.linalg.eigvalsh(problem.H)[-1]
    fixed = NeumannSolver(max_iter=n_terms, step_size=a)
    result = fixed.solve(problem.system(), problem.b, tol=0.0)
    assert_allclose(result.solution, dense_series(a), rtol=1e-10)
    assert result.n_hvp == n_terms
    # With the estimated step a = 1 / (1.05 lambda_est).
    result = NeumannSolver(max_iter=n_terms).solve(problem.system(), problem.b, tol=0.0)
    a = 1.0 / (1.05 * result.state.eigenvalue)
    assert_allclose(result.solution, dense_series(a), rtol=1e-10)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("n_steps", [1, 5, 20])
def test_truncated_on_quadratic_equals_dense_series(n_steps, seed):
    problem = well_conditioned(seed)
    a = 0.9 / np.linalg.eigvalsh(problem.H)[-1]
    A = np.eye(N_PARAMS) - a * problem.H
    expected = a * sum(np.linalg.matrix_power(A, k) @ problem.b for k in range(n_steps))
    solver = TruncatedSolver(max_iter=n_steps, step_size=a)
    result = solver.solve(problem.system(), problem.b)
    assert_allclose(result.solution, expected, rtol=1e-10)
    assert result.n_grad == n_steps - 1
    assert result.residual == pytest.approx(problem.residual(result.solution))


class LogisticObjective:
    """``sum_i log(1 + exp(x_i'w)) - y'Xw + exp(lam) ||w||^2 / 2`` (NumPy only)."""

    def __init__(self, X, y):
        self.X, self.y = X, y

    def value_and_grad(self, w, lam):
        z = self.X @ w
        mu = np.exp(lam[0])
        value = np.sum(np.logaddexp(0.0, z) - self.y * z) + 0.5 * mu * w @ w
        return value, self.X.T @ (1.0 / (1.0 + np.exp(-z)) - self.y) + mu * w

    def hessp(self, w, lam):
        p = 1.0 / (1.0 + np.exp(-self.X @ w))
        curvature, mu = p * (1.0 - p), np.exp(lam[0])
        return lambda v: self.X.T @ (curvature * (self.X @ v)) + mu * v


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("n_steps", [2, 6])
def test_truncated_differentiates_the_unrolled_steps(n_steps, seed):
    # Reference: the Jacobians J_t = I - a H(w_t) of the gradient steps by
    # central differences of the gradient (no HVP), then
    # v = a sum_t J_{t+1} ... J_{K-1} b. Started away from the minimizer, the
    # iterates move and every J_t differs.
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((40, 8))
    objective = LogisticObjective(X, (rng.random(40) < 0.5).astype(float))
    lam, w0, b = np.array([0.0]), rng.standard_normal(8), rng.standard_normal(8)
    a = 0.5 / np.linalg.norm(X, 2) ** 2

    def grad(w):
        return objective.value_and_grad(w, lam)[1]

    iterates = [w0]
    for _ in range(n_steps - 1):
        iterates.append(iterates[-1] - a * grad(iterates[-1]))

    def hessian_fd(w, h=1e-5):
        return np.column_stack(
            [(grad(w + h * e) - grad(w - h * e)) / (2 * h) for e in np.eye(8)]
        )

    jacobians = [np.eye(8) - a * hessian_fd(w) for w in iterates]
    expected, cotangent = np.zeros(8), b
    for t in range(n_steps - 1, -1, -1):
        expected += a * cotangent
        cotangent = jacobians[t].T @ cotangent
    system = InnerSystem(np, objective, w0, lam, objective.hessp(w0, lam), None, 1.0)
    result = TruncatedSolver(max_iter=n_steps, step_size=a).solve(system, b)
    assert_allclose(result.solution, expected, rtol=1e-7)
    assert not np.allclose(jacobians[0], jacobians[-1])


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("high", [3.0, 100.0])
def test_power_iteration_estimates_largest_eigenvalue(high, seed):
    rng = np.random.default_rng(seed)
    problem = Problem(rng, rng.uniform(0.0, high, N_PARAMS))
    lambda_max = np.linalg.eigvalsh(problem.H)[-1]
    system = problem.system()
    solver = NeumannSolver(max_iter=1)
    cold = solver.solve(system, problem.b)
    assert abs(cold.state.eigenvalue - lambda_max) <= 0.05 * lambda_max
    assert 1.05 * cold.state.eigenvalue >= lambda_max
    assert cold.n_hvp == solver.power_iter + 1
    warm = solver.solve(system, problem.b, state=cold.state)
    assert warm.n_hvp == solver.power_iter // 4 + 1
    assert abs(warm.state.eigenvalue - lambda_max) <= 0.05 * lambda_max


@pytest.mark.parametrize("seed", [0, 1])
def test_cg_warm_start_saves_hvps_on_nearby_system(seed):
    problem = well_conditioned(seed)
    previous = ConjugateGradientSolver().solve(problem.system(), problem.b, tol=1e-8)
    nearby = Problem(problem.rng, Q=problem.Q, log_mu=0.01)
    nearby.c, nearby.b = problem.c, problem.b
    system = nearby.system()
    cold = ConjugateGradientSolver().solve(system, nearby.b, tol=1e-8)
    warm = ConjugateGradientSolver().solve(
        system, nearby.b, tol=1e-8, state=previous.state
    )
    assert nearby.residual(warm.solution) <= 1e-8
    assert warm.n_hvp < cold.n_hvp
    # A start worse than 0 costs its residual check and is not used.
    bad = ConjugateGradientSolver().solve(
        system, nearby.b, tol=1e-8, state=-10 * previous.state
    )
    assert bad.n_hvp == cold.n_hvp + 1
    assert_allclose(bad.solution, cold.solution)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("method", ["exact", "cg"])
def test_singular_hessian_gives_minimum_norm_solution(method, seed):
    # Unpenalized coordinates along which Q vanishes: H is singular, like the
    # multinomial Hessian along a shift of all intercepts; b is in its range.
    rng = np.random.default_rng(seed)
    q_eigenvalues = np.concatenate([rng.uniform(0.5, 3.0, N_PARAMS - 3), np.zeros(3)])
    problem = Problem(rng, q_eigenvalues, penalized=np.zeros(N_PARAMS))
    problem.b = problem.Q @ rng.standard_normal(N_PARAMS)
    result = get_linear_solver(method).solve(problem.system(), problem.b, tol=1e-12)
    assert_allclose(result.solution, np.linalg.pinv(problem.Q) @ problem.b, rtol=1e-8)


def test_zero_and_nonfinite_right_hand_sides():
    problem = well_conditioned(0)
    system = problem.system(pairs=krylov_pairs(problem.H, problem.c, 3))
    for method in LINEAR_SOLVERS:
        solver = get_linear_solver(method)
        zero = solver.solve(system, np.zeros(N_PARAMS))
        assert not np.any(zero.solution) and zero.n_hvp == 0
        nan = solver.solve(system, np.full(N_PARAMS, np.nan))
        assert np.all(np.isnan(nan.solution)) and np.isnan(nan.residual)


def test_get_linear_solver_names_and_instances():
    for name in LINEAR_SOLVERS:
        solver = get_linear_solver(name)
        assert isinstance(solver, LinearSolver) and solver.name == name
        assert solver.opa == (name == "shine-opa")
        assert solver.requires <= {"hvp", "memory", "gradient", "hessian"}
    solver = NeumannSolver(max_iter=7)
    assert get_linear_solver(solver) is solver
    with pytest.raises(ValueError, match="instance"):
        get_linear_solver(solver, max_iter=3)
    with pytest.raises(ValueError) as excinfo:
        get_linear_solver("lbfgs")
    assert all(repr(name) in str(excinfo.value) for name in LINEAR_SOLVERS)
    with pytest.raises(TypeError, match="LinearSolver instance"):
        get_linear_solver(np.linalg.solve)


def test_solver_modules_import_only_the_protocol_and_the_kernels():
    # The registry imports every solver module: a solver module that imported
    # another one (or the registry) would bring back an import cycle.
    modules = {type(get_linear_solver(name)).__module__ for name in LINEAR_SOLVERS}
    for module_name in modules:
        tree = ast.parse(inspect.getsource(importlib.import_module(module_name)))
        siblings = {
            node.module
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.level == 1
        }
        assert siblings <= {"base", "_krylov"}, module_name


@pytest.mark.parametrize(
    "method, params",
    [
        ("cg", {"max_iter": 0}),
        ("cg", {"max_iter": 2.5}),
        ("neumann", {"max_iter": -1}),
        ("neumann", {"power_iter": 0}),
        ("truncated", {"step_size": 0.0}),
        ("shine", {"fallback_residual": -0.1}),
        ("shine-refine", {"max_iter": True}),
    ],
)
def test_invalid_parameters_raise(method, params):
    name = next(iter(params))
    with pytest.raises(ValueError, match=name):
        get_linear_solver(method, **params)


@pytest.mark.parametrize("tol", [-1e-3, float("nan")])
def test_invalid_tol_raises(tol):
    problem = well_conditioned(0)
    with pytest.raises(ValueError, match="tol"):
        get_linear_solver("cg").solve(problem.system(), problem.b, tol=tol)


@pytest.mark.parametrize("method", ["shine", "shine-opa", "shine-refine"])
def test_missing_memory_error_names_requirement_and_alternative(method):
    problem = well_conditioned(0)
    with pytest.raises(ValueError, match=f"'{method}' needs the inner L-BFGS memory"):
        get_linear_solver(method).solve(problem.system(), problem.b)
    with pytest.raises(ValueError, match="'cg'"):
        get_linear_solver(method).solve(problem.system(), problem.b)
    system = problem.system(memory="empty")._replace(curvature_floor=0.0)
    with pytest.raises(ValueError, match="curvature_floor"):
        get_linear_solver(method).solve(system, problem.b)


def test_missing_hessian_or_hvp_errors():
    problem = well_conditioned(0)
    system = problem.system()
    with pytest.raises(ValueError, match="'exact' needs a dense Hessian"):
        get_linear_solver("exact").solve(system._replace(objective=object()), problem.b)
    with pytest.raises(ValueError, match="'cg' needs Hessian-vector products"):
        get_linear_solver("cg").solve(system._replace(hessp=None), problem.b)
    # SHINE without the residual check needs only the memory.
    shine = ShineSolver(fallback_residual=None)
    system = problem.system(memory="empty")._replace(hessp=None)
    assert_allclose(shine.solve(system, problem.b).solution, problem.b)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("method", LINEAR_SOLVERS)
def test_array_api_strict_matches_numpy(method, seed):
    rng = np.random.default_rng(seed)
    problem = Problem(rng, rng.uniform(0.0, 100.0, N_PARAMS))
    pairs = conjugate_pairs(rng, problem.H, 4)
    results = []
    for xp in (np, array_api_strict):
        system = problem.system(xp, pairs=pairs)
        b = xp.asarray(problem.b)
        result = get_linear_solver(method).solve(system, b, tol=1e-6)
        result = get_linear_solver(method).solve(
            system, b, tol=1e-6, state=result.state
        )
        assert get_namespace(result.solution) is get_namespace(b)
        results.append(result)
    numpy_result, strict_result = results
    assert_allclose(to_numpy(strict_result.solution), numpy_result.solution, rtol=1e-10)
    assert strict_result.n_hvp == numpy_result.n_hvp


def test_shine_on_memory_of_the_inner_lbfgs():
    from skbilevel.solvers.lbfgs import minimize_lbfgs

    problem = well_conditioned(0)
    system = problem.system()
    solve = minimize_lbfgs(
        lambda w: system.objective.value_and_grad(w, system.lam),
        np.zeros(N_PARAMS),
        tol=1e-8,
        memory_size=10,
    )
    system = system._replace(w=solve.x, memory=solve.memory)
    result = ShineSolver(fallback_residual=None).solve(system, problem.b)
    identity = get_linear_solver("identity").solve(system, problem.b)
    assert problem.residual(result.solution) < 0.5 * problem.residual(identity.solution)
    checked = ShineSolver(fallback_residual=1e-3).solve(system, problem.b, tol=1e-3)
    assert problem.residual(checked.solution) <= 1e-3


def _diagonal_system(n=200):
    """``A = diag(geomspace(1, 1e4))``, ``b`` = ones: plain CG needs many
    iterations (condition number 1e4)."""
    a = np.geomspace(1.0, 1e4, n)
    return a, (lambda v: a * v), np.ones(n)


def test_cg_goes_past_max_iter_only_while_extend_asks():
    from skbilevel.hypergrad._krylov import preconditioned_cg

    a, matvec, b = _diagonal_system()
    capped = preconditioned_cg(np, matvec, b, tol=1e-10, max_iter=10)
    assert capped.n_matvec == 10
    calls = []

    def extend(x, z):
        calls.append(x)
        return len(calls) <= 5  # five more iterations, then stop

    extended = preconditioned_cg(
        np, matvec, b, tol=1e-10, max_iter=10, extend=extend, extra_iter=40
    )
    assert extended.n_matvec == 15 and len(calls) == 6
    assert extended.residual < capped.residual
    bounded = preconditioned_cg(
        np, matvec, b, tol=1e-10, max_iter=10, extend=lambda x, z: True, extra_iter=7
    )
    assert bounded.n_matvec == 17


def test_shine_refine_goes_on_while_the_hypergradient_error_is_large():
    # A logistic fold whose hypergradient system 2 iterations leave far from
    # tol: the extension stops once the error estimated from the
    # preconditioned residual is a small part of the hypergradient, which is
    # then closer to the exact one than the capped solve's.
    from skbilevel.hypergrad.implicit import hypergradient
    from skbilevel.hypergrad.shine import ShineRefineSolver
    from skbilevel.solvers import minimize_lbfgs

    from ._problems import make_fold

    inner, outer, _ = make_fold("multinomial", n_samples=120, n_features=10)
    lam = np.array([-3.0])
    solved = minimize_lbfgs(
        lambda w: inner.value_and_grad(w, lam), inner.model.zeros(), tol=1e-10
    )

    def grad(solver):
        result = hypergradient(
            inner, outer, solved.x, lam, solver, tol=1e-12, memory=solved.memory
        )
        return result.grad, result.solve.n_hvp

    exact, _ = grad(get_linear_solver("exact"))
    capped, capped_hvp = grad(ShineRefineSolver(max_iter=2, extra_iter=0))
    extended, extended_hvp = grad(ShineRefineSolver(max_iter=2, error_ratio=0.01))
    lenient, lenient_hvp = grad(ShineRefineSolver(max_iter=2, error_ratio=1e6))
    assert extended_hvp > capped_hvp == lenient_hvp
    assert_allclose(lenient, capped)
    assert np.abs(extended - exact) < 0.5 * np.abs(capped - exact)
    assert np.abs(extended - exact) <= 0.05 * np.abs(exact)


@pytest.mark.parametrize(
    "params",
    [{"extra_iter": -1}, {"extra_iter": 1.5}, {"extra_iter": True}, {"error_ratio": 0}],
)
def test_invalid_shine_refine_extension_raises(params):
    from skbilevel.hypergrad.shine import ShineRefineSolver

    name = next(iter(params))
    with pytest.raises(ValueError, match=name):
        ShineRefineSolver(**params)


def test_conjugate_gradient_reports_each_step_along_the_last_direction():
    # from x0 = 0 the solution is the sum of alpha_k p_k over the directions
    # p_k in the order they were multiplied: any linear image of it is the
    # same sum of the directions' images
    from skbilevel.hypergrad._krylov import preconditioned_cg

    rng = np.random.default_rng(0)
    M = rng.standard_normal((12, 12))
    A = M @ M.T + 12 * np.eye(12)
    L = rng.standard_normal((5, 12))
    b = rng.standard_normal(12)
    directions, alphas = [], []

    def matvec(p):
        directions.append(p)
        return A @ p

    result = preconditioned_cg(
        np, matvec, b, tol=1e-6, max_iter=50, on_step=alphas.append
    )
    assert len(alphas) == len(directions) == result.n_matvec > 2
    assert_allclose(sum(a * p for a, p in zip(alphas, directions)), result.solution)
    image = sum(a * (L @ p) for a, p in zip(alphas, directions))
    assert_allclose(image, L @ result.solution, rtol=1e-12)
