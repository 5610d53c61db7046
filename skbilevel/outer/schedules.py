"""Summable tolerance schedules for the inexact inner and linear solves.

HOAG (Pedregosa, 2016) converges when the tolerances ``eps_k`` of the inner
solve and of the linear system at outer iteration ``k`` are summable. Early
iterations only need the sign and rough size of the hypergradient, so a loose
start and a fast decrease save most of the inner work.
"""

__all__ = ["TOLERANCE_SCHEDULES", "tolerance_schedule"]

TOLERANCE_SCHEDULES = ("exponential", "quadratic", "cubic")


def tolerance_schedule(kind="exponential", *, start=1e-4, decay=0.78, floor=1e-9):
    """Return ``k -> eps_k``, a summable sequence bounded below by ``floor``.

    Parameters
    ----------
    kind : {"exponential", "quadratic", "cubic"}
        ``start * decay**k``, ``start / (k + 1)**2`` or ``start / (k + 1)**3``.
    start : float, default=1e-4
        ``eps_0``.
    decay : float, default=0.78
        Ratio of the exponential schedule (0.78 as in Ramzi et al., 2022).
    floor : float, default=1e-9
        Lower bound: below it, float64 round-off dominates the solves.

    Returns
    -------
    callable
    """
    if kind not in TOLERANCE_SCHEDULES:
        raise ValueError(
            f"Unknown tolerance schedule {kind!r}; use one of {TOLERANCE_SCHEDULES}."
        )
    if not 0 < start:
        raise ValueError(f"The starting tolerance must be > 0, got {start!r}.")
    if not 0 < decay < 1:
        raise ValueError(f"The decay must be in (0, 1), got {decay!r}.")
    if kind == "exponential":
        return lambda k: max(start * decay**k, floor)
    power = 2 if kind == "quadratic" else 3
    return lambda k: max(start / (k + 1) ** power, floor)
