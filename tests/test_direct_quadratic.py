"""The direct solve of squared-loss folds against the iterative engine.

A squared-loss fold with few features is solved by one factorization of its
Hessian (:mod:`skbilevel.solvers.direct`): the same values, fold solutions and
hypergradients as L-BFGS and a linear solver run to a tight tolerance, the
exact minimizer and finite differences of ``h``, for every penalty layout.
"""

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose
from sklearn.linear_model import Ridge

from skbilevel import BilevelSearchCV
from skbilevel.hypergrad import InnerSystem, get_linear_solver
from skbilevel.hypergrad.direct import DirectSolver
from skbilevel.objectives import (
    BinaryLogisticLoss,
    InnerObjective,
    L2Penalty,
    SquaredLoss,
    ValidationLoss,
)
from skbilevel.outer import CrossValidatedProblem, Fold, _fold_eval, hoag
from skbilevel.solvers import direct

N_FEATURES = 6
GROUPS = np.arange(N_FEATURES) % 3


def _penalty(structure, n_targets):
    if structure == "scalar":
        return L2Penalty.scalar()
    if structure == "features":
        return L2Penalty.per_feature(N_FEATURES, n_targets)
    if structure == "groups":
        return L2Penalty.from_groups(GROUPS, n_targets)
    return L2Penalty.per_output(N_FEATURES, n_targets)


def _folds(structure, n_targets, fit_intercept, weighted, sparse, seed=0, n=45):
    """Two squared-loss folds; features with nonzero means (the intercept matters)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, N_FEATURES)) + rng.uniform(-2, 2, N_FEATURES)
    if sparse:
        X[rng.random(X.shape) < 0.5] = 0.0
    Y = X @ rng.standard_normal((N_FEATURES, n_targets)) + 1.0
    Y += 0.5 * rng.standard_normal(Y.shape)
    Y = Y[:, 0] if n_targets == 1 else Y
    weight = rng.uniform(0.5, 2.0, n) if weighted else None
    X = sp.csr_matrix(X) if sparse else X
    loss, penalty = SquaredLoss(n_targets), _penalty(structure, n_targets)
    folds = []
    for validation in (np.arange(n) < n // 3, np.arange(n) >= 2 * n // 3):
        rows = [np.flatnonzero(~validation), np.flatnonzero(validation)]
        w = [None if weight is None else weight[r] for r in rows]
        inner = InnerObjective(
            X[rows[0]], Y[rows[0]], loss, penalty, n_targets, fit_intercept, w[0]
        )
        outer = ValidationLoss(
            X[rows[1]], Y[rows[1]], loss, n_targets, fit_intercept, w[1],
            scale=2.0 / n_targets,
        )  # fmt: skip
        folds.append(Fold(inner, outer))
    return folds


def _lam(folds):
    return np.linspace(-1.0, 1.5, folds[0].inner.n_hyper)


def _evaluate(folds, lam, *, use_direct, monkeypatch, gradient=True):
    monkeypatch.setattr(_fold_eval, "_DIRECT", use_direct)
    problem = CrossValidatedProblem(folds, get_linear_solver("exact"))
    evaluation = problem.evaluate(
        lam, inner_tol=1e-12, linear_tol=1e-12, gradient=gradient
    )
    return evaluation, problem.solutions()


def _central_differences(folds, lam, monkeypatch, eps=1e-5):
    """Central differences of the direct solve's CV loss at ``lam``."""
    out = np.empty(len(lam))
    for i in range(len(lam)):
        step = np.zeros(len(lam))
        step[i] = eps
        up, down = (
            _evaluate(folds, lam + sign * step, use_direct=True,
                      monkeypatch=monkeypatch, gradient=False)[0].value
            for sign in (1, -1)
        )  # fmt: skip
        out[i] = (up - down) / (2 * eps)
    return out


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("n_targets", [1, 3])
@pytest.mark.parametrize("structure", ["scalar", "features", "groups", "outputs"])
def test_direct_equals_iterative(
    structure, n_targets, fit_intercept, weighted, sparse, monkeypatch
):
    folds = _folds(structure, n_targets, fit_intercept, weighted, sparse)
    lam = _lam(folds)
    fast, fast_w = _evaluate(folds, lam, use_direct=True, monkeypatch=monkeypatch)
    slow, slow_w = _evaluate(folds, lam, use_direct=False, monkeypatch=monkeypatch)
    assert (fast.n_hvp, fast.inner_iter) == (0, len(folds)) < (0, slow.inner_iter)
    assert_allclose(fast.fold_values, slow.fold_values, rtol=1e-10)
    # the direct hypergradient against central differences of the direct
    # (exact) values: agreement to ~1e-8 of its largest entry
    scale = np.abs(fast.grad).max()
    assert_allclose(
        fast.grad,
        _central_differences(folds, lam, monkeypatch),
        rtol=1e-6,
        atol=1e-7 * scale,
    )
    # the iterative one is as accurate as its inner solve leaves it: off by
    # up to 2e-6 of the largest entry (scalar, 3 targets, intercept), where
    # the hypergradient is small next to the terms it sums
    assert_allclose(fast.grad, slow.grad, rtol=1e-5, atol=1e-5 * scale)
    for w, reference, fold in zip(fast_w, slow_w, folds):
        assert w.dtype == reference.dtype and w.shape == reference.shape
        # L-BFGS stops at a gradient 1e-12 * ||grad G(0)||: w to ~1e-8
        assert_allclose(w, reference, rtol=1e-6, atol=1e-7 * np.abs(w).max())
        # and the exact minimizer: H w = -grad G(0), H from the objective's HVPs
        inner = fold.inner
        lam_x = np.asarray(lam)
        hessp = inner.hessp(w, lam_x)
        H = np.column_stack([hessp(e) for e in np.eye(inner.n_params)])
        grad0 = inner.value_and_grad(inner.model.zeros(), lam_x)[1]
        assert_allclose(w, np.linalg.solve(H, -grad0), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("n_targets", [1, 3])
@pytest.mark.parametrize("structure", ["scalar", "features", "groups", "outputs"])
def test_direct_hypergradient_equals_finite_differences(structure, n_targets):
    folds = _folds(structure, n_targets, True, True, False, seed=1)
    lam = _lam(folds)
    problem = CrossValidatedProblem(folds, get_linear_solver("cg"))
    grad = problem.evaluate(lam).grad
    step = 1e-5
    numeric = []
    for g in range(lam.size):
        shift = step * np.eye(lam.size)[g]
        values = [
            problem.evaluate(lam + sign * shift, gradient=False).value
            for sign in (1.0, -1.0)
        ]
        numeric.append((values[0] - values[1]) / (2 * step))
    assert_allclose(grad, numeric, rtol=1e-6, atol=1e-10)


def test_direct_solver_applies_the_factor():
    # The linear solver of the direct path: H v = b exactly, no HVP.
    inner = _folds("groups", 3, True, True, False)[0].inner
    lam = np.array([0.3, -0.5, 1.0])
    factor = direct.direct_factor(inner, lam)
    w = factor.minimizer()
    b = np.random.default_rng(0).standard_normal(inner.n_params)
    system = InnerSystem(np, inner, w, lam, inner.hessp(w, lam), None, 1.0)
    result = DirectSolver(factor).solve(system, b)
    assert (result.n_hvp, result.n_grad) == (0, 0)
    assert_allclose(inner.hessp(w, lam)(result.solution), b, rtol=1e-10, atol=1e-12)
    assert repr(DirectSolver(factor)) == "DirectSolver()"


def test_moments_are_computed_once_per_fold(monkeypatch):
    calls = []
    original = direct.quadratic_moments

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(direct, "quadratic_moments", counted)
    folds = _folds("groups", 3, True, False, False)
    problem = CrossValidatedProblem(folds, get_linear_solver("shine"))
    for shift in (0.0, 0.5, 1.0):
        problem.evaluate(_lam(folds) + shift)
    assert len(calls) == len(folds)


def test_history_shows_the_direct_path():
    folds = _folds("features", 3, True, False, False)
    problem = CrossValidatedProblem(folds, get_linear_solver("shine"))
    result = hoag(problem, np.zeros(N_FEATURES), bounds=(-5.0, 5.0), max_iter=3)
    for record in result.history:
        assert record["n_hvp"] == 0 and record["inner_iter"] == len(folds)
        assert record["inner_converged"]


def _logistic_fold():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, N_FEATURES))
    y = (X[:, 0] + rng.standard_normal(40) > 0).astype(float)
    loss = BinaryLogisticLoss()
    penalty = L2Penalty.scalar()
    inner = InnerObjective(X[:30], y[:30], loss, penalty)
    return Fold(inner, ValidationLoss(X[30:], y[30:], loss))


def test_direct_path_is_not_taken_elsewhere(monkeypatch):
    lam = np.zeros(1)
    # the logistic loss is not quadratic
    logistic = _logistic_fold()
    assert direct.direct_factor(logistic.inner, lam) is None
    problem = CrossValidatedProblem([logistic], get_linear_solver("cg"))
    assert problem.evaluate(lam).n_hvp > 0
    # a strength per feature and output: neither shared nor uniform per output
    inner = _folds("scalar", 2, True, False, False)[0].inner
    mixed = L2Penalty(np.arange(N_FEATURES * 2))
    inner = InnerObjective(inner.model.X, inner.y, inner.loss, mixed, 2)
    assert direct.direct_factor(inner, np.zeros(mixed.n_hyper)) is None
    # more features than the threshold
    folds = _folds("groups", 1, True, False, False)
    assert direct.direct_factor(folds[0].inner, np.zeros(3)) is not None
    monkeypatch.setattr(direct, "MAX_DIRECT_FEATURES", N_FEATURES - 1)
    assert direct.direct_factor(folds[0].inner, np.zeros(3)) is None
    problem = CrossValidatedProblem(folds, get_linear_solver("cg"))
    assert problem.evaluate(np.zeros(3)).n_hvp > 0


def test_banded_ridge_search_chooses_the_same_alphas(monkeypatch):
    # One alpha per band, shared by 3 targets: the first band carries the
    # signal, the last is noise; the held-out halves keep the band alphas.
    rng = np.random.default_rng(0)
    sizes = [5, 20, 20]
    bands = np.repeat(np.arange(3), sizes)
    X = rng.standard_normal((200, sum(sizes)))
    coef = (
        rng.standard_normal((sum(sizes), 3))
        * np.repeat([1.0, 0.1, 0.0], sizes)[:, None]
    )
    Y = X @ coef + rng.standard_normal((200, 3))
    chosen, scores = [], []
    for use_direct in (True, False):
        monkeypatch.setattr(_fold_eval, "_DIRECT", use_direct)
        search = BilevelSearchCV(
            Ridge(), {"alpha": (1e-3, 1e5)}, penalty_groups=bands, cv=5
        ).fit(X, Y)
        assert search.penalty_gain_ > 0
        n_hvp = sum(record["n_hvp"] for record in search.history_)
        assert (n_hvp == 0) == use_direct
        chosen.append(np.log(search.best_params_["alpha"]))
        scores.append(search.best_score_)
    # the iterative path's fold fits stop at the search's inner tolerance:
    # the signal band's alpha agrees; the weak band's lies on a shallow
    # curve (its alpha moves by a factor ~3 with the path the descent takes)
    # where the CV score agrees; the noise band's CV curve is flat once it is
    # switched off, and both paths switch it off
    assert_allclose(chosen[0][0], chosen[1][0], atol=0.15)
    assert scores[1] == pytest.approx(scores[0], abs=2e-3)
    assert max(chosen[0][1], chosen[1][1]) < min(chosen[0][2], chosen[1][2])
    assert min(chosen[0][2], chosen[1][2]) > 6.0


def test_float32_data_get_float32_solutions():
    # moments and factors in float64; the solution in the data's dtype
    folds = _folds("groups", 3, True, True, False)
    single = [
        Fold(
            InnerObjective(
                f.inner.model.X.astype(np.float32), f.inner.y.astype(np.float32),
                f.inner.loss, f.inner.penalty, 3, True,
                f.inner.sample_weight.astype(np.float32),
            ),
            ValidationLoss(
                f.outer.model.X.astype(np.float32), f.outer.y.astype(np.float32),
                f.outer.loss, 3, True, f.outer.sample_weight.astype(np.float32),
                scale=2.0 / 3,
            ),
        )
        for f in folds
    ]  # fmt: skip
    results = []
    for pair in (folds, single):
        problem = CrossValidatedProblem(pair, get_linear_solver("shine"))
        results.append((problem.evaluate(_lam(folds)), problem.solutions()))
    (double, double_w), (float32, float32_w) = results
    assert float32.n_hvp == 0 and float32_w[0].dtype == np.float32
    assert_allclose(float32.value, double.value, rtol=1e-5)
    assert_allclose(float32.grad, double.grad, rtol=1e-4, atol=1e-6)
    assert_allclose(float32_w[0], double_w[0], rtol=1e-4, atol=1e-5)
