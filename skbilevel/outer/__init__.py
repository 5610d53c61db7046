"""Outer optimization: the cross-validated objective h(lambda), HOAG, schedules."""

from .folds import make_folds, take_rows
from .hoag import OuterResult, hoag
from .problem import CrossValidatedProblem, Evaluation, Fold
from .schedules import TOLERANCE_SCHEDULES, tolerance_schedule

__all__ = [
    "CrossValidatedProblem",
    "Evaluation",
    "Fold",
    "OuterResult",
    "TOLERANCE_SCHEDULES",
    "hoag",
    "make_folds",
    "take_rows",
    "tolerance_schedule",
]
