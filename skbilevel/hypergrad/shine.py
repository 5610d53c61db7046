"""SHINE: reuse the inner L-BFGS inverse-Hessian estimate for ``H v = b``.

The inner solver's secant pairs define ``B^{-1} ~ H^{-1}`` (the matrix of the
two-loop recursion, applied in compact form: O(m^2 p) once per solve, then
O(m p) per product). SHINE (Ramzi et al. 2022) takes ``v = B^{-1} b`` with no
Hessian-vector product. In the directions the inner solver never explored,
``B^{-1}`` acts as its initial matrix ``H0``; on the coefficients, ``H >= mu I``
with ``mu = min exp(lambda)`` the penalty's curvature, so ``H^{-1} <= I / mu``.
The published ``H0 = I`` exceeds that bound by a factor ``mu``: on strongly
penalized problems the hypergradient blows up and the outer search is thrown
to a bound. Two safeguards prevent it:

- ``H0 = gamma I`` with ``gamma = s'y / y'y`` of the newest pair, capped at
  ``1 / mu`` (``exp(-lambda)`` for a scalar penalty): the scaling follows the
  observed curvature, and no direction gets more than the bound;
- one Hessian-vector product measures the residual of the estimate, and a
  poor estimate is refined by conjugate gradient preconditioned with ``B^{-1}``.

The "SHINE" section of the user guide (``doc/user_guide.rst``) gives the
details.
"""

import math

from ..solvers._memory import inv_hessian_operator
from ..utils._array_api import norm, to_float
from ._krylov import preconditioned_cg
from .base import (
    LinearSolver,
    LinearSolveResult,
    check_nonnegative_int,
    check_positive_float,
    check_positive_int,
)

__all__ = ["ShineSolver", "ShineOPASolver", "ShineRefineSolver"]


def _check_curvature_floor(solver, system):
    mu = system.curvature_floor
    try:
        valid = math.isfinite(float(mu)) and float(mu) > 0
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ValueError(
            f"Linear solver {solver.name!r} caps its inverse-Hessian scaling at "
            f"1 / curvature_floor and needs a finite curvature_floor > 0 "
            f"(min exp(lam)), got {mu!r}."
        )


def _inverse_estimate(system):
    """``r -> B^{-1} r`` with the scaling capped at ``1 / mu``."""
    xp, memory = system.xp, system.memory
    gamma_max = 1.0 / float(system.curvature_floor)
    return inv_hessian_operator(xp, memory, gamma_max=gamma_max)


class ShineSolver(LinearSolver):
    """SHINE: ``v = B^{-1} b`` from the inner L-BFGS memory, checked.

    ``B^{-1}`` is the L-BFGS matrix of the inner solver's secant pairs
    (:func:`~skbilevel.solvers.inv_hessian_operator`) with
    ``H0 = min(s'y / y'y, 1 / mu) I`` (``mu`` = ``system.curvature_floor``).
    With an empty memory the estimate is ``b / mu``. One Hessian-vector product
    then gives the relative residual of the estimate; when it exceeds
    ``fallback_residual``, conjugate gradient preconditioned by ``B^{-1}`` and
    started at the estimate refines it to ``tol``.

    Cost: O(m^2 n_params) to factor the pairs' compact form, O(m n_params)
    per product with it (m pairs); one HVP for the check; one HVP per
    refinement iteration when the check fails.

    Parameters
    ----------
    fallback_residual : "auto", float or None, default="auto"
        Relative residual above which the estimate is refined. ``"auto"``:
        ``min(0.5, sqrt(tol))``, so the accepted error shrinks as HOAG tightens
        ``tol``. None skips the check: SHINE as published, no HVP at all,
        ``residual`` is None.
    max_iter : int, default=100
        Maximum number of refinement iterations.

    References
    ----------
    Z. Ramzi, F. Mannel, S. Bai, J.-L. Starck, P. Ciuciu, T. Moreau, "SHINE:
    SHaring the INverse Estimate from the forward pass for bi-level
    optimization and implicit models", ICLR 2022.
    """

    name = "shine"

    def __init__(self, fallback_residual="auto", max_iter=100):
        if fallback_residual != "auto":
            fallback_residual = check_positive_float(
                "fallback_residual", fallback_residual, allow_none=True
            )
        self.fallback_residual = fallback_residual
        self.max_iter = check_positive_int("max_iter", max_iter)

    def _threshold(self, tol):
        """Largest relative residual accepted without refinement."""
        if self.fallback_residual == "auto":
            # The hypergradient error is of the order of the residual; sqrt(tol)
            # keeps it a few percent early in HOAG (tol ~ 1e-4) and makes it
            # shrink with the summable tolerance schedule.
            return min(0.5, max(tol, 0.0) ** 0.5)
        return self.fallback_residual

    @property
    def requires(self):
        if self.fallback_residual is None:
            return frozenset({"memory"})
        return frozenset({"memory", "hvp"})

    def check_system(self, system):
        super().check_system(system)
        _check_curvature_floor(self, system)

    def _solve(self, system, b, *, b_norm, tol, state):
        xp = system.xp
        inverse = _inverse_estimate(system)
        v = inverse(b)
        if self.fallback_residual is None:
            return LinearSolveResult(v, 0, 0, None, None)
        r = b - system.hessp(v)
        residual = to_float(norm(xp, r)) / b_norm
        if residual <= self._threshold(tol):
            return LinearSolveResult(v, 1, 0, residual, None)
        result = preconditioned_cg(
            xp,
            system.hessp,
            b,
            x0=v,
            r0=r,
            preconditioner=inverse,
            tol=tol,
            max_iter=self.max_iter,
            b_norm=b_norm,
        )
        return LinearSolveResult(
            result.solution, 1 + result.n_matvec, 0, result.residual, None
        )


class ShineOPASolver(ShineSolver):
    """SHINE with outer-problem awareness (OPA).

    The same solve as :class:`ShineSolver`; ``opa = True`` asks the caller to
    have the inner L-BFGS add secant pairs along ``b`` (Ramzi et al. 2022,
    Section 3.2), so that ``B^{-1}`` is accurate in the direction that matters
    for the hypergradient.

    Parameters
    ----------
    fallback_residual : "auto", float or None, default="auto"
        See :class:`ShineSolver`.
    max_iter : int, default=100
        See :class:`ShineSolver`.

    References
    ----------
    Z. Ramzi et al., "SHINE", ICLR 2022.
    """

    name = "shine-opa"
    opa = True


class ShineRefineSolver(LinearSolver):
    """SHINE refine: a short conjugate gradient preconditioned by SHINE.

    Conjugate gradient on ``H v = b`` with the preconditioner ``B^{-1}`` (the
    capped L-BFGS inverse estimate, as in :class:`ShineSolver`), started at
    ``B^{-1} b`` and stopped at ``tol`` or ``max_iter``. Ramzi et al. (2022)
    start a CG at the SHINE estimate; preconditioning with the same operator
    also shrinks the spectrum along the directions the inner solver explored.

    What the outer search reads is not ``v`` but the hypergradient
    ``-(d2G / dlambda dw) v``, which can be small while ``b`` is not: a
    residual that is a fair fraction of ``b`` can then be most of it. So
    when ``max_iter`` iterations leave the residual ``r`` above ``tol``, CG
    goes on (at most ``extra_iter`` iterations) while the fold's
    hypergradient error, estimated as ``-(d2G / dlambda dw) B^{-1} r``
    (``B^{-1} r`` is CG's own preconditioned residual: no product), exceeds
    ``error_ratio`` times the fold's hypergradient. The test is per fold and
    relative: it sees a fold whose own hypergradient is small, not folds
    whose large hypergradients cancel in the mean at the outer minimum,
    and it has no absolute floor (``extra_iter`` bounds its cost).
    Objectives without ``cross``, the mixed derivative, keep the plain cap.

    Cost: one HVP for the initial residual, one per iteration, and one
    two-loop recursion (O(m n_params)) per iteration.

    Parameters
    ----------
    max_iter : int, default=10
        Preconditioned CG iterations before the hypergradient's error is
        looked at.
    extra_iter : int, default=40
        Iterations at most after ``max_iter`` while that error is too large.
    error_ratio : float, default=0.3
        Largest estimated error of the hypergradient, relative to its norm,
        that ends the solve after ``max_iter`` iterations.

    References
    ----------
    Z. Ramzi et al., "SHINE", ICLR 2022.
    """

    name = "shine-refine"
    requires = frozenset({"memory", "hvp"})

    def __init__(self, max_iter=10, extra_iter=40, error_ratio=0.3):
        self.max_iter = check_positive_int("max_iter", max_iter)
        self.extra_iter = check_nonnegative_int("extra_iter", extra_iter)
        self.error_ratio = check_positive_float("error_ratio", error_ratio)

    def check_system(self, system):
        super().check_system(system)
        _check_curvature_floor(self, system)

    def _solve(self, system, b, *, b_norm, tol, state):
        inverse = _inverse_estimate(system)
        extend = _hypergradient_error_test(system, self.error_ratio)
        result = preconditioned_cg(
            system.xp,
            system.hessp,
            b,
            x0=inverse(b),
            preconditioner=inverse,
            tol=tol,
            max_iter=self.max_iter,
            b_norm=b_norm,
            extend=extend,
            extra_iter=self.extra_iter,
        )
        return LinearSolveResult(
            result.solution, result.n_matvec, 0, result.residual, None
        )


def _hypergradient_error_test(system, ratio):
    """``(v, z) -> bool``: whether the hypergradient's error estimated from
    the preconditioned residual ``z`` exceeds ``ratio`` times the
    hypergradient of ``v`` (None when the objective has no ``cross``)."""
    cross = getattr(system.objective, "cross", None)
    if cross is None:
        return None
    xp, w, lam = system.xp, system.w, system.lam

    def too_large(v, z):
        error = to_float(norm(xp, cross(w, lam, z)))
        return error > ratio * to_float(norm(xp, cross(w, lam, v)))

    return too_large
