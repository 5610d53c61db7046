"""A fold's training rows of the data, for the closed-form ridge search.

The helpers that take a fold's training rows and centre them by its weighted
column means without a centred copy, and :class:`SharedRows`: the products
of all rows of one array, computed once and shared by the folds (fold kernels
as blocks of one kernel, fold Gram matrices as the Gram of all rows minus
that of the rows a fold does not train on).
"""

from functools import cached_property

import numpy as np
from scipy.linalg import lapack

from ..objectives.quadratic import centred_products, quadratic_moments
from ..utils._array_api import to_numpy

__all__ = ["SharedRows", "normal_equations_solution"]

# The folds share the products of all rows when these cost at least this many
# multiply-adds (``n p min(n, p)``, the Gram matrix's or the kernel's): below,
# the calls that assemble each fold's share from them cost more than the
# arithmetic they save, and each fold computes its own. Diabetes (442 x 10,
# 4.4e4): the closed-form search takes 4.2 ms with its own products against
# 5.6 ms shared (session script, medians of 100 alternating runs); the
# refit's solution still comes from one pass over all rows.
_SHARE_WORK = 2**22


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


def centre_kernel(kernel, weights):
    """Centre the kernel ``ZZ'`` of rows ``Z`` at their weighted mean ``m``,
    in place: ``(Z - 1m')(Z - 1m')' = ZZ' - u1' - 1u' + c`` with
    ``u = ZZ's / S``, ``c = s'u / S``. Returns ``(u, c)`` (the same
    correction centres cross products with other rows)."""
    total = weights.sum()
    u = kernel @ weights / total
    c = weights @ u / total
    kernel -= u[:, None]
    kernel -= u[None, :] - c
    return u, c


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
      that of the rows it does not train on, when every row has the same
      weight and target in every fold that trains on it (not so for class
      weights computed per training fold). When each row is left out by one
      fold at most (K-fold), the Gram of all rows is the sum of the
      left-out blocks' Grams: ``n p^2`` in all instead of ``(K - 1) n p^2``.

    The same products give the solution on all the rows
    (:meth:`solution`): the refit of a closed-form search costs one
    factorization, and no pass over the data.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    splits : list of (ndarray, ndarray)
        Each fold's training and validation rows of ``X``.
    fit_intercept : bool
    min_work : int or None, default=None
        The folds share the products when these cost at least this many
        multiply-adds (``n p min(n, p)``; see :meth:`worth_sharing`); None:
        :data:`_SHARE_WORK`.
    """

    def __init__(self, X, splits, fit_intercept, *, min_work=None):
        self.X, self.splits, self.fit_intercept = X, splits, fit_intercept
        self.min_work = min_work
        self._folds = self._kernel = self._totals = None
        self._rests = self._blocks = self._left_out = None
        self._disjoint = False

    @cached_property
    def _centre(self):
        """The column means of all rows (zero without an intercept): one pass
        over ``X``, shared by the kernel, the Gram totals and the refit."""
        return self.X.mean(axis=0) if self.fit_intercept else 0.0

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

    def worth_sharing(self):
        """Whether the folds' products are worth taking from products of all
        rows (:data:`_SHARE_WORK`); the refit's solution is offered either
        way."""
        n_samples, n_features = self.X.shape
        floor = _SHARE_WORK if self.min_work is None else self.min_work
        return n_samples * n_features * min(n_samples, n_features) >= floor

    def products(self, index, gram_only=False):
        """The products of fold ``index`` (see :class:`_FoldPath`), or None
        when the fold computes its own.

        ``("kernel", train kernel, validation x train cross products, rows)``
        or ``("gram", A'A, A'B, rows)``, with ``rows`` the indices of the
        fold's training rows in its data (None: all, in order). With
        ``gram_only``, None for a fold with fewer training rows than
        features (the kernel of all rows is not computed). None for every
        fold of small data (:meth:`worth_sharing`).
        """
        if not self.worth_sharing():
            return None
        train, test = self.splits[index]
        rows = train if self._views[index] else None
        if len(train) < self.X.shape[1]:
            if gram_only:
                return None
            if self._kernel is None:
                self._kernel = self._all_rows_kernel()
            kernel = self._kernel
            blocks = kernel[np.ix_(train, train)], kernel[np.ix_(test, train)]
            return ("kernel",) + blocks + (rows,)
        totals = self._gram_totals()
        if totals is None:
            return None
        return ("gram",) + self._fold_gram(index, totals) + (rows,)

    def _all_rows_kernel(self):
        """``ZZ'`` with ``Z = X - centre``, the rows centred by the column
        means of all rows."""
        Z = self.X - self._centre
        return Z @ Z.T

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
            self._rests = []
            for train, _ in self.splits:
                outside = np.ones(n, dtype=bool)
                outside[train] = False
                self._rests.append(np.flatnonzero(outside))
            self._left_out = np.bincount(np.concatenate(self._rests), minlength=n)
            # rows left out by one fold at most (K-fold: each row by exactly
            # one): the products of all rows are the sum of the left-out
            # blocks' (and of the rows no fold leaves out), so the totals
            # cost one pass over the rows; otherwise a pass of their own
            self._disjoint = self._left_out.max(initial=0) <= 1
            rest = 0 if self._disjoint else sum(map(len, self._rests))
            own = sum(len(train) for train, _ in self.splits)
            data = self._row_data() if n + rest < own else None
            self._totals = False if data is None else self._sums(*data)
        return self._totals or None

    def _sums(self, weights, targets):
        """Weighted products of all the rows, centred by the column means."""
        if self.fit_intercept:
            centre = self._centre
            target_centre = targets[weights > 0].mean(axis=0)
        else:
            centre, target_centre = 0.0, 0.0
        totals = {
            "total": weights.sum(),
            "centre": centre,
            "target_centre": target_centre,
            "weights": weights,
            "targets": targets,
        }
        # the fold blocks are kept for the folds while they take no more
        # memory than X (K p x p matrices), and the totals are their sum;
        # beyond (LeaveOneOut: n of them) one pass over all rows gives the
        # totals, and each fold computes its own block
        n_samples, n_features = self.X.shape
        if self._disjoint and len(self._rests) * n_features <= n_samples:
            blocks = self._rests + [np.flatnonzero(self._left_out == 0)]
            self._blocks = []
            for rows in blocks:
                if not len(rows):  # K-fold leaves every row out once
                    self._blocks.append(None)
                    continue
                block = self._block_products(rows, totals)
                for key in ("gram", "xtb", "x_sum", "y_sum"):
                    totals[key] = totals.get(key, 0.0) + block[key]
                self._blocks.append(block)
        else:
            totals.update(self._block_products(None, totals))
        return totals

    def _block_products(self, rows, totals):
        """The products of rows ``rows`` (None: all), centred by the shared
        centres: ``Z'SZ``, ``Z'S(Y - ybar)``, ``Z's``, ``s'(Y - ybar)`` and
        ``s'1``."""
        X = _take(self.X, rows)
        weights = _take(totals["weights"], rows)
        centred_targets = _take(totals["targets"], rows) - totals["target_centre"]
        gram, xtb = centred_products(X, totals["centre"], weights, centred_targets)
        return {
            "gram": gram,
            "xtb": xtb,
            "x_sum": np.asarray(X.T @ weights) - weights.sum() * totals["centre"],
            "y_sum": weights @ centred_targets,
            "weight": weights.sum(),
        }

    def _fold_gram(self, index, totals):
        """``(A'A, A'B)`` of fold ``index``, from the products of all rows
        minus those of the rows it leaves out."""
        if self._blocks is not None and self._blocks[index] is not None:
            # each kept block serves one fold: freed once used
            rest, self._blocks[index] = self._blocks[index], None
        else:
            rest = self._block_products(self._rests[index], totals)
        return _centred_system(totals, rest, self.fit_intercept)

    def solution(self, alpha):
        """The ridge solution on all the rows at ``alpha``, from the products
        the folds shared, or None when they do not give it.

        Every row must train some fold, with the same weight and target in
        each (then these are the data's own); the products are the kernel
        of all the rows (consumed: overwritten by the factorization) or else
        their Gram matrix, whichever the folds used. No product of the data
        with itself is computed here (the kernel form takes two products of
        ``X`` with a vector per target). None also when the system is not
        positive definite to round-off (``Ridge.fit`` then falls back to
        its SVD solver).

        Parameters
        ----------
        alpha : ndarray of shape (n_outputs,)
            Each target's penalty.

        Returns
        -------
        coef : ndarray of shape (n_outputs, n_features)
        intercept : ndarray of shape (n_outputs,)
        weights, targets : ndarray
            The rows' weights (n_samples,) and targets (n_samples,
            n_outputs) the solution fits: the caller checks they are the
            data's own.
        """
        if self._kernel is None and self._totals is None and not self.worth_sharing():
            # small data: the folds computed their own products; those of all
            # the rows, one pass now (the normal equations, or the kernel when
            # there are more features than samples)
            data = self._row_data()
            if data is None:
                return None
            if self.X.shape[0] >= self.X.shape[1]:
                found = normal_equations_solution(
                    self.X, *data[::-1], alpha, self.fit_intercept
                )
                return None if found is None else found + data
            self._kernel = self._all_rows_kernel()
        totals = self._totals if self._kernel is None else None
        if totals:
            weights, targets = totals["weights"], totals["targets"]
            empty = {key: 0.0 for key in ("gram", "xtb", "x_sum", "y_sum", "weight")}
            system, right = _centred_system(totals, empty, self.fit_intercept)
            mean = totals["centre"] + (
                totals["x_sum"] / totals["total"] if self.fit_intercept else 0.0
            )
            y_mean = totals["target_centre"] + (
                totals["y_sum"] / totals["total"] if self.fit_intercept else 0.0
            )
            try:
                coef = _penalized_solve(system, right, alpha).T
            except np.linalg.LinAlgError:
                return None  # not positive definite to round-off: Ridge.fit decides
        elif self._kernel is not None:
            data = self._row_data()
            if data is None:
                return None
            weights, targets = data
            try:
                coef, mean, y_mean = self._kernel_solution(weights, targets, alpha)
            except np.linalg.LinAlgError:
                return None
        else:
            return None
        intercept = y_mean - coef @ mean if self.fit_intercept else np.zeros(len(coef))
        return coef, np.broadcast_to(intercept, len(coef)), weights, targets

    def _kernel_solution(self, weights, targets, alpha):
        """``(coef, x_mean, y_mean)`` on all rows from the kernel of all rows.

        The kernel ``ZZ'`` (``Z = X - centre``) centred at the weighted
        means as in the fold kernels, ``A = S^{1/2} (Z - 1m')``, and
        ``w = A' (AA' + alpha I)^{-1} S^{1/2} (Y - ybar)``. The shared
        kernel is overwritten (the fold paths have their blocks): a second
        call finds none.
        """
        total = weights.sum()
        centre = self._centre
        kernel, self._kernel = self._kernel, None  # consumed: no n x n copy
        mean, y_mean = centre, np.zeros(targets.shape[1])
        if self.fit_intercept:
            centre_kernel(kernel, weights)
            mean = _column_means(self.X, None, weights)
            y_mean = weights @ targets / total
        root = np.sqrt(weights)
        kernel *= root[:, None]
        kernel *= root[None, :]
        dual = _penalized_solve(kernel, root[:, None] * (targets - y_mean), alpha)
        scaled = root[:, None] * dual
        coef = np.asarray(self.X.T @ scaled).T - np.outer(scaled.sum(axis=0), mean)
        return coef, mean, y_mean


def _centred_system(totals, rest, fit_intercept):
    """``(A'A, A'B)`` of the rows outside ``rest``, centred at their own
    weighted means (``m``, ``ybar`` relative to the shared centres):
    ``A'A = Z'SZ - S m m'``, ``A'B = Z'SY - S m ybar'``."""
    gram, xtb = totals["gram"] - rest["gram"], totals["xtb"] - rest["xtb"]
    if fit_intercept:
        total = totals["total"] - rest["weight"]
        m = (totals["x_sum"] - rest["x_sum"]) / total
        ybar = (totals["y_sum"] - rest["y_sum"]) / total
        gram = gram - total * np.outer(m, m)
        xtb = xtb - total * np.outer(m, ybar)
    return gram, xtb


def normal_equations_solution(X, targets, weights, alpha, fit_intercept):
    """The ridge solution on the rows of a dense ``X`` from its normal
    equations (one pass over ``X``: its weighted, centred Gram matrix), as
    ``Ridge``'s cholesky solver computes it.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    targets : ndarray of shape (n_samples, n_outputs)
    weights : ndarray of shape (n_samples,) or None
    alpha : ndarray of shape (n_outputs,)
    fit_intercept : bool

    Returns
    -------
    tuple or None
        ``(coef, intercept)`` of shapes (n_outputs, n_features) and
        (n_outputs,); None when the system is not positive definite to
        round-off.
    """
    moments = quadratic_moments(X, targets, weights, fit_intercept)
    try:
        coef = _penalized_solve(moments.gram, moments.moment, alpha).T
    except np.linalg.LinAlgError:
        return None
    if not fit_intercept:
        return coef, np.zeros(len(coef))
    return coef, moments.y_mean - coef @ moments.x_mean


def _penalized_solve(system, right, alpha):
    """``(system + alpha_t I)^{-1} right[:, t]`` for each column ``t``: one
    Cholesky factorization for a shared alpha, one eigendecomposition for
    per-column alphas. ``system`` is overwritten."""
    alpha = np.asarray(alpha, dtype=np.float64)
    if np.all(alpha == alpha[0]):
        # LAPACK's Cholesky in place rather than solve(assume_a="pos"): no
        # new n x n array, no condition estimate (together more than the
        # factorization itself for a 2000 x 2000 kernel), and none of
        # cho_factor's wrapping (more than the factorization of a 10 x 10
        # system). The system is symmetric: its transpose, Fortran-ordered,
        # is the same matrix, factored where it lies.
        system.flat[:: len(system) + 1] += alpha[0]
        factor, info = lapack.dpotrf(system.T, lower=0, clean=0, overwrite_a=1)
        if info != 0:
            raise np.linalg.LinAlgError(
                f"the penalized system is not positive definite (potrf info={info})"
            )
        solution, info = lapack.dpotrs(factor, right, lower=0)
        if info != 0:  # pragma: no cover - argument errors only
            raise np.linalg.LinAlgError(f"potrs failed (info={info})")
        return solution
    d, V = np.linalg.eigh(system)
    return V @ ((V.T @ right) / (np.maximum(d, 0.0)[:, None] + alpha[None, :]))
