"""Conjugate gradient on Hessian-vector products, warm-started (HOAG)."""

from ..utils._array_api import norm, to_float
from ._krylov import preconditioned_cg
from .base import LinearSolver, LinearSolveResult, check_positive_int

__all__ = ["ConjugateGradientSolver"]


class ConjugateGradientSolver(LinearSolver):
    """Conjugate gradient on Hessian-vector products, warm-started (HOAG).

    Solves ``H v = b`` to ``||H v - b|| <= tol ||b||`` as in HOAG (Pedregosa
    2016). The previous solution for the same fold (``state``) is used as the
    starting point when its residual is smaller than ``||b||`` (the residual of
    starting at 0); between nearby outer iterates it usually is.

    Cost: one HVP per iteration, plus one for the residual of a warm start.

    Parameters
    ----------
    max_iter : int, default=100
        Maximum number of CG iterations.

    References
    ----------
    F. Pedregosa, "Hyperparameter optimization with approximate gradient",
    ICML 2016.
    """

    name = "cg"
    requires = frozenset({"hvp"})

    def __init__(self, max_iter=100):
        self.max_iter = check_positive_int("max_iter", max_iter)

    def _solve(self, system, b, *, b_norm, tol, state):
        xp = system.xp
        x0 = r0 = None
        n_hvp = 0
        if tuple(getattr(state, "shape", ())) == tuple(b.shape):
            r_warm = b - system.hessp(state)
            n_hvp += 1
            if to_float(norm(xp, r_warm)) < b_norm:
                x0, r0 = state, r_warm
        result = preconditioned_cg(
            xp,
            system.hessp,
            b,
            x0=x0,
            r0=r0,
            tol=tol,
            max_iter=self.max_iter,
            b_norm=b_norm,
        )
        return LinearSolveResult(
            result.solution,
            n_hvp + result.n_matvec,
            0,
            result.residual,
            result.solution,
        )
