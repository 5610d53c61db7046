"""One fold's share of ``h(lambda)``: a pure function of its data and warm start.

:func:`evaluate_fold` reads the fold's data and returns the new warm start
instead of mutating anything, so it runs wherever a joblib backend sends it
(a thread, a process, a dask or ray worker): the data are shipped to the
workers once (:mod:`._placement`), the state -- ``O(memory_size * n_params)``
floats, against ``O(nnz(X))`` for the data -- travels with each call and
comes back with its result.

A squared-loss fold with few features is solved directly instead
(:mod:`skbilevel.solvers.direct`): one factorization of the Hessian gives the
exact inner solution and, by :class:`~skbilevel.hypergrad.direct.DirectSolver`, the
hypergradient's ``v``, whatever linear solver the settings name; its costs
read one inner iteration and no HVP. The factorization's data part stays
where the fold's data are, not in the state.
"""

import threading
import time
from typing import NamedTuple

import numpy as np

from ..hypergrad.direct import DirectSolver
from ..hypergrad.implicit import hypergradient, single_hessp
from ..objectives.linear import SINGLE_MAX_ERROR
from ..solvers import LBFGSMemory, empty_memory, minimize_lbfgs, minimize_newton_cg
from ..solvers._memory import stacked_memory
from ..solvers.direct import direct_factor
from ..utils._array_api import to_numpy
from ._placement import resolve

__all__ = [
    "FoldResult",
    "FoldSettings",
    "FoldState",
    "evaluate_fold",
    "evaluations_in_this_process",
    "gradient_test",
    "initial_state",
]

# The first-order correction of F by -v'g (see CrossValidatedProblem) is applied
# when the linear solve H v = grad F has at most this relative residual...
_CORRECTION_RESIDUAL = 0.1
# ... and the correction is at most this fraction of F.
_CORRECTION_RELATIVE = 0.05
# Private switch of the direct solve of squared-loss folds (tests and
# benchmarks compare it with the iterative engine by setting it to False).
_DIRECT = True
# Private switch of single-precision Hessian products in the loose solves of
# a search (objectives.linear.SINGLE_MAX_ERROR); tests compare with it off.
_SINGLE = True
# The tightest linear tolerance of a hypergradient solve with single-precision
# products: twice the error they are allowed (SINGLE_MAX_ERROR). It is HOAG's
# cap on the linear tolerance (outer.hoag.LINEAR_CAP), where the searches'
# hypergradients are solved: a lower cap would turn them to double precision.
SINGLE_LINEAR_TOL = 2 * SINGLE_MAX_ERROR
# The tightest inner tolerance of a solve with single-precision products
# (Newton's loose steps, see solvers.newton): tighter, the conjugate
# gradients would refine an inexact operator.
SINGLE_INNER_TOL = 1e-7


class FoldState(NamedTuple):
    """Warm start of one fold between evaluations.

    Attributes
    ----------
    w : array of shape (n_params,)
        Last inner solution (namespace and device of the fold's data).
    memory : LBFGSMemory or None
        Secant pairs of the last inner solve.
    solver_state : object
        The linear solver's state of the last hypergradient solve.
    gradient_scale : float or None
        ``||dG/dw(0)||``: the scale of every relative stopping test; None until
        the first evaluation computes it where the data are.
    lam : ndarray of shape (n_hyper,) or None
        ``lambda`` of the last solve (NumPy), None before the first: the
        penalty's curvature there shifts ``memory`` to a new ``lambda``.
    previous : tuple or None
        ``(w, lam)`` of the solve before it at another ``lambda``: with the
        last one, the secant of the solution path that predicts the next
        start (see :func:`_predicted_start`).
    data_value : float or None
        The data part of ``G(w, lam)`` (``G`` less the penalty) at the last
        solve: ``G(w, lam')`` at any other ``lam'`` without a product.
    """

    w: object
    memory: object = None
    solver_state: object = None
    gradient_scale: object = None
    lam: object = None
    previous: object = None
    data_value: object = None


class FoldSettings(NamedTuple):
    """What one evaluation asks of every fold (small: it travels with each call).

    Attributes
    ----------
    linear_solver : LinearSolver
    inner_max_iter : int
    memory_size : int
    correct_values : bool
    inner_tol, linear_tol : float
    gradient, newton, per_sample : bool
        See :meth:`CrossValidatedProblem.evaluate`.
    newton_pairs : bool
        With ``newton``: keep the last step's conjugate-gradient curvature
        pairs as the fold's memory (the inner solver is Newton-CG), instead
        of the L-BFGS pairs it came with (a polish of an L-BFGS search).
    floor, retry_tol : float or None
        See :meth:`CrossValidatedProblem.evaluate`.
    single : bool
        Hessian products in single precision where the fold's objective
        offers them and their error allows: Newton's steps to
        ``SINGLE_INNER_TOL`` or looser (their gradient test stays in double
        precision) and hypergradients solved to ``SINGLE_LINEAR_TOL`` or
        looser.
    """

    linear_solver: object
    inner_max_iter: int
    memory_size: int
    correct_values: bool
    inner_tol: float
    linear_tol: float
    gradient: bool
    newton: bool
    per_sample: bool = False
    newton_pairs: bool = False
    floor: float | None = None
    retry_tol: float | None = None
    single: bool = False


class FoldResult(NamedTuple):
    """Validation loss, hypergradient, new warm start and costs of one fold.

    Attributes
    ----------
    value : float
        ``F(w)``, corrected to first order when ``corrected``.
    grad : ndarray of shape (n_hyper,) or None
        Hypergradient (NumPy float64), None when not asked for.
    state : FoldState
        Warm start for the next evaluation.
    n_iter, n_fun : int
        Inner solver iterations and objective evaluations.
    n_grad, n_hvp : int
        Inner gradients and Hessian-vector products of the linear solve.
    converged : bool
        Whether the inner solve met its tolerance.
    residual : float or None
        Relative residual of the linear solve, where computed.
    corrected : bool
        Whether ``value`` carries the first-order correction.
    time : float
        Wall time of the evaluation where it ran, in seconds (in lockstep
        with other folds, their turns included).
    """

    value: float
    grad: object
    state: FoldState
    n_iter: int
    n_fun: int
    n_grad: int
    n_hvp: int
    converged: bool
    residual: object
    corrected: bool
    time: float


_counter_lock = threading.Lock()
_evaluations = 0


def evaluations_in_this_process():
    """Number of :func:`evaluate_fold` calls run by this process so far.

    Where a joblib backend sent the folds is observable with it: on a dask
    cluster, ``client.run(evaluations_in_this_process)`` counts them on each
    worker.
    """
    return _evaluations


def initial_state(fold):
    """The cold start of ``fold`` (zero weights; nothing else known yet)."""
    return FoldState(fold.inner.model.zeros())


def _gradient_scale(inner):
    # ||dG/dw(0)|| does not depend on lambda (the penalty's gradient vanishes
    # at 0): a fixed scale for the relative stopping test of every solve.
    lam0 = inner.xp.zeros(
        inner.n_hyper, dtype=inner.model.dtype, device=inner.model.device
    )
    grad0 = inner.value_and_grad(inner.model.zeros(), lam0)[1]
    return max(float(inner.xp.sum(grad0 * grad0)) ** 0.5, 1e-300)


def _absolute_tests_apply(inner):
    """Whether a test on the gradient per unit of training weight means
    anything: for the log-losses; a squared loss's gradient carries the
    units of ``X`` and ``y``, which an absolute test would make meaningless."""
    return getattr(inner.loss, "name", None) != "squared"


def gradient_test(inner, per_sample, scale=None):
    """``(gtol_scale, gtol_norm)``: the gradient test of a solve at ``inner_tol``.

    ``||grad G|| <= inner_tol * scale`` by default, ``scale`` being
    ``||dG/dw(0)||`` (:func:`_gradient_scale`; computed when None). With
    ``per_sample``, scikit-learn's test where it applies (the log-losses, see
    :func:`_absolute_tests_apply`): the largest entry against the training
    weights' sum (scikit-learn's objectives are ours divided by it, so
    ``max |grad G| <= tol * total`` is ``LogisticRegression``'s L-BFGS test at
    ``tol``, see :func:`~skbilevel.solvers.minimize_newton_cg`).
    """
    if per_sample and _absolute_tests_apply(inner):
        return inner.weight_total, "max"
    return (_gradient_scale(inner) if scale is None else scale), "l2"


def _shift_memory(xp, memory, curvature_change):
    """Update secant pairs for a new ``lambda`` without re-evaluating anything.

    ``lambda`` enters ``G`` only through ``1/2 sum_j c_j w_j^2`` with
    ``c_j = exp(lambda_{g(j)})``, so the Hessian changes by exactly
    ``diag(c_new - c_old)``: a pair ``(s, y)`` of the old problem becomes
    ``(s, y + (c_new - c_old) * s)`` up to the data term's variation along the
    step. Pairs whose curvature turns non-positive are dropped. No change
    (None): ``memory`` as it is. A stacked memory (Newton-CG's) gives a
    stacked one: its old matrix, the old ``y`` included, is not held by the
    new pairs' ``s``.
    """
    if curvature_change is None:
        return memory
    pairs = []
    for s, y in zip(memory.s, memory.y):
        y_new = y + curvature_change * s
        sy = xp.sum(s * y_new)
        if float(sy) > 1e-10 * float(xp.sum(y_new * y_new)):
            pairs.append((s, y_new, sy))
    s, y, sy = (tuple(p[i] for p in pairs) for i in range(3))
    if memory.stacked is not None:
        return stacked_memory(xp, s, y, sy)
    return LBFGSMemory(s, y, sy)


def _corrected(xp, value, inner_grad, solve):
    """``(F - v'g, True)`` where the first-order correction applies, else
    ``(F, False)`` (see :class:`~skbilevel.outer.CrossValidatedProblem`)."""
    if solve.residual is None or solve.residual > _CORRECTION_RESIDUAL:
        return value, False
    correction = float(xp.sum(solve.solution * inner_grad))
    # First order only: a correction that is not small next to F says the
    # inner solution is too rough for it (it would overshoot).
    if abs(correction) > _CORRECTION_RELATIVE * abs(value):
        return value, False
    return value - correction, True


def _moved(state, lam_host):
    """Whether ``lambda`` changed since the warm start was solved."""
    return state.lam is None or not np.array_equal(state.lam, lam_host)


# The secant predictor extrapolates at most this many last steps ahead (and
# interpolates back at most one): beyond, a line through two solutions says
# little about a third.
_MAX_EXTRAPOLATION = 2.0


def _predicted_start(inner, state, lam, lam_host):
    """The warm start at ``lam``: the last solution, or its secant prediction.

    The solutions ``w(lambda)`` form a smooth path; the last two solves at
    different ``lambda`` give its secant, ``w + tau (w - w_prev)`` with
    ``tau`` the new step over the last one (projected on it for several
    penalties, clipped to [-1, 2]). Along HOAG's gradient steps, where
    consecutive ``lambda`` are close, the prediction starts the Newton solve
    much nearer its solution than the last one does. It is kept only when
    the training objective at ``lam`` is lower there: far from the path's
    straight stretches the plain warm start wins. The comparison costs one
    product with ``X`` (the prediction's; the last solution's value at
    ``lam`` follows from its data part), which the solver's first
    evaluation reuses when the prediction wins.

    Returns ``(start, n_fun)``, ``n_fun`` the objective evaluations spent.
    """
    if state.previous is None or state.lam is None:
        return state.w, 0
    w_prev, lam_prev = state.previous
    last_step = state.lam - lam_prev
    length = float(last_step @ last_step)
    tau = float((lam_host - state.lam) @ last_step) / length if length else 0.0
    tau = min(max(tau, -1.0), _MAX_EXTRAPOLATION)
    if tau == 0.0:
        return state.w, 0
    candidate = state.w + tau * (state.w - w_prev)
    # the last solution's objective from its data part (set with previous)
    plain = state.data_value + float(inner.penalty_value(state.w, lam))
    # when the candidate wins, its predictions are the ones the solver's
    # first evaluation reuses (see InnerObjective._point)
    wins = float(inner.value(candidate, lam)) < plain
    return (candidate if wins else state.w), 1


def _inner_solve(inner, outer, state, lam, lam_host, settings, moved):
    """Warm-started inner solve at ``lam``: (LBFGSResult, objective
    evaluations spent choosing the start).

    At a new ``lambda``, one step at least: near the outer minimum a short
    outer step changes the inner gradient less than a loose relative
    tolerance, and the previous solution passes the test unchanged; the
    hypergradient would then be the previous point's, and the outer step
    control would read it as zero curvature (on digits with shuffled folds,
    ten steps instead of one to settle). So would the value of a point
    re-solved without its hypergradient (the polish of a point other than
    the last): at scikit-learn's tolerance, on a flat stretch of the CV
    curve, a neighbour's solution passes, and the point's polished value
    was the neighbour's to the last bit (digits' first 300 rows, 4 folds:
    C = 19.2 re-solved from the solution at C = 25.8).
    """
    min_iter = int(moved)
    floor = None
    if settings.floor is not None and _absolute_tests_apply(inner):
        floor = settings.floor * inner.weight_total
    memory = state.memory  # None while lam is unknown (a cold start)
    has_pairs = memory is not None and len(memory) > 0
    change = None  # the penalty's curvature change; None: lam did not move
    if has_pairs and moved:
        model = inner.model
        solved_at = inner.xp.asarray(state.lam, dtype=model.dtype, device=model.device)
        change = inner.penalty_curvature(lam) - inner.penalty_curvature(solved_at)
    start, n_predict = _predicted_start(inner, state, lam, lam_host)
    gtol_scale, gtol_norm = gradient_test(
        inner, settings.per_sample, state.gradient_scale
    )
    if settings.newton:
        # Newton-CG keeping its own pairs (newton_pairs) returns the memory
        # it is given only when it made no conjugate-gradient product (that
        # very object; its own pairs are a new one, even when empty): the
        # memory is shifted then, not before every solve whose steps
        # replace it
        deferred = settings.newton_pairs and has_pairs
        given = empty_memory() if deferred else _shift_memory(inner.xp, memory, change)

        single = settings.single and settings.inner_tol >= SINGLE_INNER_TOL

        def hessp(w):
            return single_hessp(inner, w, lam, single)

        # the trial points' raw predictions from the steps' products (see
        # objectives.linear.RawTracker), where the objective offers them
        make_tracker = getattr(inner, "tracker", None)
        result = minimize_newton_cg(
            lambda w: inner.value_and_grad(w, lam),
            hessp,
            start,
            tol=settings.inner_tol,
            gtol_scale=gtol_scale,
            gtol_norm=gtol_norm,
            gtol_floor=floor,
            max_iter=settings.inner_max_iter,
            min_iter=min_iter,
            memory=given,
            memory_size=settings.memory_size if settings.newton_pairs else None,
            tracker=None if make_tracker is None else make_tracker(lam, single),
        )
        if deferred and result.memory is given:
            result = result._replace(memory=_shift_memory(inner.xp, memory, change))
        return result, n_predict
    secant_direction = None
    if settings.gradient and settings.linear_solver.opa:

        def secant_direction(w):
            return outer.value_and_grad(w)[1]

    result = minimize_lbfgs(
        lambda w: inner.value_and_grad(w, lam),
        start,
        tol=settings.inner_tol,
        gtol_scale=gtol_scale,
        gtol_norm=gtol_norm,
        gtol_floor=floor,
        max_iter=settings.inner_max_iter,
        min_iter=min_iter,
        memory_size=settings.memory_size,
        memory=_shift_memory(inner.xp, memory, change),
        secant_direction=secant_direction,
    )
    return result, n_predict


def _evaluate_direct(inner, outer, state, lam, factor, settings, start):
    """:func:`evaluate_fold` by one factorization (``factor`` at ``lam``)."""
    w = factor.minimizer()
    # exact: nothing to warm-start, no secant pairs (an iterative solve of
    # this fold, if any, starts its memory afresh)
    state = FoldState(w, gradient_scale=state.gradient_scale)
    costs = dict(n_iter=1, n_fun=0, n_grad=0, n_hvp=0, converged=True, residual=None)
    if not settings.gradient:
        return FoldResult(
            value=float(outer.value(w)),
            grad=None,
            state=state,
            **costs,
            corrected=False,
            time=time.perf_counter() - start,
        )
    fold_grad = hypergradient(inner, outer, w, lam, DirectSolver(factor))
    # The correction -v'g of an inexact solve vanishes (g is round-off): the
    # value is what a corrected one estimates, and reads as corrected.
    return FoldResult(
        value=float(fold_grad.value),
        grad=np.asarray(to_numpy(fold_grad.grad), dtype=np.float64),
        state=state,
        **costs,
        corrected=settings.correct_values,
        time=time.perf_counter() - start,
    )


def _retries(settings, result):
    """Whether the inner solve goes on to ``settings.retry_tol``: it is
    tighter than ``inner_tol``, the solve met ``inner_tol`` but took more
    than one iteration for it, and iterations are left."""
    return (
        settings.retry_tol is not None
        and settings.retry_tol < settings.inner_tol
        and result.converged
        and 1 < result.n_iter < settings.inner_max_iter
    )


def evaluate_fold(fold, state, lam, settings):
    """Solve one fold at ``lam`` from ``state``; return :class:`FoldResult`.

    Parameters
    ----------
    fold : Fold or a handle of :mod:`._placement`
        The fold's data (a handle is resolved where the call runs).
    state : FoldState
        Its warm start; not modified.
    lam : ndarray of shape (n_hyper,)
        Log penalty strengths (NumPy float64).
    settings : FoldSettings

    Returns
    -------
    FoldResult
    """
    global _evaluations
    with _counter_lock:
        _evaluations += 1
    start = time.perf_counter()
    fold = resolve(fold)
    inner, outer = fold.inner, fold.outer
    xp = inner.xp
    factor = direct_factor(inner, lam) if _DIRECT else None
    lam_host = np.asarray(lam, dtype=np.float64).reshape(-1)
    lam = xp.asarray(lam, dtype=inner.model.dtype, device=inner.model.device)
    if factor is not None:
        return _evaluate_direct(inner, outer, state, lam, factor, settings, start)
    if state.gradient_scale is None:
        state = state._replace(gradient_scale=_gradient_scale(inner))
    moved = _moved(state, lam_host)
    result, n_predict = _inner_solve(
        inner, outer, state, lam, lam_host, settings, moved
    )
    if _retries(settings, result):
        # not the flat end the loose tolerance was meant for: on to
        # retry_tol from where the solve stopped, within what is left of
        # the iteration budget. The state's lambda is the point's, so no
        # prediction is made (and none counted); moved=False: no forced
        # step, the memory kept as it is.
        resumed = state._replace(w=result.x, memory=result.memory, lam=lam_host)
        more, _ = _inner_solve(
            inner,
            outer,
            resumed,
            lam,
            lam_host,
            settings._replace(
                inner_tol=settings.retry_tol,
                retry_tol=None,
                inner_max_iter=settings.inner_max_iter - result.n_iter,
            ),
            False,
        )
        result = more._replace(
            n_iter=result.n_iter + more.n_iter, n_fun=result.n_fun + more.n_fun
        )
    previous = state.previous
    if state.lam is not None and moved:
        previous = (state.w, state.lam)
    state = state._replace(
        w=result.x,
        memory=result.memory,
        lam=lam_host,
        previous=previous,
        data_value=float(result.value) - float(inner.penalty_value(result.x, lam)),
    )
    inner_costs = dict(
        n_iter=result.n_iter,
        n_fun=result.n_fun + n_predict,
        converged=result.converged,
    )
    if not settings.gradient:
        return FoldResult(
            value=float(outer.value(result.x)),
            grad=None,
            state=state,
            **inner_costs,
            n_grad=0,
            n_hvp=0,
            residual=None,
            corrected=False,
            time=time.perf_counter() - start,
        )
    fold_grad = hypergradient(
        inner,
        outer,
        result.x,
        lam,
        settings.linear_solver,
        tol=settings.linear_tol,
        memory=result.memory,
        state=state.solver_state,
        single=settings.single and settings.linear_tol >= SINGLE_LINEAR_TOL,
    )
    solve = fold_grad.solve
    # Newton-CG's pairs served this hypergradient; the next solve at another
    # lambda takes a step (min_iter) and makes its own, so they are not kept
    # (an array of the parameters per pair and fold, beside the next
    # evaluation's); L-BFGS's are its warm start
    kept_memory = empty_memory() if settings.newton_pairs else state.memory
    value, corrected = float(fold_grad.value), False
    if settings.correct_values and result.converged:
        value, corrected = _corrected(xp, value, result.grad, solve)
    return FoldResult(
        value=value,
        grad=np.asarray(to_numpy(fold_grad.grad), dtype=np.float64),
        state=state._replace(solver_state=solve.state, memory=kept_memory),
        **inner_costs,
        n_grad=solve.n_grad,
        n_hvp=solve.n_hvp,
        residual=solve.residual,
        corrected=corrected,
        time=time.perf_counter() - start,
    )
