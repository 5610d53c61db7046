"""The outer objective ``h(lambda)``: mean validation loss over cross-validation folds.

Each fold keeps its inner solution, its L-BFGS memory and its linear-solver
state between outer iterations, so every evaluation is warm-started from the
previous one: the whole search costs a small multiple of one cross-validated
fit. The folds are solved by :func:`._fold_eval.evaluate_fold`, a pure
function of a fold's data and warm start, on the active joblib backend: threads
by default, the workers of a dask or ray cluster when the user activates one.
"""

import contextlib
import functools
import time
from typing import NamedTuple

import numpy as np
from joblib import Parallel, delayed, effective_n_jobs

from . import _fold_eval
from ._fold_eval import FoldSettings, evaluate_fold, initial_state
from ._lockstep import Lockstep, shared_source
from ._placement import FoldPlacement, active_backend

__all__ = ["Fold", "Evaluation", "CrossValidatedProblem", "INNER_SOLVERS"]

# Solvers of the inner (training) problems.
INNER_SOLVERS = ("lbfgs", "newton-cg")
# Private switch of the lockstep solves of folds that share one matrix (tests
# and benchmarks compare them with the folds solved one after the other).
LOCKSTEP = True


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


class CrossValidatedProblem:
    """``h(lambda) = (1/K) sum_k F_k(w_k(lambda))`` over ``K`` folds.

    Parameters
    ----------
    folds : list of Fold
        One inner/outer pair per split, all on the same array namespace.
    linear_solver : LinearSolver
        Solver of the hypergradient systems.
    inner_max_iter : int, default=1000
        Iteration cap of each inner solve (L-BFGS iterations or Newton steps).
    memory_size : int, default=10
        Curvature pairs kept from each inner solve (L-BFGS's secant pairs, or
        Newton-CG's last conjugate directions and their Hessian products):
        SHINE's inverse-Hessian estimate and the next solve's warm start.
    inner_solver : {"lbfgs", "newton-cg"}, default="lbfgs"
        Solver of the inner problems. Newton-CG (exact Hessian-vector
        products, truncated CG, warm-started) converges quadratically where
        L-BFGS crawls on ill-conditioned problems (the estimators' default);
        L-BFGS is this class's default and the only one that serves
        ``"shine-opa"`` (ValueError otherwise).
    n_jobs : int or None, default=None
        Folds solved in parallel, as ``joblib.Parallel(n_jobs, prefer="threads")``
        runs them: with threads when no joblib backend is active (NumPy and
        SciPy release the GIL in the matrix products that dominate the cost),
        on the active backend otherwise (``joblib.parallel_config``: loky
        processes, a dask or ray cluster). The folds' data are shipped once
        (:mod:`._placement`); each call carries the fold's warm start and
        returns the new one. With one job in this process, folds that read
        one shared matrix of at least ``_lockstep.MIN_BYTES`` are solved in
        lockstep (:mod:`._lockstep`).
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

    Attributes
    ----------
    folds : list of Fold
        The folds, as given.
    states : list of FoldState
        Each fold's warm start (its last inner solution ``w``, L-BFGS memory,
        linear-solver state), replaced at every evaluation.
    n_folds : int
    n_hyper : int
        Hyperparameters (the length of ``lambda``).
    """

    def __init__(
        self,
        folds,
        linear_solver,
        *,
        inner_max_iter=1000,
        memory_size=10,
        inner_solver="lbfgs",
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
        if inner_solver not in INNER_SOLVERS:
            raise ValueError(
                f"inner_solver must be one of {INNER_SOLVERS}, got {inner_solver!r}."
            )
        if getattr(linear_solver, "opa", False) and inner_solver != "lbfgs":
            raise ValueError(
                f"The hypergradient solver {linear_solver.name!r} adds secant pairs "
                "along the validation gradient during the inner L-BFGS iterations; "
                f"inner_solver={inner_solver!r} makes none. Use inner_solver='lbfgs' "
                "with it, or another hypergradient solver."
            )
        self.inner_solver = inner_solver
        self.n_jobs = n_jobs
        self.correct_values = correct_values
        self.states = [initial_state(fold) for fold in self.folds]
        self._placement = FoldPlacement(self.folds)
        self._parallel = None
        source = shared_source(self.folds) if LOCKSTEP else None
        self._lockstep = None if source is None else Lockstep(source)

    @property
    def n_folds(self):
        return len(self.folds)

    def solutions(self):
        """Current inner solution of every fold (arrays of the data's namespace)."""
        return [state.w for state in self.states]

    def _new_parallel(self):
        # One fold per task: each is a whole solve, worth a dispatch of its own.
        return Parallel(n_jobs=self.n_jobs, prefer="threads", batch_size=1)

    @contextlib.contextmanager
    def parallel(self):
        """Run the evaluations inside the block on one ``joblib.Parallel``.

        Its workers start once for the block instead of at every evaluation:
        free for threads and dask, whose workers outlive a call, but ray's
        joblib backend otherwise starts a new pool of actors per evaluation
        (seconds each). Nested blocks share the outer one.
        """
        if self._parallel is not None:
            yield self
            return
        with self._new_parallel() as parallel:
            self._parallel = parallel
            try:
                yield self
            finally:
                self._parallel = None

    def evaluate(
        self,
        lam,
        *,
        inner_tol=1e-4,
        linear_tol=1e-3,
        gradient=True,
        newton=None,
        per_sample=False,
        floor=None,
        retry_tol=None,
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
        newton : bool or None, default=None
            Solve the inner problems by Newton-CG (True) or L-BFGS (False);
            None follows ``inner_solver``. Newton-CG is faster for tight
            re-solves from a nearby solution (the polish of a best point); an
            L-BFGS search's memory is kept through it for the next
            evaluation.
        per_sample : bool, default=False
            For the log-losses, scikit-learn's gradient test: ``inner_tol``
            bounds the largest gradient entry per unit of training weight
            (``max |grad G| <= inner_tol * sum of weights``) instead of the
            gradient's norm relative to the gradient at zero. The inner
            objective is scikit-learn's times the weight sum, so this is the
            test of ``LogisticRegression(tol=inner_tol)`` (L-BFGS). A squared
            loss's gradient carries the units of ``X`` and ``y``: its test
            stays relative.
        floor : float or None, default=None
            For the log-losses, an accuracy no solve needs to exceed: a fold
            also stops once no gradient entry per unit of training weight is
            above ``floor`` (scikit-learn's test at ``tol=floor``), however
            small ``inner_tol`` is relative to the gradient at zero. None:
            ``inner_tol`` alone.
        retry_tol : float or None, default=None
            A fold whose solve meets ``inner_tol`` in more than one inner
            iteration goes on, from where it stopped and within what is left
            of ``inner_max_iter``, to ``retry_tol``, before its value and
            hypergradient are computed: a loose ``inner_tol`` that one step
            meets is the mark of the flat, strongly penalized end, where the
            loose value is accurate; elsewhere it is not. The folds' costs
            (``inner_iter``, ``n_fun``) include both solves, and
            ``inner_converged`` is then the test at ``retry_tol``. None, or a
            value not below ``inner_tol``: ``inner_tol`` alone.
        """
        start = time.perf_counter()
        lam = np.asarray(lam, dtype=np.float64).reshape(-1)
        if lam.shape != (self.n_hyper,):
            raise ValueError(
                f"lambda must have shape ({self.n_hyper},), got {lam.shape}."
            )
        if not np.all(np.isfinite(lam)):
            raise ValueError("lambda must be finite.")
        settings = FoldSettings(
            linear_solver=self.linear_solver,
            inner_max_iter=self.inner_max_iter,
            memory_size=self.memory_size,
            correct_values=self.correct_values,
            inner_tol=inner_tol,
            linear_tol=linear_tol,
            gradient=gradient,
            newton=self.inner_solver == "newton-cg" if newton is None else newton,
            per_sample=per_sample,
            newton_pairs=self.inner_solver == "newton-cg",
            floor=floor,
            retry_tol=retry_tol,
            single=_fold_eval._SINGLE,
        )
        # the folds themselves where the backend runs calls in this process
        folds = self._placement.handles(active_backend())
        if effective_n_jobs(self.n_jobs) == 1 and folds is self._placement.folds:
            calls = [
                functools.partial(evaluate_fold, fold, state, lam, settings)
                for fold, state in zip(folds, self.states)
            ]
            if self._lockstep is not None:
                # one process, one fold at a time: the folds' products with
                # the matrix they share are grouped (see ._lockstep)
                results = self._lockstep.run(calls)
            else:
                # what joblib does with one job, less its dispatch (0.4 ms
                # an evaluation, measured on digits' five folds)
                results = [call() for call in calls]
        else:
            parallel = self._parallel
            if parallel is None:
                parallel = self._new_parallel()
            results = parallel(
                delayed(evaluate_fold)(fold, state, lam, settings)
                for fold, state in zip(folds, self.states)
            )
        self.states = [r.state for r in results]
        values = np.array([r.value for r in results])
        residuals = [r.residual for r in results if r.residual is not None]
        return Evaluation(
            lam=lam,
            value=float(values.mean()),
            grad=np.mean([r.grad for r in results], axis=0) if gradient else None,
            fold_values=values,
            inner_iter=sum(r.n_iter for r in results),
            n_fun=sum(r.n_fun for r in results) + sum(r.n_grad for r in results),
            n_hvp=sum(r.n_hvp for r in results),
            inner_converged=all(r.converged for r in results),
            residual=max(residuals) if residuals else None,
            time=time.perf_counter() - start,
            corrected=all(r.corrected for r in results),
        )
