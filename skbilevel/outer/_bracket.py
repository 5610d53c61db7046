"""The coarse bracket that picks HOAG's starting point.

Gradient methods started in a flat region of ``h`` (the ends of the box:
everything or nothing penalized) stay there: the hypergradient carries a factor
``exp(lambda)`` and vanishes. A few warm-started evaluations spread over the
box, strongest penalty first, find the basin of the minimum for little more
than the cost of one cold fit per fold; the first gradient step then lands
with one cubic Hermite interpolation next to the minimum the bracket
straddles.
"""

from typing import NamedTuple

import numpy as np

from ._step import DECREASE_STOP, GRADIENT_STOP, hermite_minimizer

__all__ = ["Bracket", "interpolate_bracket", "run_bracket"]

# Tolerance factor of the points reached by a full-width jump.
LOOSEN = 10.0
# Tolerance factor of the first point, the box's strongest penalty, where
# that is the flat end: the penalty dominates the inner problem, its solution
# is small, and its value and slope only steer the first jump. At 100 times
# the tolerance one inner iteration per fold passes there, and the value
# moves by under 0.1%, the slope by under 1% (benchmarks/run.py's full data,
# a session script at 3f16a6d: sparse 125 ms against 185 ms, slope 5.95e-4
# against 5.91e-4; digits 10 ms against 17 ms; the same points after it).
# A fold that needs more than one inner iteration at that tolerance is not in
# the flat end, and goes on to LOOSEN times the tolerance before its
# hypergradient (FIRST_RETRY): there the loose value misleads the line steps
# that use this point as a bracket end (on the full Fashion-MNIST 0/6
# problem of benchmarks/run.py, 0.404 against 0.375 at C = 1e-4; the cubic
# from that end crawled to the minimum: 7 evaluations instead of 3, 7.0 s
# against 3.0 s, a session script at f25977d). A search whose minimum is
# that end still ends on a tight solve: the best point is re-solved before
# it is returned.
FIRST_LOOSEN = LOOSEN * LOOSEN
FIRST_RETRY = LOOSEN
# Fraction of the full step taken when the slope steepens between two points
# (no secant curvature to size the step): the minimum may be near, and a jump
# past it lands in the weakly penalized end, whose inner problems cost most
# (on the full sparse problem of benchmarks/run.py the steepening slope at
# C = 1e-2 sends the walk to 0.1, next to the optimum 0.08, not to C = 1).
CONCAVE_STEP = 0.5
# A secant Newton step shorter than this (in log penalty) ends the bracket: the
# gradient phase takes over (and HOAG's own step_tol is of this size).
_MIN_STEP = 1e-3


class Bracket(NamedTuple):
    """Outcome of the bracket.

    Attributes
    ----------
    best : Evaluation or None
        Lowest ``h`` among the bracket points (None if none was evaluated).
    points : list of Evaluation
        Every bracket evaluation, strongest penalty first.
    spacing : float
        Distance between consecutive bracket points in ``lambda``.
    stop : str or None
        Why the whole search must stop here (callback, time), else None.
    converged : str or None
        Which of HOAG's convergence tests the last point passed (the search
        has converged there), else None.
    """

    best: object
    points: list
    spacing: float
    stop: object
    converged: object = None


def run_bracket(trace, low, high, size, tol=None):
    """Evaluate ``h`` at up to ``size`` points along the box's diagonal.

    From the strongest penalty down. The first step is the box's width over
    ``size - 1``; from two points on, the step is the secant Newton step on
    the derivative along the diagonal, ``-h'(t) / h''(t)`` with ``h''`` the
    change of ``h'`` between the last two points, capped at that width (half
    of it when the secant curvature is not positive). Near the minimum
    this lands next to it instead of jumping past it into the weakly
    penalized end (the most expensive inner problems). The bracket ends at
    the first point worse than the best so far, or whose hypergradient says
    ``h`` increases further down, or at the end of the box; with ``tol``,
    also at a point reached by a secant step (positive secant curvature)
    that passes HOAG's own convergence tests: hypergradient norm below
    ``tol``, or, for one penalty, a decrease predicted by the secant below
    ``tol`` times ``|h|`` (the decrease along the diagonal is not all of it
    for several). The next step would then be shorter than the inexact
    hypergradients can resolve.

    Parameters
    ----------
    trace : _Trace
        Evaluates, records and reports points (see :mod:`.hoag`).
    low, high : ndarray of shape (n_hyper,)
        The box.
    size : int
        Number of points at most (at least 2).
    tol : float or None, default=None
        HOAG's ``tol`` (see :class:`~skbilevel.outer._step.StepControl`);
        None: no convergence test.

    Returns
    -------
    Bracket
    """
    common_low, common_high = low.max(), high.min()
    if common_low >= common_high:
        common_low, common_high = low.min(), high.max()
    spacing = (common_high - common_low) / (size - 1)
    best, points = None, []
    t, previous, step = common_high, None, spacing
    # whether the point about to be evaluated was reached by a secant step
    # (positive secant curvature): near a minimum, where HOAG's tests mean
    # something (in the flat end the hypergradient is small too)
    by_secant = False
    one_penalty = low.size == 1
    for _ in range(size):
        point = np.clip(np.full(low.shape, t), low, high)
        # Points reached by a full-width jump are far from the minimum: their
        # value and hypergradient are only compared and followed, at a
        # looser tolerance (the first looser still).
        retry = None
        if not points:
            loosen, retry = FIRST_LOOSEN, FIRST_RETRY
        else:
            loosen = LOOSEN if step == spacing else 1.0
        evaluation, record = trace.run(
            point, 0, "bracket", accepted=True, loosen=loosen, retry=retry
        )
        points.append(evaluation)
        worse = best is not None and evaluation.value > best.value
        # Walking down in lambda is a descent direction iff the derivative
        # along the diagonal, sum(grad), is positive; otherwise the minimum
        # lies behind.
        slope = float(np.sum(evaluation.grad))
        if worse:
            record["accepted"] = False
        else:
            best = evaluation
        stop = trace.report(record)
        if stop is not None:
            return Bracket(best, points, spacing, stop)
        if worse or slope <= 0 or t <= common_low:
            break
        converging = tol is not None and by_secant
        # (the norm bounds the projected one HOAG tests)
        if converging and np.linalg.norm(evaluation.grad) <= tol:
            return Bracket(best, points, spacing, None, GRADIENT_STOP)
        step, by_secant = spacing, False
        if previous is not None:
            curvature = (previous[1] - slope) / (previous[0] - t)
            if curvature > 0:
                step = min(spacing, slope / curvature)
                by_secant = True
                # the decrease along the diagonal: all of it for one penalty
                if converging and one_penalty:
                    decrease = slope * slope / (2 * curvature)
                    if decrease <= tol * abs(evaluation.value):
                        return Bracket(best, points, spacing, None, DECREASE_STOP)
            else:
                step = spacing * CONCAVE_STEP
        if step < _MIN_STEP:
            break  # at the minimum, as far as the bracket can tell
        previous = (t, slope)
        t = max(t - step, common_low)
    return Bracket(best, points, spacing, None)


def interpolate_bracket(bracket, low, high):
    """First gradient-phase point: the cubic minimizer between the best bracket
    point and its neighbor on the descent side (all coordinates equal).

    ``h`` and its derivative along the bracket line, ``sum(grad)``, are known at
    both points, so one cubic Hermite interpolation lands next to a minimum the
    coarse bracket straddles, instead of several gradient steps. None when
    there is no such neighbor.
    """
    best, points = bracket.best, bracket.points
    if best is None or len(points) < 2:
        return None
    index = next(i for i, e in enumerate(points) if e is best)
    slope = float(np.sum(best.grad))
    # the bracket walks down in lambda: index + 1 is the next lower point
    neighbor = index + 1 if slope > 0 else index - 1
    if not 0 <= neighbor < len(points):
        return None
    other = points[neighbor]
    t = hermite_minimizer(
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
