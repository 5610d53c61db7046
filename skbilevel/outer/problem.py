"""The outer objective ``h(lambda)``: mean validation loss over cross-validation folds.

Each fold keeps its inner solution, its L-BFGS memory and its linear-solver
state between outer iterations, so every evaluation is warm-started from the
previous one: the whole search costs a small multiple of one cross-validated
fit.
"""

import time
from typing import NamedTuple

import numpy as np
from joblib import Parallel, delayed

from ..hypergrad.implicit import hypergradient
from ..solvers import LBFGSMemory, minimize_lbfgs, minimize_newton_cg
from ..utils._array_api import device_of, to_numpy

__all__ = ["Fold", "Evaluation", "CrossValidatedProblem"]

# The first-order correction of F by -v'g (see CrossValidatedProblem) is applied
# when the linear solve H v = grad F has at most this relative residual...
_CORRECTION_RESIDUAL = 0.1
# ... and the correction is at most this fraction of F.
_CORRECTION_RELATIVE = 0.05


class Fold(NamedTuple):
    """The inner training objective and the outer validation loss of one split.

    Attributes
    ----------
    inner : InnerObjective
        Regularized training loss ``G(w, lambda)`` on the training samples.
    outer : ValidationLoss
        Mean loss ``F(w)`` on the validation samples.
    """

    inner: object
    outer: object


class Evaluation(NamedTuple):
    """``h(lambda)``, its hypergradient and what they cost.

    Attributes
    ----------
    lam : ndarray of shape (n_hyper,)
        Where ``h`` was evaluated.
    value : float
        ``h(lambda)``, the mean over folds of the validation loss.
    grad : ndarray of shape (n_hyper,) or None
        Hypergradient of ``h`` (None when not asked for).
    fold_values : ndarray of shape (n_folds,)
        Validation loss of each fold.
    inner_iter : int
        L-BFGS iterations, summed over folds.
    n_fun : int
        Inner objective evaluations (value and gradient), summed over folds.
    n_hvp : int
        Hessian-vector products of the linear solves, summed over folds.
    inner_converged : bool
        Whether every fold's inner solve met its tolerance.
    corrected : bool
        Whether every fold's value carries the first-order correction for the
        inexact inner solve (see :class:`CrossValidatedProblem`).
    residual : float or None
        Largest relative residual of the linear solves, where computed.
    time : float
        Wall time of the evaluation, in seconds.
    """

    lam: np.ndarray
    value: float
    grad: object
    fold_values: np.ndarray
    inner_iter: int
    n_fun: int
    n_hvp: int
    inner_converged: bool
    residual: object
    time: float
    corrected: bool = False


class _FoldState:
    """Mutable warm-start state of one fold."""

    def __init__(self, fold):
        inner = fold.inner
        self.w = inner.model.zeros()
        self.memory = None
        self.solver_state = None
        self.penalty_curvature = None
        # ||dG/dw(0)|| does not depend on lambda (the penalty's gradient vanishes
        # at 0): a fixed scale for the relative stopping test of every solve.
        lam0 = inner.xp.zeros(
            inner.n_hyper, dtype=inner.model.dtype, device=device_of(inner.model.X)
        )
        grad0 = inner.value_and_grad(self.w, lam0)[1]
        self.gradient_scale = max(float(inner.xp.sum(grad0 * grad0)) ** 0.5, 1e-300)


def _shift_memory(xp, memory, curvature_change):
    """Update secant pairs for a new ``lambda`` without re-evaluating anything.

    ``lambda`` enters ``G`` only through ``1/2 sum_j c_j w_j^2`` with
    ``c_j = exp(lambda_{g(j)})``, so the Hessian changes by exactly
    ``diag(c_new - c_old)``: a pair ``(s, y)`` of the old problem becomes
    ``(s, y + (c_new - c_old) * s)`` up to the data term's variation along the
    step. Pairs whose curvature turns non-positive are dropped.
    """
    pairs = []
    for s, y in zip(memory.s, memory.y):
        y_new = y + curvature_change * s
        sy = xp.sum(s * y_new)
        if float(sy) > 1e-10 * float(xp.sum(y_new * y_new)):
            pairs.append((s, y_new, sy))
    return LBFGSMemory(
        tuple(p[0] for p in pairs),
        tuple(p[1] for p in pairs),
        tuple(p[2] for p in pairs),
    )


class CrossValidatedProblem:
    """``h(lambda) = (1/K) sum_k F_k(w_k(lambda))`` over ``K`` folds.

    Parameters
    ----------
    folds : list of Fold
        One inner/outer pair per split, all on the same array namespace.
    linear_solver : LinearSolver
        Solver of the hypergradient systems.
    inner_max_iter : int, default=1000
        Iteration cap of each inner L-BFGS solve.
    memory_size : int, default=10
        Secant pairs kept by the inner L-BFGS (and used by SHINE).
    n_jobs : int or None, default=None
        Folds solved in parallel, with threads (NumPy and SciPy release the GIL
        in the matrix products that dominate the cost).
    correct_values : bool, default=True
        Correct each fold's validation loss for the inexactness of its inner
        solve. At an approximate solution ``w`` with training gradient
        ``g = dG/dw(w) != 0``, one Newton step ``-H^{-1} g`` is a better
        estimate of ``w(lambda)``, and to first order
        ``F(w(lambda)) ~ F(w) - grad F' H^{-1} g = F(w) - v' g``, where
        ``v = H^{-1} grad F`` is the solution of the hypergradient's own
        linear system: the correction costs one dot product, and leaves an
        error of second order in ``g`` instead of first (in each fold; the
        mean over folds can gain less where the folds' errors cancel). It
        makes values computed at different inner tolerances comparable (the
        outer search compares them to accept or reject a step). Applied to a
        fold when its inner solve converged, its linear solve reports a
        relative residual of at most 0.1, and the correction is at most 5% of
        the value (beyond, the solution is too rough for a first-order
        estimate); values computed without a hypergradient are not corrected.
        :attr:`Evaluation.corrected` says whether every fold was.
    """

    def __init__(
        self,
        folds,
        linear_solver,
        *,
        inner_max_iter=1000,
        memory_size=10,
        n_jobs=None,
        correct_values=True,
    ):
        if not folds:
            raise ValueError("At least one fold is needed.")
        n_hyper = {fold.inner.n_hyper for fold in folds}
        if len(n_hyper) != 1:
            raise ValueError("Every fold must have the same number of hyperparameters.")
        self.folds = list(folds)
        self.n_hyper = n_hyper.pop()
        self.linear_solver = linear_solver
        self.inner_max_iter = inner_max_iter
        self.memory_size = memory_size
        self.n_jobs = n_jobs
        self.correct_values = correct_values
        self.states = [_FoldState(fold) for fold in self.folds]

    @property
    def n_folds(self):
        return len(self.folds)

    def solutions(self):
        """Current inner solution of every fold (arrays of the data's namespace)."""
        return [state.w for state in self.states]

    def _solve_fold(self, fold, state, lam, inner_tol, linear_tol, gradient, newton):
        inner, outer = fold.inner, fold.outer
        xp = inner.xp
        lam_dev = xp.asarray(
            lam, dtype=inner.model.dtype, device=device_of(inner.model.X)
        )
        curvature = inner.penalty_curvature(lam_dev)
        memory = state.memory
        if memory is not None and len(memory):
            memory = _shift_memory(xp, memory, curvature - state.penalty_curvature)
        secant_direction = None
        if gradient and self.linear_solver.opa:

            def secant_direction(w):
                return outer.value_and_grad(w)[1]

        if newton:
            result = minimize_newton_cg(
                lambda w: inner.value_and_grad(w, lam_dev),
                lambda w: inner.hessp(w, lam_dev),
                state.w,
                tol=inner_tol,
                gtol_scale=state.gradient_scale,
                max_iter=self.inner_max_iter,
                memory=memory,
            )
        else:
            result = minimize_lbfgs(
                lambda w: inner.value_and_grad(w, lam_dev),
                state.w,
                tol=inner_tol,
                gtol_scale=state.gradient_scale,
                max_iter=self.inner_max_iter,
                memory_size=self.memory_size,
                memory=memory,
                secant_direction=secant_direction,
            )
        state.w, state.memory, state.penalty_curvature = (
            result.x,
            result.memory,
            curvature,
        )
        if not gradient:
            return float(outer.value(result.x)), None, result, None, False
        fold_grad = hypergradient(
            inner,
            outer,
            result.x,
            lam_dev,
            self.linear_solver,
            tol=linear_tol,
            memory=result.memory,
            state=state.solver_state,
        )
        state.solver_state = fold_grad.solve.state
        grad = np.asarray(to_numpy(fold_grad.grad), dtype=np.float64)
        value = float(fold_grad.value)
        solve = fold_grad.solve
        corrected = False
        if (
            self.correct_values
            and result.converged
            and solve.residual is not None
            and solve.residual <= _CORRECTION_RESIDUAL
        ):
            correction = float(xp.sum(solve.solution * result.grad))
            # First order only: a correction that is not small next to F says
            # the inner solution is too rough for it (it would overshoot).
            if abs(correction) <= _CORRECTION_RELATIVE * abs(value):
                value -= correction
                corrected = True
        return value, grad, result, solve, corrected

    def evaluate(
        self, lam, *, inner_tol=1e-4, linear_tol=1e-3, gradient=True, newton=False
    ):
        """Solve every fold at ``lam`` (warm-started) and return :class:`Evaluation`.

        Parameters
        ----------
        lam : array-like of shape (n_hyper,)
            Log penalty strengths.
        inner_tol : float
            Relative gradient-norm tolerance of the inner solves.
        linear_tol : float
            Relative residual tolerance of the hypergradient linear solves.
        gradient : bool, default=True
            Whether to compute the hypergradient.
        newton : bool, default=False
            Solve the inner problems by Newton-CG instead of L-BFGS: faster
            for tight re-solves from a nearby solution (the polish of a best
            point); the L-BFGS memory is kept for the next evaluation.
        """
        start = time.perf_counter()
        lam = np.asarray(lam, dtype=np.float64).reshape(-1)
        if lam.shape != (self.n_hyper,):
            raise ValueError(
                f"lambda must have shape ({self.n_hyper},), got {lam.shape}."
            )
        if not np.all(np.isfinite(lam)):
            raise ValueError("lambda must be finite.")
        args = [
            (fold, state, lam, inner_tol, linear_tol, gradient, newton)
            for fold, state in zip(self.folds, self.states)
        ]
        if self.n_jobs in (None, 1) or self.n_folds == 1:
            results = [self._solve_fold(*a) for a in args]
        else:
            results = Parallel(n_jobs=self.n_jobs, require="sharedmem")(
                delayed(self._solve_fold)(*a) for a in args
            )
        values = np.array([r[0] for r in results])
        grad = np.mean([r[1] for r in results], axis=0) if gradient else None
        solves = [r[3] for r in results if r[3] is not None]
        residuals = [s.residual for s in solves if s.residual is not None]
        return Evaluation(
            lam=lam,
            value=float(values.mean()),
            grad=grad,
            fold_values=values,
            inner_iter=sum(r[2].n_iter for r in results),
            n_fun=sum(r[2].n_fun for r in results) + sum(s.n_grad for s in solves),
            n_hvp=sum(s.n_hvp for s in solves),
            inner_converged=all(r[2].converged for r in results),
            residual=max(residuals) if residuals else None,
            time=time.perf_counter() - start,
            corrected=all(r[4] for r in results),
        )
