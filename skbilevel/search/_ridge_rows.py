"""A fold's training rows of the data, for the closed-form ridge search.

The helpers that take a fold's training rows and centre them by its weighted
column means without a centred copy, and :class:`SharedRows`: the products
of all rows of one array, computed once and shared by the folds (fold kernels
as blocks of one kernel, fold Gram matrices as the Gram of all rows minus
that of the rows a fold does not train on).
"""

import numpy as np

from ..objectives.quadratic import centred_products
from ..utils._array_api import to_numpy

__all__ = ["SharedRows"]


def _take(X, rows):
    """Rows ``rows`` of ``X`` (all of ``X`` when None)."""
    return X if rows is None else X[rows]


def _training_rows(weight):
    """The rows a fold trains on: None for all of them, else the
    indices of the rows of positive weight (a fold that reads every row of a
    shared matrix weighs its other rows zero; they add nothing)."""
    if weight is None or np.all(weight > 0):
        return None
    return np.flatnonzero(weight > 0)


def _column_means(X, rows, weight):
    """Weighted column means of rows ``rows`` (distinct) of ``X``."""
    scattered = weight
    if rows is not None:
        scattered = np.zeros(X.shape[0])
        scattered[rows] = weight
    return np.asarray(X.T @ scattered).ravel() / weight.sum()


def _centred_transpose(X, mean, V, rows=None):
    """``(X[rows] - 1 mean')' V = X[rows]' V - mean (1'V)`` (``rows``
    distinct), without a copy of ``X``: ``V`` is scattered to its rows.

    Rounding as in the centred copy's product, ``eps |x| |V|`` per entry:
    the fold kernel's solutions have ``1'V = 0`` to round-off (the centred
    kernel's null vector), so the correction is as small as that error.
    """
    if rows is not None:
        scattered = np.zeros((X.shape[0], V.shape[1]))
        scattered[rows] = V
        V = scattered
    return np.asarray(X.T @ V) - np.outer(mean, V.sum(axis=0))


class SharedRows:
    """Products of all rows, computed once for every fold.

    When every fold's data are rows of one dense array (no per-fold
    transform), the folds' products follow from products of all the rows,
    centred once by the column means:

    - more features than training samples: the fold kernels are blocks of
      one kernel of all the rows (one product ``n^2 p`` instead of
      ``K (n - n/K)^2 p``, and no centred copy of each fold);
    - more samples: each fold's Gram matrix is the Gram of all rows minus
      that of the rows it does not train on (``2 n p^2`` instead of
      ``(K - 1) n p^2`` for K-fold), when every row has the same weight
      and target in every fold that trains on it (not so for class weights
      computed per training fold).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    splits : list of (ndarray, ndarray)
        Each fold's training and validation rows of ``X``.
    fit_intercept : bool
    """

    def __init__(self, X, splits, fit_intercept):
        self.X, self.splits, self.fit_intercept = X, splits, fit_intercept
        self._folds = self._kernel = self._totals = None

    def applies(self, folds):
        """Whether these folds are the splits' rows of a dense ``X``, each
        training row once (a row repeated in a fold, as a bootstrap ``cv``
        may give, counts twice there: not a block of the products).

        A fold's training data are either a copy of its rows, in the
        split's order, or ``X`` itself (its rows read in place) with weight
        zero on the rows it does not train on.
        """
        if not (isinstance(self.X, np.ndarray) and len(self.splits) == len(folds)):
            return False
        n_samples, n_features = self.X.shape
        views = []
        for (train, test), fold in zip(self.splits, folds):
            inner, outer = fold.inner.model, fold.outer.model
            view = inner.X is self.X
            if (
                outer.n_samples != len(test)
                or outer.n_features != n_features
                or np.bincount(train).max(initial=0) > 1
                or not (view or inner.X.shape == (len(train), n_features))
            ):
                return False
            if view:
                weight = fold.inner.sample_weight
                off = np.ones(n_samples, dtype=bool)
                off[train] = False
                if weight is None or np.any(to_numpy(weight)[off] != 0):
                    return False
            views.append(view)
        self._folds, self._views = folds, views
        return True

    def products(self, index):
        """The products of fold ``index`` (see :class:`_FoldPath`), or None
        when the fold computes its own.

        ``("kernel", train kernel, validation x train cross products, rows)``
        or ``("gram", A'A, A'B, rows)``, with ``rows`` the indices of the
        fold's training rows in its data (None: all, in order).
        """
        train, test = self.splits[index]
        rows = train if self._views[index] else None
        if len(train) < self.X.shape[1]:
            if self._kernel is None:
                centre = self.X.mean(axis=0) if self.fit_intercept else 0.0
                Z = self.X - centre
                self._kernel = Z @ Z.T
            kernel = self._kernel
            blocks = kernel[np.ix_(train, train)], kernel[np.ix_(test, train)]
            return ("kernel",) + blocks + (rows,)
        totals = self._gram_totals()
        if totals is None:
            return None
        return ("gram",) + self._fold_gram(train, totals) + (rows,)

    def _row_data(self):
        """Every row's training weight and target, or None if some fold gives
        a row another weight or target than a fold before it."""
        n = self.X.shape[0]
        weights, targets = np.full(n, np.nan), None
        for (train, _), fold, view in zip(self.splits, self._folds, self._views):
            inner = fold.inner
            w = inner.sample_weight
            w = np.ones(len(train)) if w is None else np.asarray(to_numpy(w), float)
            y = np.asarray(to_numpy(inner.y), dtype=np.float64)
            if view:
                w, y = w[train], y[train]
            y = y.reshape(len(train), -1)
            if targets is None:
                targets = np.full((n, y.shape[1]), np.nan)
            seen = ~np.isnan(weights[train])
            if not (
                np.array_equal(weights[train][seen], w[seen])
                and np.array_equal(targets[train][seen], y[seen])
            ):
                return None
            weights[train], targets[train] = w, y
        never = np.isnan(weights)
        weights[never], targets[never] = 0.0, 0.0
        return weights, targets

    def _gram_totals(self):
        if self._totals is None:
            n = self.X.shape[0]
            rest = sum(n - len(train) for train, _ in self.splits)
            own = sum(len(train) for train, _ in self.splits)
            data = self._row_data() if n + rest < own else None
            self._totals = False if data is None else self._sums(*data)
        return self._totals or None

    def _sums(self, weights, targets):
        """Weighted products of all the rows, centred by the column means."""
        if self.fit_intercept:
            centre = self.X.mean(axis=0)
            target_centre = targets[weights > 0].mean(axis=0)
        else:
            centre, target_centre = 0.0, 0.0
        gram, xtb = centred_products(self.X, centre, weights, targets - target_centre)
        return {
            "gram": gram,
            "xtb": xtb,
            "x_sum": np.asarray(self.X.T @ weights) - weights.sum() * centre,
            "y_sum": weights @ (targets - target_centre),
            "total": weights.sum(),
            "centre": centre,
            "target_centre": target_centre,
            "weights": weights,
            "targets": targets,
        }

    def _fold_gram(self, train, totals):
        """``(A'A, A'B)`` of the fold training on rows ``train``."""
        outside = np.ones(self.X.shape[0], dtype=bool)
        outside[train] = False
        rest = np.flatnonzero(outside)
        X_rest, weights = self.X[rest], totals["weights"][rest]
        centred_targets = totals["targets"][rest] - totals["target_centre"]
        gram_rest, xtb_rest = centred_products(
            X_rest, totals["centre"], weights, centred_targets
        )
        gram, xtb = totals["gram"] - gram_rest, totals["xtb"] - xtb_rest
        if self.fit_intercept:
            # centre on the fold's own weighted means (m, ybar relative to
            # the shared centres): A'A = Z'SZ - S m m', A'B = Z'SY - S m ybar'
            total = totals["total"] - weights.sum()
            rest_sum = X_rest.T @ weights - weights.sum() * totals["centre"]
            m = (totals["x_sum"] - rest_sum) / total
            ybar = (totals["y_sum"] - weights @ centred_targets) / total
            gram = gram - total * np.outer(m, m)
            xtb = xtb - total * np.outer(m, ybar)
        return gram, xtb
