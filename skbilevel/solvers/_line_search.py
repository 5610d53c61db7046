"""Line search for the strong Wolfe conditions.

Along a descent direction ``d`` from ``x``, the one-dimensional function is
``phi(step) = f(x + step d)`` with slope ``phi'(step) = grad f(x + step d)' d``.
A step is accepted when it satisfies the strong Wolfe conditions

* sufficient decrease: ``phi(step) <= phi(0) + c1 step phi'(0)``,
* curvature: ``|phi'(step)| <= c2 |phi'(0)|``.

When ``phi(step) - phi(0)`` is at the round-off level of ``phi`` (float32, or
the last iterations in float64), the sufficient-decrease test compares noise.
Below a tolerance ``value_tol`` on the change of ``phi``, it is replaced by the
approximate Wolfe condition of Hager & Zhang (2005),
``phi'(step) <= (2 c1 - 1) phi'(0)``: on a quadratic,
``phi(step) - phi(0) = step (phi'(0) + phi'(step)) / 2``, so this is the
sufficient-decrease test computed from slopes, which round-off spares. The
comparisons of ``phi`` between trials fall back on slopes the same way.

The search follows the structure of Nocedal & Wright, *Numerical Optimization*
(2nd ed.), Algorithms 3.5 (bracketing) and 3.6 (zoom), with safeguarded cubic
interpolation. The scalar decisions are taken on Python floats; the caller's
``evaluate`` converts its 0-d arrays once per trial point and carries the
arrays it wants back in an opaque ``point``.
"""

import math
import sys
from typing import Any, NamedTuple

__all__ = ["LineSearchResult", "line_search_wolfe"]

# Zoom trial steps stay this fraction of the bracket width away from its ends, so
# each interpolation shrinks the bracket by at least 10% (N&W, Section 3.5).
_ZOOM_MARGIN = 0.1
# Bracketing extrapolates the next step to between 1 and 4 times the last
# increment beyond the current step: the steps grow at least geometrically.
_EXTRAPOLATION_MIN = 1.0
_EXTRAPOLATION_MAX = 4.0
# A bracket narrower than a few ulps of its steps cannot be split further.
_STEP_RESOLUTION = 4.0 * sys.float_info.epsilon


class _Conditions(NamedTuple):
    """Constants of the (approximate) strong Wolfe conditions."""

    c1: float
    c2: float
    value_tol: float


class _Trial(NamedTuple):
    """One evaluated step: ``phi(step)``, ``phi'(step)`` and the caller's point."""

    step: float
    value: float
    slope: float
    point: Any


class LineSearchResult(NamedTuple):
    """Outcome of :func:`line_search_wolfe`.

    Attributes
    ----------
    success : bool
        Whether ``step`` satisfies the strong Wolfe conditions (with the
        approximate sufficient-decrease test within ``value_tol``).
    step : float
        Accepted step (on failure, the step of ``best``).
    point : object
        What ``evaluate`` returned for the accepted step. On failure, the point of
        the lowest finite value found, or None when no trial went below ``phi(0)``.
    value : float
        ``phi(step)``.
    slope : float
        ``phi'(step)``.
    n_eval : int
        Number of calls to ``evaluate``.
    """

    success: bool
    step: float
    point: Any
    value: float
    slope: float
    n_eval: int


def line_search_wolfe(
    evaluate,
    value0,
    slope0,
    step_init=1.0,
    *,
    c1=1e-4,
    c2=0.9,
    value_tol=0.0,
    max_eval=20,
):
    """Find a step satisfying the strong Wolfe conditions.

    Parameters
    ----------
    evaluate : callable
        ``evaluate(step) -> (value, slope, point)``: ``phi(step)`` and
        ``phi'(step)`` as floats, and any object the caller wants back for the
        accepted step (typically the trial iterate, its value and its gradient).
        Non-finite values are treated as too large.
    value0 : float
        ``phi(0)``.
    slope0 : float
        ``phi'(0)``, negative.
    step_init : float
        First trial step. It is accepted without further evaluation whenever it
        satisfies both conditions.
    c1, c2 : float
        Sufficient-decrease and curvature constants, ``0 < c1 < c2 < 1``.
    value_tol : float
        Round-off level of ``phi``: a step with ``phi(step) <= phi(0) +
        value_tol`` also passes the sufficient-decrease test when
        ``phi'(step) <= (2 c1 - 1) phi'(0)``. ``0`` gives the exact test.
    max_eval : int
        Maximum number of calls to ``evaluate``.

    Returns
    -------
    LineSearchResult
    """
    conditions = _Conditions(c1, c2, value_tol)
    origin = _Trial(0.0, value0, slope0, None)
    prev, best = origin, origin
    step = step_init
    for n_eval in range(1, max_eval + 1):
        trial = _Trial(step, *evaluate(step))
        best = _lower(best, trial)
        if not _sufficient_decrease(trial, origin, conditions) or (
            n_eval > 1 and _not_lower(trial, prev, conditions)
        ):
            # A step satisfying both conditions lies in (prev, trial).
            return _zoom(
                evaluate, origin, prev, trial, best, n_eval, conditions, max_eval
            )
        if abs(trial.slope) <= -c2 * slope0:
            return _success(trial, n_eval)
        if trial.slope >= 0:
            # phi turned upward after a decrease: a minimizer lies in (prev, trial).
            return _zoom(
                evaluate, origin, trial, prev, best, n_eval, conditions, max_eval
            )
        prev, step = trial, _extrapolate(prev, trial)
    return _failure(best, max_eval)


def _zoom(evaluate, origin, lo, hi, best, n_eval, conditions, max_eval):
    """Shrink the bracket ``[lo, hi]`` (N&W Algorithm 3.6).

    Invariants: ``lo`` satisfies sufficient decrease and has the lowest value of
    the trials so far in the bracket, and ``lo.slope * (hi.step - lo.step) < 0``.
    """
    while n_eval < max_eval:
        step = _interpolate(lo, hi)
        if step is None:
            break
        trial = _Trial(step, *evaluate(step))
        n_eval += 1
        best = _lower(best, trial)
        if not _sufficient_decrease(trial, origin, conditions) or _not_lower(
            trial, lo, conditions
        ):
            hi = trial
            continue
        if abs(trial.slope) <= -conditions.c2 * origin.slope:
            return _success(trial, n_eval)
        if trial.slope * (hi.step - lo.step) >= 0:
            hi = lo
        lo = trial
    return _failure(best, n_eval)


def _sufficient_decrease(trial, origin, conditions):
    if not (math.isfinite(trial.value) and math.isfinite(trial.slope)):
        return False
    change = trial.value - origin.value
    if conditions.value_tol > 0.0 and abs(change) <= conditions.value_tol:
        # The change is round-off: ``change <= c1 step phi'(0)`` would compare
        # noise (and pass for an overshoot whose value rounds to phi(0)).
        return trial.slope <= (2.0 * conditions.c1 - 1.0) * origin.slope
    return change <= conditions.c1 * trial.step * origin.slope


def _not_lower(trial, reference, conditions):
    """Whether ``phi(trial.step) >= phi(reference.step)``.

    A difference within ``value_tol`` is round-off: its sign is taken from the
    trapezoid estimate ``(t - r) (phi'(r) + phi'(t)) / 2``, exact on a quadratic.
    """
    difference = trial.value - reference.value
    if abs(difference) <= conditions.value_tol:
        difference = (trial.step - reference.step) * (trial.slope + reference.slope)
    return difference >= 0.0


def _lower(best, trial):
    if math.isfinite(trial.value) and trial.value < best.value:
        return trial
    return best


def _success(trial, n_eval):
    return LineSearchResult(
        True, trial.step, trial.point, trial.value, trial.slope, n_eval
    )


def _failure(best, n_eval):
    return LineSearchResult(
        False, best.step, best.point, best.value, best.slope, n_eval
    )


def _cubic_minimizer(a, b):
    """Minimizer of the cubic matching value and slope of ``phi`` at two trials.

    N&W equation (3.59). Returns None when the cubic has no local minimizer or
    the data are not finite.
    """
    d1 = a.slope + b.slope - 3.0 * (a.value - b.value) / (a.step - b.step)
    discriminant = d1 * d1 - a.slope * b.slope
    if not discriminant >= 0.0:  # also rejects nan
        return None
    d2 = math.copysign(math.sqrt(discriminant), b.step - a.step)
    denominator = b.slope - a.slope + 2.0 * d2
    if denominator == 0.0:
        return None
    step = b.step - (b.step - a.step) * (b.slope + d2 - d1) / denominator
    return step if math.isfinite(step) else None


def _interpolate(lo, hi):
    """Next zoom step, at least ``_ZOOM_MARGIN`` of the width inside ``(lo, hi)``.

    Returns None when the bracket has shrunk to the floating-point resolution of
    the steps.
    """
    width = hi.step - lo.step
    if abs(width) <= _STEP_RESOLUTION * max(abs(lo.step), abs(hi.step)):
        return None
    low = lo.step + _ZOOM_MARGIN * width
    high = hi.step - _ZOOM_MARGIN * width
    step = None
    if math.isfinite(hi.value) and math.isfinite(hi.slope):
        step = _cubic_minimizer(lo, hi)
    if step is None:
        return lo.step + 0.5 * width
    return min(max(step, min(low, high)), max(low, high))


def _extrapolate(prev, trial):
    """Next bracketing step beyond ``trial``, where ``phi`` still decreases."""
    increment = trial.step - prev.step
    low = trial.step + _EXTRAPOLATION_MIN * increment
    high = trial.step + _EXTRAPOLATION_MAX * increment
    step = _cubic_minimizer(prev, trial)
    if step is None or step <= trial.step:
        return high
    return min(max(step, low), high)
