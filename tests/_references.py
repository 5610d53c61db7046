"""References computed with scikit-learn's own estimators, shared by the tests of
:class:`~skbilevel.BilevelSearchCV` and of its adapters."""

import numpy as np
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, mean_squared_error


def _tight(estimator):
    """The same estimator (or pipeline) with a solver tolerance of 1e-10."""
    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    prefix = f"{estimator.steps[-1][0]}__" if hasattr(estimator, "steps") else ""
    params = {f"{prefix}tol": 1e-10}
    if "max_iter" in final.get_params():
        params[f"{prefix}max_iter"] = 100000
    if isinstance(final, LogisticRegression):
        # Newton-CG reaches 1e-10 in a few warm-started iterations where L-BFGS
        # crawls (and newton-cholesky is slow on multinomial problems).
        params[f"{prefix}solver"] = "newton-cg"
        params[f"{prefix}warm_start"] = True
    return clone(estimator).set_params(**params)


def _validation_loss(model, X, y):
    """The outer criterion: log-loss for classifiers, MSE for regressors."""
    if hasattr(model, "predict_proba"):
        return log_loss(y, model.predict_proba(X), labels=model.classes_)
    return mean_squared_error(y, model.predict(X))


def _grid_cv_loss(estimator, name, grid, X, y, splits):
    """Mean validation loss at each grid value, as GridSearchCV would compute it
    (tight fits, warm-started along the grid where the estimator allows)."""
    losses = np.empty((len(grid), len(splits)))
    for k, (train, test) in enumerate(splits):
        model = _tight(estimator)
        for i, value in enumerate(grid):
            model.set_params(**{name: value}).fit(X[train], y[train])
            losses[i, k] = _validation_loss(model, X[test], y[test])
    return losses.mean(axis=1)


def _relative(a, b):
    return np.linalg.norm(np.ravel(a - b)) / np.linalg.norm(np.ravel(b))
