"""HOAG: gradient descent on ``h(lambda)`` with inexact, warm-started evaluations.

Pedregosa (2016), with the step control hardened where the reference
implementation was seen to fail (user guide, "Steps, secant curvature, rejection"):

- the step length follows the secant curvature of ``h`` (:mod:`._step`);
- every step is capped in log space and projected on the box;
- a step is accepted only if ``h`` decreases, up to a slack proportional to the
  current tolerance (the evaluations are inexact);
- an optional coarse bracket of warm-started evaluations picks the starting
  point (:mod:`._bracket`), which keeps the search out of the flat regions at
  the ends of the box;
- the best point seen is returned, whatever the last step did.
"""

import time
from typing import NamedTuple

import numpy as np

from ._bracket import interpolate_bracket, run_bracket
from ._step import DECREASE_STOP, StepControl, one_penalty_step
from .schedules import tolerance_schedule

__all__ = ["OuterResult", "hoag", "history_record"]

# The hypergradient's linear systems are solved LINEAR_SLACK times more loosely
# than the inner problems, at most to LINEAR_CAP. Their error enters the
# hypergradient linearly and the corrected CV loss only through its product
# with the inner gradient (second order); once the inner tolerance is below
# LINEAR_CAP / LINEAR_SLACK the linear tolerance follows its schedule, so the
# errors stay summable along the gradient steps. Measured on the five quick
# data sets of benchmarks/run.py (HOAGLogisticRegression on the same folds,
# LINEAR_SLACK 1 against 100): 30-51% fewer Hessian-vector products, the same
# C within 3% and CV losses within 1e-4 relative.
LINEAR_SLACK = 100.0
LINEAR_CAP = 1e-2
# A point evaluated at a loosened inner tolerance (a coarse bracket point far
# from the minimum) has its linear systems solved as many times more loosely,
# up to LINEAR_LOOSEN times LINEAR_CAP (a residual of 10%: the slope's sign
# and size survive it). Its slope still enters the line steps that use the
# point as a bracket end (the cubic, the secant, the decrease test), so the
# trade-off is the one measured here, not free.
# Measured on benchmarks/run.py's full data (HOAGLogisticRegression, the same
# folds, session script at 0676caf): Hessian-vector products of the bracket's
# first two points 30 -> 20 (sparse), 61 -> 25 (digits), 36 -> 16
# (breast_cancer), 79 -> 68 (Fashion-MNIST 0/6); the same evaluations, C
# within 1.2% (sparse 0.0776 -> 0.0785; its fit 0.615 -> 0.585 s, alternating
# fresh processes) and 3.4% on Fashion-MNIST 0/6, whose CV losses moved by
# 3e-6 relative; on Fashion-MNIST 10 classes the first point's slope moved
# by 1%, the search's secant steps with it, and it ended one evaluation
# earlier (4 against 5, 7.4 -> 6.2 s) at C = 0.0123 against 0.0119, whose
# scikit-learn CV log-losses differ by 4e-6 relative.
LINEAR_LOOSEN = 10.0


class OuterResult(NamedTuple):
    """Outcome of the outer optimization.

    Attributes
    ----------
    lam : ndarray of shape (n_hyper,)
        Best point seen (lowest ``h``).
    value : float
        ``h`` there.
    grad : ndarray of shape (n_hyper,)
        Hypergradient there.
    n_iter : int
        Gradient steps tried (accepted or rejected), bracket excluded.
    converged : bool
        Whether a stopping test (hypergradient norm or step size) was met.
    message : str
        Why the search stopped.
    history : list of dict
        One record per evaluation of ``h``, in order.
    """

    lam: np.ndarray
    value: float
    grad: np.ndarray
    n_iter: int
    converged: bool
    message: str
    history: list


def check_bounds(bounds, n_hyper):
    """``(low, high)`` -> float arrays of shape (n_hyper,), checked."""
    try:
        low, high = (np.asarray(b, dtype=np.float64) for b in bounds)
        low, high = (np.broadcast_to(b, (n_hyper,)).copy() for b in (low, high))
    except (TypeError, ValueError):
        raise ValueError(
            f"bounds must be a pair (low, high) of scalars or arrays of shape "
            f"({n_hyper},), got {bounds!r}."
        ) from None
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
        raise ValueError("The log-space bounds must be finite.")
    if np.any(low >= high):
        raise ValueError(
            f"Each lower bound must be below its upper bound, got low={low} "
            f"and high={high}."
        )
    return low, high


def history_record(
    evaluation, *, iteration, phase, accepted, step, inner_tol, elapsed, gradient_step
):
    """One entry of a search's history: an :class:`Evaluation` and its fate.

    Every search (HOAG, the closed-form ridge path, the vector search) writes
    its history with these keys, which the estimators, the progress display
    and ``cv_results_`` read.
    """
    grad = evaluation.grad
    return {
        "iteration": iteration,
        "phase": phase,
        "lam": evaluation.lam.copy(),
        "value": evaluation.value,
        "fold_values": evaluation.fold_values.copy(),
        "grad": grad.copy(),
        "grad_norm": float(np.sqrt(grad @ grad)),
        "accepted": accepted,
        "step_size": step,
        "inner_tol": inner_tol,
        "inner_iter": evaluation.inner_iter,
        "n_fun": evaluation.n_fun,
        "n_hvp": evaluation.n_hvp,
        "inner_converged": evaluation.inner_converged,
        "value_corrected": evaluation.corrected,
        "residual": evaluation.residual,
        "time": evaluation.time,
        "elapsed": elapsed,
        "gradient_step": gradient_step,
    }


class _Trace:
    """Evaluates points, records them in the history, reports decided records."""

    def __init__(self, problem, schedule, callback, max_time, floor=None):
        self.problem, self.schedule = problem, schedule
        self.callback, self.max_time = callback, max_time
        self.floor = floor
        self.history = []
        self.start = time.perf_counter()

    def run(self, point, k, phase, accepted=None, step=None, loosen=1.0, retry=None):
        """Evaluate ``h`` and its gradient at tolerance ``loosen * schedule(k)``
        (the linear systems: ``LINEAR_SLACK`` times looser, capped at
        ``LINEAR_CAP`` times ``loosen``, ``LINEAR_LOOSEN`` at most); with
        ``retry``, a fold that takes more than one inner iteration there goes
        on to ``retry * schedule(k)`` (``retry_tol`` of
        :meth:`~skbilevel.outer.CrossValidatedProblem.evaluate`)."""
        eps = min(loosen * self.schedule(k), 0.1)
        cap = LINEAR_CAP * min(max(loosen, 1.0), LINEAR_LOOSEN)
        linear_tol = min(LINEAR_SLACK * eps, cap)
        options = {}
        if retry is not None:
            options["retry_tol"] = min(retry * self.schedule(k), 0.1)
        evaluation = self.problem.evaluate(
            point, inner_tol=eps, linear_tol=linear_tol, floor=self.floor, **options
        )
        record = history_record(
            evaluation,
            iteration=len(self.history),
            phase=phase,
            accepted=accepted,
            step=step,
            inner_tol=eps,
            elapsed=time.perf_counter() - self.start,
            gradient_step=k,
        )
        self.history.append(record)
        return evaluation, record

    def report(self, record):
        """Hand a record whose fate is decided to the callback.

        Returns why the search must stop (callback, time budget), or None.
        """
        if self.callback is not None and self.callback(record):
            return "stopped by callback"
        if (
            self.max_time is not None
            and time.perf_counter() - self.start > self.max_time
        ):
            return f"time budget max_time={self.max_time} reached"
        return None


def _check_options(max_iter, **positive):
    if max_iter < 0:
        raise ValueError(f"max_iter must be >= 0, got {max_iter!r}.")
    for name, value in positive.items():
        if not value > 0:
            raise ValueError(f"{name} must be > 0, got {value!r}.")


def hoag(
    problem,
    lam0,
    *,
    bounds,
    max_iter=50,
    tol=1e-4,
    step_tol=1e-3,
    tol_schedule="exponential",
    tol_start=1e-4,
    tol_decay=0.78,
    max_step=2.0,
    init_step=1.0,
    bracket=0,
    max_time=None,
    callback=None,
    inner_floor=None,
):
    """Minimize ``h(lambda) = problem.evaluate(lambda).value`` over a box.

    Parameters
    ----------
    problem : CrossValidatedProblem
        Provides ``evaluate(lam, inner_tol=, linear_tol=, floor=)`` and
        ``n_hyper``.
    lam0 : array-like of shape (n_hyper,)
        Starting point (log penalty strengths); projected on the box.
    bounds : (array-like, array-like)
        Lower and upper bounds of ``lambda`` (scalars broadcast).
    max_iter : int, default=50
        Gradient steps (accepted or rejected) at most.
    tol : float, default=1e-4
        Stop when the projected hypergradient has a smaller norm, or when the
        decrease of ``h`` predicted by the local quadratic model is below
        ``tol * |h|`` (see :class:`~skbilevel.outer._step.StepControl`); for
        one penalty, also when the decrease predicted inside a bracket of the
        minimum is (see :func:`~skbilevel.outer._step.one_penalty_step`).
    step_tol : float, default=1e-3
        Stop when a step, accepted or proposed after a rejection, changes no
        coordinate of ``lambda`` by more than ``step_tol``.
    tol_schedule : {"exponential", "quadratic", "cubic"}, default="exponential"
    tol_start, tol_decay : float
        Schedule of the inner and linear tolerances (see
        :func:`~skbilevel.outer.schedules.tolerance_schedule`).
    max_step : float, default=2.0
        Largest change of one coordinate of ``lambda`` in one step.
    init_step : float, default=1.0
        Length (infinity norm) of the first gradient step.
    bracket : int, default=0
        If at least 2, first evaluate ``h`` at up to ``bracket`` points spread
        evenly over the box and start from the best (see
        :func:`~skbilevel.outer._bracket.run_bracket`); a bracket point
        reached by a secant step that passes the tests of ``tol`` ends the
        search there.
    max_time : float or None
        Time budget in seconds, checked after each evaluation.
    callback : callable or None
        Called with each history record once the point's fate is decided
        (``accepted`` set); a truthy return stops the search.
    inner_floor : float or None
        Passed to every evaluation as ``floor``: an accuracy no inner solve
        needs to exceed (see
        :meth:`~skbilevel.outer.CrossValidatedProblem.evaluate`); None: none.

    Returns
    -------
    OuterResult
    """
    n_hyper = problem.n_hyper
    low, high = check_bounds(bounds, n_hyper)
    _check_options(
        max_iter, tol=tol, step_tol=step_tol, max_step=max_step, init_step=init_step
    )
    schedule = tolerance_schedule(tol_schedule, start=tol_start, decay=tol_decay)
    lam = np.clip(np.asarray(lam0, dtype=np.float64).reshape(-1), low, high)
    if lam.shape != (n_hyper,):
        raise ValueError(f"lam0 must have shape ({n_hyper},), got {lam.shape}.")
    trace = _Trace(problem, schedule, callback, max_time, inner_floor)

    current, planned = None, None
    if bracket >= 2:
        outcome = run_bracket(trace, low, high, bracket, tol=tol)
        if outcome.stop is not None:
            return _finish(trace.history, outcome.best, False, outcome.stop)
        if outcome.converged is not None:
            return _finish(trace.history, outcome.best, True, outcome.converged)
        current = outcome.best
        init_step = min(init_step, outcome.spacing / 2)
        if n_hyper > 1:
            # (one penalty: one_penalty_step interpolates the same cubic)
            planned = interpolate_bracket(outcome, low, high)
    if current is None:
        current, record = trace.run(lam, 0, "start", accepted=True)
        stop = trace.report(record)
        if stop is not None:
            return _finish(trace.history, current, False, stop)

    control = StepControl(
        low, high, tol=tol, step_tol=step_tol, max_step=max_step, init_step=init_step
    )
    best, lam = current, current.lam
    message, converged = f"max_iter={max_iter} reached", False
    for k in range(1, max_iter + 1):
        g = current.grad
        reason = control.converged(lam, g, current.value)
        if reason is not None:
            message, converged = reason, True
            break
        line = None
        if n_hyper == 1:
            lowest = (float(best.lam[0]), best.value, float(best.grad[0]))
            line = one_penalty_step(lowest, _line_points(trace.history), max_step)
        if line is not None:
            if line.decrease is not None and line.decrease <= tol * abs(best.value):
                message, converged = DECREASE_STOP, True
                break
            # the step leaves from the lowest point (after a rejection, or
            # a slack acceptance, the current point is another)
            current, lam, g = best, best.lam, best.grad
            candidate = np.clip(np.full(lam.shape, line.lam), low, high)
        elif planned is not None:
            candidate, planned = planned, None
        else:
            candidate = control.propose(lam, g)
        moved = candidate - lam
        if control.too_short(moved):
            message, converged = "step below step_tol", True
            break
        step = control.step_size
        if line is not None and g[0] != 0:
            step = abs(float(moved[0] / g[0]))  # the 1 / L of the step taken
        trial, record = trace.run(candidate, k, "gradient", step=step)
        curvature = float((trial.grad - g) @ moved / (moved @ moved))
        if trial.value <= current.value + schedule(k) * abs(current.value):
            record["accepted"] = True
            current, lam = trial, candidate
            if trial.value < best.value:
                best = trial
            control.accepted(curvature)
        else:
            record["accepted"] = False
            control.rejected(curvature)
        stop = trace.report(record)
        if stop is not None:
            message = stop
            break
    return _finish(trace.history, best, converged, message)


def _line_points(history):
    """``(lam, h, h')`` of every evaluation of a one-penalty search."""
    return [
        (float(record["lam"][0]), record["value"], float(record["grad"][0]))
        for record in history
    ]


def _finish(history, best, converged, message):
    n_iter = sum(record["phase"] == "gradient" for record in history)
    return OuterResult(
        lam=best.lam.copy(),
        value=best.value,
        grad=best.grad.copy(),
        n_iter=n_iter,
        converged=converged,
        message=message,
        history=history,
    )
