"""Conjugate gradient on Hessian-vector products, plain and preconditioned.

SciPy's ``scipy.sparse.linalg.cg`` only takes NumPy arrays: this one is written
against the array namespace of the system so it runs unchanged on CuPy.
"""

from typing import NamedTuple

from ..utils._array_api import norm, to_float, vdot
from .base import LinearSolver, LinearSolveResult, check_positive_int

__all__ = ["CGResult", "preconditioned_cg", "ConjugateGradientSolver"]


class CGResult(NamedTuple):
    """Output of :func:`preconditioned_cg`.

    Attributes
    ----------
    solution : array of shape (n_params,)
    n_matvec : int
        Products with the matrix, including the initial residual when computed.
    residual : float
        Relative residual ``||r|| / ||b||`` of the last (recursively updated)
        residual ``r``.
    """

    solution: object
    n_matvec: int
    residual: float


def preconditioned_cg(
    xp,
    matvec,
    b,
    *,
    x0=None,
    r0=None,
    preconditioner=None,
    tol=1e-3,
    max_iter=100,
    b_norm=None,
):
    """Solve ``A x = b`` for a symmetric positive (semi-)definite ``A``.

    Preconditioned conjugate gradient (Nocedal & Wright, Algorithm 5.3), stopped
    when ``||b - A x|| <= tol * ||b||`` or after ``max_iter`` iterations.

    Parameters
    ----------
    xp : module
        Array namespace.
    matvec : callable
        ``x -> A x``.
    b : array of shape (n,)
        Right-hand side.
    x0 : array of shape (n,) or None
        Starting point; None starts at 0 (no product needed).
    r0 : array of shape (n,) or None
        ``b - A x0`` when the caller has it already (saves one product).
    preconditioner : callable or None
        ``r -> M^{-1} r`` for a symmetric positive definite ``M`` close to ``A``;
        None is plain CG.
    tol : float
        Relative residual target.
    max_iter : int
        Maximum number of iterations (one product each).
    b_norm : float or None
        ``||b||`` if known.

    Returns
    -------
    CGResult
    """
    n_matvec = 0
    if b_norm is None:
        b_norm = to_float(norm(xp, b))
    if b_norm == 0.0:
        return CGResult(xp.zeros_like(b), 0, 0.0)
    if x0 is None:
        x, r = xp.zeros_like(b), b
    else:
        x = x0
        if r0 is None:
            r0 = b - matvec(x0)
            n_matvec += 1
        r = r0
    r_norm = to_float(norm(xp, r))
    z = r if preconditioner is None else preconditioner(r)
    p = z
    rz = vdot(xp, r, z)
    for _ in range(max_iter):
        if r_norm <= tol * b_norm:
            break
        Ap = matvec(p)
        n_matvec += 1
        pAp = vdot(xp, p, Ap)
        # p'Ap <= 0 only when A is not positive definite along p (a singular or
        # non-convex Hessian): no step along p decreases the quadratic model.
        if not to_float(pAp) > 0:
            break
        alpha = rz / pAp
        x = x + alpha * p
        r = r - alpha * Ap
        r_norm = to_float(norm(xp, r))
        z = r if preconditioner is None else preconditioner(r)
        rz_new = vdot(xp, r, z)
        p = z + (rz_new / rz) * p
        rz = rz_new
    return CGResult(x, n_matvec, r_norm / b_norm)


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
