"""Objectives: pointwise losses, the log-space L2 penalty, their composition with X."""

from .linear import InnerObjective, LinearPredictor, ValidationLoss
from .losses import BinaryLogisticLoss, MultinomialLogisticLoss, SquaredLoss
from .penalties import L2Penalty

__all__ = [
    "BinaryLogisticLoss",
    "InnerObjective",
    "L2Penalty",
    "LinearPredictor",
    "MultinomialLogisticLoss",
    "SquaredLoss",
    "ValidationLoss",
]
