"""HOAG's step control: step length from the secant curvature of ``h``.

Pedregosa (2016) steps by ``g / L``. Here ``L`` starts so that the first step
has a chosen length in log space, then follows the secant curvature of ``h``
along the last step (for one hyperparameter, the secant method on ``h'``),
doubles on a rejected step and halves when the observed curvature is
negative. Every step is capped in log space and projected on the box. (The
reference implementation's first move was always +-2 in ``lambda`` and its
step grew on every accepted step, which made long runs oscillate.)
"""

import numpy as np

__all__ = ["StepControl", "hermite_minimizer", "one_penalty_step"]


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


def hermite_minimizer(t0, f0, d0, t1, f1, d1):
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


def hermite_value(t0, f0, d0, t1, f1, d1, t):
    """The cubic matching ``h`` and ``h'`` at ``t0`` and ``t1``, at ``t``."""
    length = t1 - t0
    s = (t - t0) / length
    s2, s3 = s * s, s * s * s
    return (
        (2 * s3 - 3 * s2 + 1) * f0
        + (s3 - 2 * s2 + s) * length * d0
        + (3 * s2 - 2 * s3) * f1
        + (s3 - s2) * length * d1
    )


def one_penalty_step(points, max_step):
    """The next point of a search over one penalty, from all its points.

    ``points`` are the evaluations so far as ``(lam, h, h')`` (floats). From
    the lowest point, ``h`` decreases on its descent side (lower ``lambda``
    when ``h'`` > 0):

    - when an evaluated point lies on that side, the nearest one bounds a
      minimum with the lowest point (it is higher, and ``h`` first
      decreases towards it). The cubic matching ``h`` and ``h'`` at both
      ends gives the next point, its minimizer, and the decrease of ``h``
      left there. This decrease, from values and slopes together, still
      says when the search is done where the inexact hypergradients are
      noisier than the slope near the minimum; the slope alone (or a secant
      curvature over a short step) does not;
    - otherwise, the secant step on ``h'`` from the nearest point on the
      other side, ``EXPAND`` times over and at most ``max_step`` long, when
      the secant curvature is positive.

    Returns
    -------
    (float, float or None) or None
        The next ``lambda`` and the decrease the cubic predicts from the
        lowest point (None for a secant step; <= 0 when the values leave
        nothing to gain); None when neither rule applies (the step control
        then proposes the gradient step).
    """
    t0, f0, d0 = min(points, key=lambda point: point[1])
    if d0 == 0:
        return None
    side = -np.sign(d0)  # the direction of descent
    ahead = [p for p in points if (p[0] - t0) * side > 0]
    if ahead:
        t1, f1, d1 = min(ahead, key=lambda point: abs(point[0] - t0))
        t = hermite_minimizer(t0, f0, d0, t1, f1, d1)
        if t is None:
            return None
        # The cubic is a poor model across a wide bracket (one end in a flat
        # or steep stretch): the decrease is also predicted by the quadratic
        # with the secant curvature across the bracket, and the larger is
        # kept (an unknown decrease when that curvature is not positive).
        secant = (d1 - d0) / (t1 - t0)
        if not secant > 0:
            return t, None
        cubic = f0 - hermite_value(t0, f0, d0, t1, f1, d1, t)
        return t, max(cubic, d0 * d0 / (2 * secant))
    behind = [p for p in points if (p[0] - t0) * side < 0]
    if not behind:
        return None
    tb, _, db = min(behind, key=lambda point: abs(point[0] - t0))
    curvature = (d0 - db) / (t0 - tb)
    if not curvature > 0:
        return None
    return t0 + side * min(EXPAND * abs(d0) / curvature, max_step), None
