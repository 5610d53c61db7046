"""Linear models that tune their own regularization."""

from ._hoag_logistic import HOAGLogisticRegression
from ._kfold_ridge import KFoldRidgeCV

__all__ = ["HOAGLogisticRegression", "KFoldRidgeCV"]
