"""Tests for the Newton-CG solver of the tight re-solves (polish and refit)."""

import array_api_strict
import numpy as np
import pytest
from numpy.testing import assert_allclose

from skbilevel.solvers import (
    empty_memory,
    minimize_lbfgs,
    minimize_newton_cg,
)
from skbilevel.solvers._memory import append_pair

from ._problems import LOSS_NAMES, make_fold


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
    result = minimize_newton_cg(
        lambda w: inner.value_and_grad(w, lam),
        lambda w: inner.hessp(w, lam),
        x0,
        memory=memory,
    )
    assert result.memory is memory
    assert_allclose(x0, copy)
    scale = float(np.linalg.norm(inner.value_and_grad(inner.model.zeros(), lam)[1]))
    again = minimize_newton_cg(
        lambda w: inner.value_and_grad(w, lam),
        lambda w: inner.hessp(w, lam),
        result.x,
        gtol_scale=scale,
    )
    assert again.converged and again.n_iter == 0


def test_max_iter_reached_is_not_converged():
    inner, _, _ = make_fold("multinomial")
    lam = np.array([-3.0])
    result = minimize_newton_cg(
        lambda w: inner.value_and_grad(w, lam),
        lambda w: inner.hessp(w, lam),
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
