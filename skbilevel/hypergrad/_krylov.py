"""Krylov kernels shared by the linear solvers: preconditioned CG, power iteration.

Both only multiply by ``H`` through a ``matvec`` closure and work in the array
namespace of the system (SciPy's ``scipy.sparse.linalg.cg`` only takes NumPy
arrays), so they run unchanged on CuPy. The solver modules import them from
here; none imports another solver module.
"""

import math
from typing import NamedTuple

from ..utils._array_api import device_of, norm, to_float, vdot

__all__ = [
    "CGResult",
    "PowerState",
    "lipschitz_step",
    "power_iteration",
    "preconditioned_cg",
]

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
    done=None,
    extend=None,
    extra_iter=0,
    on_step=None,
):
    """Solve ``A x = b`` for a symmetric positive (semi-)definite ``A``.

    Preconditioned conjugate gradient (Nocedal & Wright, Algorithm 5.3), stopped
    when ``||b - A x|| <= tol * ||b||``, when ``done(b - A x)`` or after
    ``max_iter`` iterations (with ``extend``, up to ``extra_iter`` more while
    ``extend`` asks for them).

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
    done : callable or None
        ``r -> bool``: a stopping test of the caller's on the residual
        ``r = b - A x`` (the recursively updated one), besides ``tol``.
    extend : callable or None
        ``(x, z) -> bool`` with ``z = M^{-1} r`` the preconditioned residual:
        after ``max_iter`` iterations, whether to go on (the caller's
        estimate of the error that matters is still too large).
    extra_iter : int
        Iterations at most after ``max_iter`` while ``extend`` says so.
    on_step : callable or None
        ``alpha -> None``, called after each update ``x += alpha p`` of the
        iterate along the direction ``p`` of the last ``matvec`` call: with
        ``x0=None`` the solution is the sum of those steps, so a caller that
        knows a linear image ``L p`` of each direction has ``L x`` without
        a product with ``L`` (see :func:`~skbilevel.solvers.minimize_newton_cg`).

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
    for k in range(max_iter + (extra_iter if extend is not None else 0)):
        if r_norm <= tol * b_norm or (done is not None and done(r)):
            break
        if k >= max_iter and not extend(x, z):
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
        if on_step is not None:
            on_step(alpha)
        r = r - alpha * Ap
        r_norm = to_float(norm(xp, r))
        z = r if preconditioner is None else preconditioner(r)
        rz_new = vdot(xp, r, z)
        p = z + (rz_new / rz) * p
        rz = rz_new
    return CGResult(x, n_matvec, r_norm / b_norm)


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

    Returns ``(a, state, n_hvp)``: ``step_size`` itself when given (no HVP);
    otherwise a cold start runs ``power_iter`` iterations, a warm start
    (``state`` a PowerState) a quarter of them.
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
