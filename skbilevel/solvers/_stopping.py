"""The gradient test shared by the inner solvers.

A solve stops when ``||grad f|| <= gtol`` in the Euclidean norm or, as
scikit-learn's ``LogisticRegression(solver="lbfgs")`` tests it (L-BFGS-B's
projected gradient), on the largest entry; a floor on the largest entry
(``gtol_floor``) bounds the accuracy a solve need reach whatever ``gtol``.
"""

from ..utils._array_api import norm

__all__ = ["GradientTest", "check_iterations"]

GRADIENT_NORMS = ("l2", "max")


def check_iterations(gtol_norm, min_iter, max_iter):
    """Validate ``gtol_norm`` and ``min_iter``; returns ``min_iter`` capped
    at ``max_iter``."""
    if gtol_norm not in GRADIENT_NORMS:
        raise ValueError(f"gtol_norm must be 'l2' or 'max', got {gtol_norm!r}.")
    if min_iter < 0:
        raise ValueError(f"min_iter must be >= 0, got {min_iter!r}.")
    return min(min_iter, max_iter)


class GradientTest:
    """``passes(grad)``: whether a gradient ends the solve.

    Parameters
    ----------
    xp : module
        Array namespace of the gradients.
    gtol : float
        Bound in the norm ``gtol_norm``.
    gtol_norm : {"l2", "max"}
    gtol_floor : float or None
        Also passes when no entry exceeds it.

    Attributes
    ----------
    largest_entry : float or None
        The bound on the largest entry that ends the solve (``gtol`` under
        ``"max"``, or the floor, whichever is larger), None when only the
        Euclidean norm is tested: a conjugate-gradient step may stop once its
        residual's entries are within it.
    """

    def __init__(self, xp, gtol, gtol_norm="l2", gtol_floor=None):
        self.xp, self.gtol = xp, gtol
        self.gtol_norm, self.gtol_floor = gtol_norm, gtol_floor
        candidates = (gtol_floor, gtol if gtol_norm == "max" else None)
        bounds = [b for b in candidates if b is not None]
        self.largest_entry = max(bounds) if bounds else None

    def largest(self, grad):
        """The largest absolute entry of ``grad``."""
        return float(self.xp.max(self.xp.abs(grad)))

    def size(self, grad, grad_norm=None):
        """``grad`` in the norm of the test (``grad_norm``: its Euclidean
        norm when known)."""
        if self.gtol_norm == "max":
            return self.largest(grad)
        return float(norm(self.xp, grad)) if grad_norm is None else grad_norm

    def passes(self, grad, grad_norm=None):
        """Whether ``grad`` ends the solve."""
        if self.gtol_floor is not None and self.largest(grad) <= self.gtol_floor:
            return True
        return self.size(grad, grad_norm) <= self.gtol
