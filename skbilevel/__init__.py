"""skbilevel: gradient-based hyperparameter search for regularized linear models.

Estimators tune continuous regularization hyperparameters by gradient descent on
the cross-validation loss (HOAG, with SHINE and other hypergradient solvers),
instead of refitting on a grid.
"""

from .linear_model import HOAGLogisticRegression, KFoldRidgeCV
from .model_selection import BilevelSearchCV, register_adapter

__version__ = "0.1.0.dev0"

__all__ = [
    "BilevelSearchCV",
    "HOAGLogisticRegression",
    "KFoldRidgeCV",
    "register_adapter",
    "__version__",
]
