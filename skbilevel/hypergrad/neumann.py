"""Truncated Neumann series for ``H v = b``.

For ``0 < a < 2 / lambda_max(H)``, ``H^{-1} = a sum_k (I - a H)^k``. Truncated to
``K`` terms it acts like the damped inverse ``(H + I / (a K))^{-1}``: accurate in
high-curvature directions, biased in low-curvature ones (Grosse, CSC2541
lecture 12).
"""

from ..utils._array_api import norm, to_float
from ._krylov import lipschitz_step
from .base import (
    LinearSolver,
    LinearSolveResult,
    check_positive_float,
    check_positive_int,
)

__all__ = ["NeumannSolver"]


class NeumannSolver(LinearSolver):
    """Truncated Neumann series: ``v = a sum_{k<K} (I - a H)^k b``.

    Computed by the recurrence ``v_k = v_{k-1} + a (b - H v_{k-1})``, ``v_0 = 0``
    (Lorraine et al. 2020), whose residual ``b - H v_k`` comes with each step:
    iterations stop at ``tol`` or after ``max_iter`` terms. ``a = 1 / L`` with
    ``L`` = 1.05 x the power-iteration estimate of ``lambda_max(H)``, cached in
    ``state`` and refreshed with a few warm-started iterations on the next call.
    Stopped early, the result is biased towards ``(H + I / (a K))^{-1} b``.

    Cost: one HVP per term, plus ``power_iter`` HVPs on a cold start
    (``power_iter // 4`` warm).

    Parameters
    ----------
    max_iter : int, default=100
        Maximum number ``K`` of terms.
    step_size : float or None, default=None
        ``a``, when ``lambda_max(H)`` is known (``a < 2 / lambda_max``);
        None estimates it by power iteration.
    power_iter : int, default=20
        Power iterations on a cold start.

    References
    ----------
    J. Lorraine, P. Vicol, D. Duvenaud, "Optimizing millions of
    hyperparameters by implicit differentiation", AISTATS 2020.
    """

    name = "neumann"
    requires = frozenset({"hvp"})

    def __init__(self, max_iter=100, step_size=None, power_iter=20):
        self.max_iter = check_positive_int("max_iter", max_iter)
        self.step_size = check_positive_float("step_size", step_size, allow_none=True)
        self.power_iter = check_positive_int("power_iter", power_iter)

    def _solve(self, system, b, *, b_norm, tol, state):
        xp = system.xp
        a, state, n_hvp = lipschitz_step(
            system, b, step_size=self.step_size, power_iter=self.power_iter, state=state
        )
        v = xp.zeros_like(b)
        r = b
        residual = 1.0
        for _ in range(self.max_iter):
            v = v + a * r
            r = b - system.hessp(v)
            n_hvp += 1
            residual = to_float(norm(xp, r)) / b_norm
            if residual <= tol:
                break
        return LinearSolveResult(v, n_hvp, 0, residual, state)
