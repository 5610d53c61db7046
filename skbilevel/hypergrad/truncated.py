"""Reverse-mode differentiation through the last K inner gradient steps."""

from ._krylov import lipschitz_step
from .base import (
    LinearSolver,
    LinearSolveResult,
    check_positive_float,
    check_positive_int,
    relative_residual,
)

__all__ = ["TruncatedSolver"]


class TruncatedSolver(LinearSolver):
    """K-step truncated backpropagation through gradient descent (K-RMD).

    Runs ``K`` gradient steps ``w_{t+1} = w_t - a grad_w G(w_t, lam)`` from
    ``w_0 = system.w`` (``a = 1 / L`` as in :class:`NeumannSolver`), then the
    reverse pass of Shaban et al. (2018) with ``A_t = I - a H(w_t)``::

        alpha = b, v = 0
        for t = K-1, ..., 0:  v += a alpha;  alpha = A_t alpha

    The hypergradient of the unrolled steps is
    ``-a sum_t cross(w_t, lam, alpha_t)``; the caller computes
    ``-cross(w, lam, v)``, which equals it when the iterates stay near ``w``
    (``cross`` is linear in its last argument, and the steps from an inner
    solution are small). For a quadratic ``G`` (constant ``H``),
    ``v = a sum_{k<K} (I - a H)^k b``: the Neumann series with ``K`` terms, with
    the same bias towards ``(H + I / (a K))^{-1} b``. ``tol`` is ignored.

    Cost: ``K - 1`` inner gradients (``w_K`` is never used), ``K - 1`` HVPs at
    the iterates, one HVP at ``w`` for the reported residual, plus the power
    iterations of the step size.

    Parameters
    ----------
    max_iter : int, default=20
        Number ``K`` of unrolled gradient steps.
    step_size : float or None, default=None
        ``a``; None estimates ``1 / lambda_max(H)`` by power iteration.
    power_iter : int, default=20
        Power iterations on a cold start (a quarter of them warm).

    References
    ----------
    A. Shaban, C.-A. Cheng, N. Hatch, B. Boots, "Truncated back-propagation
    for bilevel optimization", AISTATS 2018.
    """

    name = "truncated"
    requires = frozenset({"hvp", "gradient"})

    def __init__(self, max_iter=20, step_size=None, power_iter=20):
        self.max_iter = check_positive_int("max_iter", max_iter)
        self.step_size = check_positive_float("step_size", step_size, allow_none=True)
        self.power_iter = check_positive_int("power_iter", power_iter)

    def _solve(self, system, b, *, b_norm, tol, state):
        xp, objective, lam = system.xp, system.objective, system.lam
        a, state, n_hvp = lipschitz_step(
            system, b, step_size=self.step_size, power_iter=self.power_iter, state=state
        )
        iterates = [system.w]
        for _ in range(self.max_iter - 1):
            _, grad = objective.value_and_grad(iterates[-1], lam)
            iterates.append(iterates[-1] - a * grad)
        n_grad = self.max_iter - 1

        v = xp.zeros_like(b)
        alpha = b
        for t in range(self.max_iter - 1, -1, -1):
            v = v + a * alpha
            if t > 0:
                alpha = alpha - a * objective.hessp(iterates[t], lam)(alpha)
                n_hvp += 1
        residual = relative_residual(xp, system.hessp(v), b, b_norm)
        return LinearSolveResult(v, n_hvp + 1, n_grad, residual, state)
