"""One interface for the linear solvers of the hypergradient.

The implicit hypergradient is ``grad h = d_lambda F - cross(w, lam, v)`` where ``v``
solves ``H v = b``, ``H`` the Hessian of the inner objective at its solution ``w`` and
``b = grad_w F(w)`` the gradient of the outer (validation) loss. Every method of
approximating ``v`` (SHINE, CG, Neumann, truncated backpropagation, ...) is a
:class:`LinearSolver` with the same ``solve(system, b, tol=..., state=...)``
signature, so an estimator can take any of them by name or as an instance.
"""

import math
from numbers import Integral
from typing import NamedTuple

from ..utils._array_api import norm, to_float

__all__ = ["InnerSystem", "LinearSolveResult", "LinearSolver"]


class InnerSystem(NamedTuple):
    """Everything a linear solver may use, at an (approximate) inner solution.

    Attributes
    ----------
    xp : module
        Array namespace of every array below.
    objective : object
        The inner objective ``G``: ``value_and_grad(w, lam)`` returns
        ``(value, grad)``, ``hessp(w, lam)`` returns a callable ``v -> H v`` and
        ``hessian(w, lam)`` the dense Hessian of shape (n_params, n_params).
    w : array of shape (n_params,)
        Inner solution.
    lam : array of shape (n_hyper,)
        Hyperparameters (log penalty strengths).
    hessp : callable
        ``v -> H v`` at ``(w, lam)`` with the curvature precomputed once (in
        single precision where the search's tolerance allows, see
        ``InnerObjective.hessp``). Solvers use it, not
        ``objective.hessp(w, lam)``, for products at ``w``.
    memory : LBFGSMemory or None
        Secant pairs of the inner L-BFGS solve.
    curvature_floor : float
        ``mu = min_g exp(lam_g) > 0``: the penalty's curvature, so that
        ``H >= mu I`` on the penalized coefficients.
    """

    xp: object
    objective: object
    w: object
    lam: object
    hessp: object
    memory: object
    curvature_floor: float


class LinearSolveResult(NamedTuple):
    """Approximate solution of ``H v = b`` and what it cost.

    Attributes
    ----------
    solution : array of shape (n_params,)
        The approximation ``v``.
    n_hvp : int
        Hessian-vector products used (power iterations and residual checks
        included).
    n_grad : int
        Inner-gradient evaluations used.
    residual : float or None
        Relative residual ``||H v - b|| / ||b||`` where the solver computed it,
        else None.
    state : object
        Solver-specific state; pass it back as ``state=`` on the next call for
        the same fold to warm-start.
    """

    solution: object
    n_hvp: int
    n_grad: int
    residual: object
    state: object


# What each requirement needs from an InnerSystem, and what to do without it.
_REQUIREMENTS = {
    "hvp": (
        lambda system: callable(system.hessp),
        "Hessian-vector products (system.hessp)",
        "use 'shine' (L-BFGS memory only, fallback_residual=None) or 'identity'",
    ),
    "memory": (
        lambda system: system.memory is not None,
        "the inner L-BFGS memory (system.memory is None)",
        "solve the inner problem with L-BFGS keeping its memory, or use 'cg' "
        "(Hessian-vector products only)",
    ),
    "gradient": (
        lambda system: (
            callable(getattr(system.objective, "value_and_grad", None))
            and callable(getattr(system.objective, "hessp", None))
        ),
        "inner gradients and Hessian-vector products away from w "
        "(objective.value_and_grad and objective.hessp)",
        "use 'neumann', the same polynomial in H evaluated at w only",
    ),
    "hessian": (
        lambda system: callable(getattr(system.objective, "hessian", None)),
        "a dense Hessian (objective.hessian)",
        "use 'cg' to solve to the same tolerance with Hessian-vector products",
    ),
}


def check_positive_int(name, value):
    """Return ``value`` if it is an integer >= 1, else raise a ValueError."""
    return _check_int(name, value, 1)


def check_nonnegative_int(name, value):
    """Return ``value`` if it is an integer >= 0, else raise a ValueError."""
    return _check_int(name, value, 0)


def _check_int(name, value, low):
    if isinstance(value, bool) or not isinstance(value, Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")
    return int(value)


def check_positive_float(name, value, *, allow_none=False):
    """Return ``value`` as a float if it is finite and > 0, else raise (a
    bool is no number here)."""
    if value is None and allow_none:
        return None
    try:
        number = math.nan if isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}.")
    return number


def relative_residual(xp, Hv, b, b_norm):
    """``||H v - b|| / ||b||`` as a Python float."""
    return to_float(norm(xp, Hv - b)) / b_norm


class LinearSolver:
    """Base class of the solvers of ``H v = b``.

    Subclasses set ``name`` and ``requires`` and implement ``_solve``; the
    public :meth:`solve` validates its arguments, checks the system's
    capabilities and handles ``b = 0`` once for all of them.

    Attributes
    ----------
    name : str
        The name accepted by :func:`get_linear_solver`.
    requires : frozenset of str
        Subset of ``{"hvp", "memory", "gradient", "hessian"}`` that the solver
        needs from the :class:`InnerSystem`.
    opa : bool
        True when the solver wants the inner L-BFGS to add secant pairs along
        ``b`` (outer-problem awareness, Ramzi et al. 2022); the caller does it.
    """

    name = None
    requires = frozenset()
    opa = False

    def __repr__(self):
        params = ", ".join(f"{key}={value!r}" for key, value in vars(self).items())
        return f"{type(self).__name__}({params})"

    def check_system(self, system):
        """Raise a ValueError naming what ``system`` lacks for this solver."""
        for requirement in sorted(self.requires):
            available, what, instead = _REQUIREMENTS[requirement]
            if not available(system):
                raise ValueError(
                    f"Linear solver {self.name!r} needs {what}, which the inner "
                    f"system does not provide; {instead}."
                )

    def solve(self, system, b, *, tol=1e-3, state=None):
        """Approximately solve ``H v = b``.

        Parameters
        ----------
        system : InnerSystem
            The inner problem at its (approximate) solution.
        b : array of shape (n_params,)
            Right-hand side, the gradient of the outer loss.
        tol : float, default=1e-3
            Target relative residual: ``||H v - b|| <= tol * ||b||``. Solvers
            with a fixed cost (identity, truncated, exact) ignore it.
        state : object, default=None
            The ``state`` of this solver's previous result for the same fold.

        Returns
        -------
        LinearSolveResult
            With a zero ``b``, ``v = 0`` at no cost. With a non-finite ``b``,
            ``v`` is NaN and the residual NaN, so that the caller rejects the
            step rather than crash.
        """
        tol = float(tol)
        if not tol >= 0:
            raise ValueError(f"tol must be >= 0, got {tol!r}.")
        self.check_system(system)
        if tuple(b.shape) != tuple(system.w.shape):
            raise ValueError(
                f"b has shape {tuple(b.shape)}, expected the shape of w "
                f"{tuple(system.w.shape)}."
            )
        xp = system.xp
        b_norm = to_float(norm(xp, b))
        if b_norm == 0.0:
            return LinearSolveResult(xp.zeros_like(b), 0, 0, 0.0, state)
        if not math.isfinite(b_norm):
            return LinearSolveResult(b * math.nan, 0, 0, math.nan, state)
        return self._solve(system, b, b_norm=b_norm, tol=tol, state=state)

    def _solve(self, system, b, *, b_norm, tol, state):
        raise NotImplementedError
