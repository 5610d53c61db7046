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

__all__ = ["StepControl"]


# Why a search converged (HOAG's step control and the bracket's stop).
GRADIENT_STOP = "projected hypergradient norm below tol"
DECREASE_STOP = "predicted decrease of h below tol"


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
