"""HOAG's step control: step length from the secant curvature of ``h``.

Pedregosa (2016) steps by ``g / L``. Here ``L`` starts so that the first step
has a chosen length in log space, then follows the secant curvature of ``h``
along the last step, doubles on a rejected step and halves when the
observed curvature is negative. Every step is capped in log space and
projected on the box. (The reference implementation's first move was always
+-2 in ``lambda`` and its step grew on every accepted step, which made long
runs oscillate.) A search over one penalty is a line search: its steps come
from all its points (:func:`one_penalty_step`), a cubic inside a bracket of
the minimum and a lengthened secant step before one, the step control's
gradient step only where neither applies.
"""

from typing import NamedTuple

import numpy as np

__all__ = [
    "DECREASE_STOP",
    "GRADIENT_STOP",
    "LineStep",
    "StepControl",
    "hermite_minimizer",
    "hermite_value",
    "one_penalty_step",
]


# Why a search converged (HOAG's step control and the bracket's stop).
GRADIENT_STOP = "projected hypergradient norm below tol"
DECREASE_STOP = "predicted decrease of h below tol"

# For one penalty, while no point beyond the lowest bounds the minimum: the
# secant step from the lowest point is taken this many times over. The
# slope of h flattens on the way to its minimum from the penalized side
# (the secant curvature of two points on the way overstates the curvature
# ahead), so secant steps fall short, one after the other; a step twice
# as long passes the minimum and brackets it, and the cubic then lands
# next to it (quick digits of benchmarks/run.py: 6 evaluations instead of
# 9; a session script at 9316a8c).
EXPAND = 2.0


class StepControl:
    """Step length and stopping tests of the gradient phase.

    Parameters
    ----------
    low, high : ndarray of shape (n_hyper,)
        The box.
    tol : float
        Stop when the projected hypergradient ``||lam - P(lam - g)||_2`` is
        below ``tol``, or when the decrease of ``h`` that remains by the local
        quadratic model, ``||P g||^2 / (2 L)``, is below ``tol * |h|`` (only
        while ``L`` is an observed curvature).
    step_tol : float
        Stop when a step changes no coordinate by more than ``step_tol``.
    max_step : float
        Largest change of one coordinate in one step.
    init_step : float
        Length (infinity norm) of the first step.
    """

    def __init__(self, low, high, *, tol, step_tol, max_step, init_step):
        self.low, self.high = low, high
        self.tol, self.step_tol = tol, step_tol
        self.max_step, self.init_step = max_step, init_step
        self.L = None  # curvature estimate of h: the step is g / L
        self.secant = False  # whether L is the observed curvature of h

    def converged(self, lam, g, value):
        """Why the search has converged at ``lam`` (gradient ``g``), or None."""
        projected = lam - np.clip(lam - g, self.low, self.high)
        if np.linalg.norm(projected) <= self.tol:
            return GRADIENT_STOP
        if self.secant and projected @ projected / (2 * self.L) <= self.tol * abs(
            value
        ):
            return DECREASE_STOP
        return None

    def propose(self, lam, g):
        """The projected gradient step from ``lam``."""
        if self.L is None:
            self.L = max(np.max(np.abs(g)), 1e-300) / self.init_step
        step = g / self.L
        largest = np.max(np.abs(step))
        if largest > self.max_step:
            step *= self.max_step / largest
        return np.clip(lam - step, self.low, self.high)

    def too_short(self, moved):
        """Whether a move is below ``step_tol`` in every coordinate."""
        return np.max(np.abs(moved)) <= self.step_tol

    @property
    def step_size(self):
        """``1 / L``, None before the first gradient step."""
        return None if self.L is None else 1.0 / self.L

    def accepted(self, curvature):
        """Update ``L`` after an accepted step with secant ``curvature``.

        Halving ``L`` on negative curvature lets the search leave concave
        stretches quickly.
        """
        self.secant = curvature > 0
        if self.secant:
            self.L = curvature
        elif self.L is not None:
            self.L = self.L / 2

    def rejected(self, curvature):
        """Update ``L`` after a rejected step: at least double it."""
        self.secant = False
        if self.L is not None:
            self.L = max(2 * self.L, curvature)
        elif curvature > 0:
            self.L = curvature


class LineStep(NamedTuple):
    """The next point of a one-penalty search (:func:`one_penalty_step`).

    Attributes
    ----------
    lam : float
        The next ``lambda``.
    decrease : float or None
        The decrease of ``h`` still predicted inside a bracket of the minimum
        (positive); None for a step taken before there is a bracket.
    """

    lam: float
    decrease: object


# Fraction of an interval a cubic step keeps away from each of its ends.
MARGIN = 0.05


def _inside(t, t0, t1, margin):
    """``t`` clipped to ``[t0, t1]`` (either order) less ``margin`` of it at
    each end."""
    lo, hi = min(t0, t1), max(t0, t1)
    return float(np.clip(t, lo + margin * (hi - lo), hi - margin * (hi - lo)))


def hermite_minimizer(t0, f0, d0, t1, f1, d1, margin=MARGIN):
    """Minimizer in ``[t0, t1]`` of the cubic matching ``h`` and ``h'`` at both ends.

    Nocedal & Wright (2006), eq. (3.59).

    Parameters
    ----------
    t0, f0, d0 : float
        One end: its abscissa, value and derivative.
    t1, f1, d1 : float
        The other end (``t1 != t0``).
    margin : float, default=0.05
        Fraction of the interval the result keeps away from each end.

    Returns
    -------
    float or None
        The minimizer, clipped to the interval less its margins; None when
        the cubic has no minimizer there.
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
    return _inside(t, t0, t1, margin) if np.isfinite(t) else None


def hermite_value(t0, f0, d0, t1, f1, d1, t):
    """The cubic matching ``h`` and ``h'`` at ``t0`` and ``t1``, evaluated at ``t``.

    Parameters
    ----------
    t0, f0, d0, t1, f1, d1 : float
        The ends, as in :func:`hermite_minimizer`.
    t : float
        Where to evaluate it.

    Returns
    -------
    float
    """
    length = t1 - t0
    s = (t - t0) / length
    s2, s3 = s * s, s * s * s
    return (
        (2 * s3 - 3 * s2 + 1) * f0
        + (s3 - 2 * s2 + s) * length * d0
        + (3 * s2 - 2 * s3) * f1
        + (s3 - s2) * length * d1
    )


def one_penalty_step(lowest, points, max_step):
    """The next point of a search over one penalty, from all its points.

    From the lowest point, ``h`` decreases on its descent side (lower
    ``lambda`` when ``h'`` > 0):

    - when an evaluated point lies on that side, the nearest one bounds a
      minimum with the lowest point (it is higher, and ``h`` first
      decreases towards it). The next point is the minimizer of the cubic
      matching ``h`` and ``h'`` at both ends (kept 5% of the bracket away
      from them, :func:`hermite_minimizer`'s default margin). The decrease
      of ``h`` still to gain is the larger of the cubic's (at its unclipped
      minimizer) and the quadratic's with the secant curvature across the
      bracket, ``h'^2 / (2 h'')``: the cubic alone is a poor model across
      a wide bracket whose far end lies in a flat or steep stretch. Near
      the minimum, where the inexact hypergradients are noisier than the
      slope itself, the values and slopes of a bracket still say how much
      is left; the slope alone, or a secant curvature over a short step,
      does not;
    - otherwise, the secant step on ``h'`` from the nearest point on the
      other side, ``EXPAND`` times over and at most ``max_step`` long, when
      the secant curvature is positive.

    Parameters
    ----------
    lowest : (float, float, float)
        ``(lambda, h, h')`` of the lowest point, the one the step leaves from.
    points : list of (float, float, float)
        Every evaluation so far, ``lowest`` included; points at the same
        ``lambda`` as ``lowest`` are ignored.
    max_step : float
        Longest step before a bracket.

    Returns
    -------
    LineStep or None
        None when neither rule applies (a zero slope, no neighbour, a
        bracket whose cubic has no minimizer, no positive secant curvature):
        the step control then proposes the gradient step.
    """
    t0, f0, d0 = lowest
    if not d0 or not np.isfinite(d0):
        return None
    points = [p for p in points if np.isfinite(p[1]) and np.isfinite(p[2])]
    side = -np.sign(d0)  # the direction of descent
    ahead = [p for p in points if (p[0] - t0) * side > 0]
    if ahead:
        t1, f1, d1 = min(ahead, key=lambda point: abs(point[0] - t0))
        exact = hermite_minimizer(t0, f0, d0, t1, f1, d1, margin=0.0)
        if exact is None:
            return None
        t = _inside(exact, t0, t1, MARGIN)
        secant = (d1 - d0) / (t1 - t0)
        if not secant > 0:
            return LineStep(t, None)
        cubic = f0 - hermite_value(t0, f0, d0, t1, f1, d1, exact)
        return LineStep(t, max(cubic, d0 * d0 / (2 * secant)))
    behind = [p for p in points if (p[0] - t0) * side < 0]
    if not behind:
        return None
    tb, _, db = min(behind, key=lambda point: abs(point[0] - t0))
    curvature = (d0 - db) / (t0 - tb)
    if not curvature > 0:
        return None
    return LineStep(t0 + side * min(EXPAND * abs(d0) / curvature, max_step), None)
