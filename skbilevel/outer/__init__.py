"""Outer optimization: the cross-validated objective h(lambda), HOAG, schedules."""

from .hoag import OuterResult, hoag
from .problem import INNER_SOLVERS, CrossValidatedProblem, Evaluation, Fold
from .schedules import TOLERANCE_SCHEDULES, tolerance_schedule

__all__ = [
    "CrossValidatedProblem",
    "Evaluation",
    "Fold",
    "INNER_SOLVERS",
    "OuterResult",
    "TOLERANCE_SCHEDULES",
    "hoag",
    "tolerance_schedule",
]
