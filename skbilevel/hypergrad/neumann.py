"""Truncated Neumann series for ``H v = b``, and the power iteration it needs.

For ``0 < a < 2 / lambda_max(H)``, ``H^{-1} = a sum_k (I - a H)^k``. Truncated to
``K`` terms it acts like the damped inverse ``(H + I / (a K))^{-1}``: accurate in
high-curvature directions, biased in low-curvature ones (Grosse, CSC2541
lecture 12).
"""

import math
from typing import NamedTuple

from ..utils._array_api import device_of, norm, to_float
from .base import (
    LinearSolver,
    LinearSolveResult,
    check_positive_float,
    check_positive_int,
)

__all__ = ["PowerState", "power_iteration", "NeumannSolver"]

# The power iteration's estimate ||H u|| (u unit) is a lower bound of
# lambda_max(H). Any a < 2 / lambda_max keeps |1 - a lambda| < 1, so a 5% margin
# on top of a converged estimate keeps a = 1 / L safe with room to spare, while
# costing only 5% in the convergence rate.
_SAFETY = 1.05

# Golden angle (radians): cos(k * angle), k = 1..n, is a deterministic vector
# with no structure (in particular not orthogonal to the leading eigenvector
# of a structured Hessian, as a constant vector can be); array-API namespaces
# have no random generator.
_GOLDEN_ANGLE = math.pi * (3.0 - math.sqrt(5.0))


class PowerState(NamedTuple):
    """Largest eigenvalue estimate of ``H`` and its eigenvector (warm start).

    Attributes
    ----------
    eigenvalue : float
        ``||H u||`` for the last unit iterate ``u``: a lower bound of
        ``lambda_max(H)``, before the safety factor.
    eigenvector : array of shape (n_params,)
        Unit vector to start the next power iteration from.
    """

    eigenvalue: float
    eigenvector: object


def power_iteration(xp, hessp, like, *, n_iter, state=None):
    """Estimate the largest eigenvalue of the PSD operator ``hessp``.

    Parameters
    ----------
    xp : module
        Array namespace.
    hessp : callable
        ``v -> H v``.
    like : array of shape (n_params,)
        Gives the shape, dtype and device of the iterates.
    n_iter : int
        Number of iterations (one HVP each).
    state : PowerState or None
        Previous estimate: its eigenvector is the starting point.

    Returns
    -------
    state : PowerState
    n_hvp : int
    """
    n_params = like.shape[0]
    if isinstance(state, PowerState) and state.eigenvector.shape == (n_params,):
        u = state.eigenvector
    else:
        k = xp.arange(1, n_params + 1, dtype=like.dtype, device=device_of(like))
        u = xp.cos(_GOLDEN_ANGLE * k)
        u = u / norm(xp, u)
    eigenvalue, n_hvp = 0.0, 0
    while n_hvp < n_iter:
        Hu = hessp(u)
        n_hvp += 1
        eigenvalue = to_float(norm(xp, Hu))
        if eigenvalue == 0.0:
            break
        u = Hu / eigenvalue
    return PowerState(eigenvalue, u), n_hvp


def lipschitz_step(system, like, *, step_size, power_iter, state):
    """Step ``a = 1 / L`` with ``L`` a safe upper bound of ``lambda_max(H)``.

    Returns ``(a, state, n_hvp)``: a cold start runs ``power_iter`` iterations,
    a warm start (``state`` a PowerState) a quarter of them.
    """
    if step_size is not None:
        return step_size, state, 0
    warm = isinstance(state, PowerState)
    n_iter = max(1, power_iter // 4) if warm else power_iter
    state, n_hvp = power_iteration(
        system.xp, system.hessp, like, n_iter=n_iter, state=state
    )
    # H >= mu I on the penalized block, so lambda_max >= mu: a lower bound that
    # keeps a finite when the iteration lands in the null space of H.
    lipschitz = _SAFETY * max(state.eigenvalue, float(system.curvature_floor))
    return 1.0 / lipschitz, state, n_hvp


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
