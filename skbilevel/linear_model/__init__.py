"""Linear models that tune their own regularization."""

from ._hoag_logistic import HOAGLogisticRegression

__all__ = ["HOAGLogisticRegression"]
