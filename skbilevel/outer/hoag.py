"""HOAG: gradient descent on ``h(lambda)`` with inexact, warm-started evaluations.

Pedregosa (2016), with the step control hardened where the reference
implementation was seen to fail (see DESIGN.md):

- the step is ``g / L``; ``L`` starts so that the first step has a chosen length
  in log space, then follows the secant curvature of ``h`` along the last step
  (for one hyperparameter this is the secant method on ``h'``), doubles on a
  rejected step and halves when the observed curvature is negative;
- every step is capped in log space (``max_step``) and projected on the box;
- a step is accepted only if ``h`` decreases, up to a slack proportional to the
  current tolerance (the evaluations are inexact);
- an optional coarse bracket of warm-started evaluations picks the starting
  point, which keeps the search out of the flat regions at the ends of the box;
- the best point seen is returned, whatever the last step did.
"""

import time
from typing import NamedTuple

import numpy as np

from ._progress import SearchProgress
from .schedules import tolerance_schedule

__all__ = ["OuterResult", "hoag"]


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


def _check_bounds(bounds, n_hyper):
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


def _record(history, evaluation, *, phase, accepted, step, inner_tol, start):
    grad = evaluation.grad
    history.append(
        {
            "iteration": len(history),
            "phase": phase,
            "lam": evaluation.lam.copy(),
            "value": evaluation.value,
            "fold_values": evaluation.fold_values.copy(),
            "grad": None if grad is None else grad.copy(),
            "grad_norm": float("nan") if grad is None else float(np.linalg.norm(grad)),
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
            "elapsed": time.perf_counter() - start,
        }
    )
    return history[-1]


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
    verbose=0,
    describe=None,
):
    """Minimize ``h(lambda) = problem.evaluate(lambda).value`` over a box.

    Parameters
    ----------
    problem : CrossValidatedProblem
        Provides ``evaluate(lam, inner_tol=, linear_tol=, gradient=)`` and
        ``n_hyper``.
    lam0 : array-like of shape (n_hyper,)
        Starting point (log penalty strengths); projected on the box.
    bounds : (array-like, array-like)
        Lower and upper bounds of ``lambda`` (scalars broadcast).
    max_iter : int, default=50
        Gradient steps (accepted or rejected) at most.
    tol : float, default=1e-4
        Stop when the projected hypergradient ``||lam - P(lam - g)||_2`` is
        below ``tol``, or when the decrease of ``h`` that remains by the local
        quadratic model, ``||P g||^2 / (2 L)`` with ``L`` the secant curvature of
        the last accepted step, is below ``tol * |h|``.
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
        If at least 2, first evaluate ``h`` at ``bracket`` points spread evenly
        over the box (all coordinates equal, strongest penalty first, each
        solve warm-started from the previous one) and start from the best. The
        bracket ends at the first point worse than the best so far, or whose
        hypergradient says ``h`` increases further down: past the minimum of a
        unimodal ``h``, the weakly penalized end (the most expensive inner
        problems, and flat for the hypergradient) is skipped.
    max_time : float or None
        Time budget in seconds, checked after each evaluation.
    callback : callable or None
        Called with each history record once the point's fate is decided
        (``accepted`` set); a truthy return stops the search.
    verbose : int, default=0
        0: silent; 1: a row per evaluation (phase, step, hyperparameter, CV
        loss, best so far, hypergradient norm, kept or rejected, elapsed time)
        and a closing line; 2: each row also shows the inner tolerance, inner
        iterations, Hessian-vector products, linear-solve residual and the
        spread of the fold losses.
    describe : callable or None
        ``lam -> str`` used in verbose lines (e.g. to show ``C``).

    Returns
    -------
    OuterResult
    """
    n_hyper = problem.n_hyper
    low, high = _check_bounds(bounds, n_hyper)
    if max_iter < 0:
        raise ValueError(f"max_iter must be >= 0, got {max_iter!r}.")
    for name, value in [
        ("tol", tol),
        ("step_tol", step_tol),
        ("max_step", max_step),
        ("init_step", init_step),
    ]:
        if not value > 0:
            raise ValueError(f"{name} must be > 0, got {value!r}.")
    schedule = tolerance_schedule(tol_schedule, start=tol_start, decay=tol_decay)
    lam = np.clip(np.asarray(lam0, dtype=np.float64).reshape(-1), low, high)
    if lam.shape != (n_hyper,):
        raise ValueError(f"lam0 must have shape ({n_hyper},), got {lam.shape}.")
    start = time.perf_counter()
    history = []
    describe = describe or (lambda lm: f"lambda={np.mean(lm):+.4f}")
    progress = SearchProgress(verbose, describe, max_iter)

    def finish(best, converged, message):
        result = _finish(history, best, converged, message)
        progress.finish(result)
        return result

    def run(point, k, phase, accepted=None, step=None):
        eps = schedule(k)
        evaluation = problem.evaluate(point, inner_tol=eps, linear_tol=eps)
        record = _record(
            history,
            evaluation,
            phase=phase,
            accepted=accepted,
            step=step,
            inner_tol=eps,
            start=start,
        )
        record["gradient_step"] = k
        return evaluation, record

    def report(record):
        """Once the point's fate is decided: print its row, call the callback
        (whose truthy return stops the search)."""
        progress.evaluation(record)
        return callback is not None and bool(callback(record))

    def out_of_time():
        return max_time is not None and time.perf_counter() - start > max_time

    # -- optional coarse bracket ----------------------------------------------
    current = None
    spacing = None
    bracketed = []
    if bracket >= 2:
        common_low, common_high = low.max(), high.min()
        if common_low >= common_high:
            common_low, common_high = low.min(), high.max()
        grid = np.linspace(common_high, common_low, bracket)
        spacing = (common_high - common_low) / (bracket - 1)
        for value in grid:
            point = np.clip(np.full(n_hyper, value), low, high)
            evaluation, record = run(point, 0, "bracket", accepted=True)
            bracketed.append(evaluation)
            worse = current is not None and evaluation.value > current.value
            # Walking down in lambda is a descent direction iff sum(grad) > 0;
            # otherwise the minimum lies behind: stop before the weakly penalized
            # (expensive) end of the box.
            turned = float(np.sum(evaluation.grad)) <= 0
            if worse:
                record["accepted"] = False
            else:
                current = evaluation
            stop = report(record)
            if stop or out_of_time():
                return finish(
                    current,
                    False,
                    "stopped by callback" if stop else "time budget reached",
                )
            if worse or turned:
                break
        init_step = min(init_step, spacing / 2)
    planned = _interpolate_bracket(bracketed, current, low, high)
    if current is None:
        current, record = run(lam, 0, "start", accepted=True)
        if report(record):
            return finish(current, False, "stopped by callback")

    best = current
    lam = current.lam
    L = None
    message, converged = f"max_iter={max_iter} reached", False
    secant = False  # whether L is the observed curvature of h
    for k in range(1, max_iter + 1):
        g = current.grad
        projected = lam - np.clip(lam - g, low, high)
        if np.linalg.norm(projected) <= tol:
            message, converged = "projected hypergradient norm below tol", True
            break
        if secant and projected @ projected / (2 * L) <= tol * abs(current.value):
            message, converged = "predicted decrease of h below tol", True
            break
        if planned is not None:
            candidate, planned = planned, None
        else:
            if L is None:
                L = max(np.max(np.abs(g)), 1e-300) / init_step
            step = g / L
            largest = np.max(np.abs(step))
            if largest > max_step:
                step *= max_step / largest
            candidate = np.clip(lam - step, low, high)
        moved = candidate - lam
        if np.max(np.abs(moved)) <= step_tol:
            message, converged = "step below step_tol", True
            break
        trial, record = run(
            candidate, k, "gradient", step=None if L is None else 1.0 / L
        )
        curvature = float((trial.grad - g) @ moved / (moved @ moved))
        slack = schedule(k) * abs(current.value)
        if trial.value <= current.value + slack:
            record["accepted"] = True
            current, lam = trial, candidate
            if trial.value < best.value:
                best = trial
            # Secant estimate of the curvature of h along the step; halving L on
            # negative curvature lets the search leave concave stretches quickly.
            secant = curvature > 0
            L = curvature if secant else (None if L is None else L / 2)
        else:
            record["accepted"] = False
            secant = False
            if L is not None:
                L = max(2 * L, curvature)
            elif curvature > 0:
                L = curvature
        if report(record):
            message = "stopped by callback"
            break
        if out_of_time():
            message = f"time budget max_time={max_time} reached"
            break
    return finish(best, converged, message)


def _hermite_minimizer(t0, f0, d0, t1, f1, d1):
    """Minimizer in ``[t0, t1]`` of the cubic matching ``h`` and ``h'`` at both ends.

    Nocedal & Wright (2006), eq. (3.59); None when the cubic has no minimizer
    there. The result is kept 5% away from the ends.
    """
    d_1 = d0 + d1 - 3 * (f0 - f1) / (t0 - t1)
    discriminant = d_1 * d_1 - d0 * d1
    if not discriminant >= 0:
        return None
    d_2 = np.sign(t1 - t0) * np.sqrt(discriminant)
    denominator = d1 - d0 + 2 * d_2
    if denominator == 0:
        return None
    t = t1 - (t1 - t0) * (d1 + d_2 - d_1) / denominator
    lo, hi = min(t0, t1), max(t0, t1)
    margin = 0.05 * (hi - lo)
    return float(np.clip(t, lo + margin, hi - margin)) if np.isfinite(t) else None


def _interpolate_bracket(bracketed, best, low, high):
    """First gradient-phase point: the cubic minimizer between the best bracket
    point and its neighbor on the descent side (all coordinates equal).

    ``h`` and its derivative along the bracket line, ``sum(grad)``, are known at
    both points, so one cubic Hermite interpolation lands next to a minimum the
    coarse bracket straddles, instead of several gradient steps. None when
    there is no such neighbor.
    """
    if best is None or len(bracketed) < 2:
        return None
    index = next(i for i, e in enumerate(bracketed) if e is best)
    slope = float(np.sum(best.grad))
    # the bracket walks down in lambda: index + 1 is the next lower point
    neighbor = index + 1 if slope > 0 else index - 1
    if not 0 <= neighbor < len(bracketed):
        return None
    other = bracketed[neighbor]
    t = _hermite_minimizer(
        float(best.lam[0]),
        best.value,
        slope,
        float(other.lam[0]),
        other.value,
        float(np.sum(other.grad)),
    )
    if t is None:
        return None
    return np.clip(np.full(best.lam.shape, t), low, high)


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
