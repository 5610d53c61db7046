"""The implicit-function-theorem hypergradient of one fold.

At the inner solution ``w(lambda)`` the optimality condition ``dG/dw = 0`` holds
for every ``lambda``; differentiating it gives
``dw/dlambda = -H^{-1} (d2G / dw dlambda)`` with ``H = d2G/dw2``. The outer loss
``F(w)`` does not depend on ``lambda`` directly, so

    grad h = - (d2G / dlambda dw) @ v,    H v = grad_w F(w).

The linear solver chosen for ``H v = b`` is the whole difference between
methods (SHINE, CG, Neumann, ...).
"""

from typing import NamedTuple

from .base import InnerSystem

__all__ = ["FoldHypergradient", "hypergradient", "single_hessp"]


class FoldHypergradient(NamedTuple):
    """Outer loss and hypergradient of one fold.

    Attributes
    ----------
    value : 0-d array
        ``F(w)``.
    grad : array of shape (n_hyper,)
        ``d F(w(lambda)) / d lambda`` (namespace of the data).
    solve : LinearSolveResult
        The linear solve, with its cost and warm-start state.
    """

    value: object
    grad: object
    solve: object


def single_hessp(inner, w, lam, single):
    """``inner.hessp(w, lam)``, asked for single-precision products where
    ``single`` and the objective takes them (its ``single_hessian``)."""
    if single and getattr(inner, "single_hessian", False):
        return inner.hessp(w, lam, single=True)
    return inner.hessp(w, lam)


def hypergradient(
    inner, outer, w, lam, solver, *, tol=1e-3, memory=None, state=None, single=False
):
    """Hypergradient of ``F(w(lam))`` at an approximate inner solution ``w``.

    Parameters
    ----------
    inner : InnerObjective
        ``G(w, lam)`` of the fold.
    outer : ValidationLoss
        ``F(w)`` of the fold.
    w : array of shape (n_params,)
        Approximate minimizer of ``G(., lam)``.
    lam : array of shape (n_hyper,)
        Hyperparameters, in the namespace and dtype of the data.
    solver : LinearSolver
        Solver for ``H v = grad F``.
    tol : float, default=1e-3
        Relative residual target of the linear solve.
    memory : LBFGSMemory or None
        Secant pairs of the inner solve (SHINE uses them).
    state : object
        The solver state of this fold's previous solve (warm start).
    single : bool, default=False
        Hessian products in single precision where the inner objective
        offers them (``single_hessian``) and their error allows
        (``hessp(w, lam, single=True)`` of
        :class:`~skbilevel.objectives.InnerObjective`).

    Returns
    -------
    FoldHypergradient
    """
    value, grad_outer = outer.value_and_grad(w)
    system = InnerSystem(
        xp=inner.xp,
        objective=inner,
        w=w,
        lam=lam,
        hessp=single_hessp(inner, w, lam, single),
        memory=memory,
        curvature_floor=inner.curvature_floor(lam),
    )
    solver.check_system(system)
    result = solver.solve(system, grad_outer, tol=tol, state=state)
    return FoldHypergradient(value, -inner.cross(w, lam, result.solution), result)
