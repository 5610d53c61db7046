"""Dense reference solve of ``H v = b`` (small problems and tests only)."""

from ..utils._array_api import norm, to_float
from .base import LinearSolver, LinearSolveResult

__all__ = ["ExactSolver"]


class ExactSolver(LinearSolver):
    """Minimum-norm solution of ``H v = b`` from the dense Hessian.

    Builds ``H = objective.hessian(w, lam)`` and applies its pseudo-inverse
    through the symmetric eigendecomposition ``H = Q diag(d) Q'``; eigenvalues
    with ``|d| <= n_params * eps * max |d|`` count as zero. A Cholesky
    factorization would fail on the multinomial logistic Hessian, which is
    singular along "add the same constant to every intercept"; ``b`` is
    orthogonal to that direction, so the pseudo-inverse solves the system
    exactly. The reference for the other solvers' accuracy (Pedregosa 2016
    solves the same system iteratively). ``tol`` is ignored.

    Cost: O(n_params^2) memory and O(n_params^3) time: small problems only.
    The residual is computed from the dense Hessian.

    References
    ----------
    F. Pedregosa, "Hyperparameter optimization with approximate gradient",
    ICML 2016.
    """

    name = "exact"
    requires = frozenset({"hessian"})

    def _solve(self, system, b, *, b_norm, tol, state):
        xp = system.xp
        H = system.objective.hessian(system.w, system.lam)
        eigenvalues, eigenvectors = xp.linalg.eigh(H)
        # Rounding makes the eigenvalues of a matrix with norm ||H|| uncertain
        # by about n * eps * ||H|| (LAPACK's backward error, as numpy.linalg.pinv
        # and matrix_rank use): anything below is indistinguishable from zero.
        threshold = (
            H.shape[0] * xp.finfo(H.dtype).eps * to_float(xp.max(xp.abs(eigenvalues)))
        )
        keep = xp.abs(eigenvalues) > threshold
        safe = xp.where(keep, eigenvalues, xp.ones_like(eigenvalues))
        inverse = xp.where(keep, 1.0 / safe, xp.zeros_like(eigenvalues))
        v = eigenvectors @ (inverse * (eigenvectors.T @ b))
        residual = to_float(norm(xp, H @ v - b)) / b_norm
        return LinearSolveResult(v, 0, 0, residual, None)
