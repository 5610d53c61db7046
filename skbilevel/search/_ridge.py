"""The closed-form search of ridge penalties: the whole K-fold CV curve, exactly.

For the squared loss with one ``alpha`` for all coefficients, or one per
target, nothing needs to be iterated. Centre each training fold (weighted
means, for the unpenalized intercept) and weight its rows by ``sqrt(s_i)``:
``A`` (n_train x p) and ``B`` (n_train x q). The fold's ridge solution is

    w(alpha) = (A'A + alpha I)^{-1} A'B.

One symmetric eigendecomposition per fold turns every ``alpha`` into a
diagonal scaling:

- ``n_train >= p``: ``A'A = V diag(d) V'`` and
  ``w(alpha) = V diag(1 / (d + alpha)) V'A'B``;
- ``p > n_train``: ``AA' = U diag(d) U'`` (the kernel) and
  ``w(alpha) = A'U diag(1 / (d + alpha)) U'B``.

Either way ``w(alpha) = basis @ diag(1 / (d + alpha)) @ C`` with ``C`` of shape
(rank, q), and the centred validation predictions are
``M diag(1 / (d + alpha)) C`` with ``M = (X_val - mean) @ basis``, computed once:
``h(alpha)`` and ``h'(alpha)`` then cost O(n_val * rank * q) for any
``alpha``, one per target included. A dense scan of the box finds the global
minimum of each target's CV curve (which need not be unimodal), and a
safeguarded root search on the exact derivative polishes it.

A tridiagonal reduction of the same matrix (``Q T Q'``, a quarter of the
eigendecomposition's work) serves as well when the targets share few
alphas: ``diag(1 / (d + alpha))`` becomes ``(T + alpha I)^{-1}``, one O(m)
Cholesky factorization per alpha; a cost model chooses per fold
(:func:`choose_factorization`).

This is what leave-one-out ``RidgeCV`` does with one decomposition of all the
data, for K-fold cross-validation at the price of K decompositions (or K
reductions).
"""

import time

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from scipy.linalg import lapack

from ..objectives.quadratic import centred_products, quadratic_moments
from ..outer import Evaluation
from ..outer.hoag import history_record
from ..utils._array_api import to_numpy
from ._service import Reporter, SearchResult

__all__ = [
    "RidgePathSearch",
    "SharedRows",
    "choose_factorization",
    "closed_form_applies",
]

# Scan density in log(alpha): 3 points per decade (the curve between scan
# points is then refined exactly), and the root search's precision.
_SCAN_PER_DECADE = 3
_ROOT_TOL = 1e-8
_ROOT_ITER = 100
# The fold factorization: None lets choose_factorization decide by cost,
# "eigen" or "tridiagonal" imposes one.
_FACTORIZATION = None
# Costs of a fold's factorizations of dimension m (n_val validation rows),
# in units of 5e-11 s, measured with one OpenBLAS thread for m from 50 to
# 2000: the tridiagonal reduction (sytrd) costs ~m^3, the eigendecomposition
# with vectors (syevd) ~4 m^3, and its read-out M = G U ~n_val m^2 (a
# matrix product). The reduction then pays for each alpha shared by the
# targets ~6e4 (~3 us of LAPACK calls: pttrf, pttrs), and for each target
# there ~500 m (the factorization and three solves) and ~5 m^2 (Q applied
# to the three columns, ormqr). A root search takes ~6 points (the best
# scan point's neighbours, 3-5 Newton steps).
_EIGEN_EXTRA = 3.0
_SYSTEM_COST = (6e4, 500.0, 5.0)
_ROOT_EVALUATIONS = 6


def closed_form_applies(folds, space):
    """Why the closed form cannot serve this search, or None when it can.

    Parameters
    ----------
    folds : list of Fold
        Engine folds.
    space : HyperSpace
    """
    if space.structure not in ("scalar", "outputs"):
        return f"{space.structure} penalties need the iterative engine"
    for fold in folds:
        if getattr(fold.inner.loss, "name", None) != "squared":
            return "the loss is not the squared loss"
        X = fold.inner.model.X
        if not (isinstance(X, np.ndarray) or sp.issparse(X)):
            return "the data are not NumPy or SciPy arrays"
        if sp.issparse(X) and X.shape[0] < X.shape[1]:
            return "sparse data with more features than samples"
    return None


def _system_size(fold):
    """Dimension of a fold's system: its training rows or its features."""
    X, weight = fold.inner.model.X, fold.inner.sample_weight
    n = X.shape[0] if weight is None else int(np.count_nonzero(to_numpy(weight)))
    return min(n, X.shape[1])


def _dense(X):
    return X.toarray() if sp.issparse(X) else X


def _take(X, rows):
    """Rows ``rows`` of ``X`` (all of ``X`` when None)."""
    return X if rows is None else X[rows]


def _training_rows(X, weight):
    """The rows of ``X`` a fold trains on: None for all of them, else the
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


def choose_factorization(size, n_val, n_targets, n_points, n_alphas):
    """``"tridiagonal"`` or ``"eigen"``: the cheaper for one fold's system.

    Parameters
    ----------
    size : int
        Dimension ``m`` of the fold's system (its Gram matrix or kernel).
    n_val : int
        Validation samples of the fold.
    n_targets : int
    n_points : int
        Points of the search at which every target shares one alpha (the
        scan).
    n_alphas : int
        1 for one alpha, ``n_targets`` for one per target (each target's
        root search then solves systems of its own).
    """
    if size < 2:  # nothing to reduce
        return "eigen"
    if _FACTORIZATION is not None:
        return _FACTORIZATION
    per_system, per_solve, per_lift = _SYSTEM_COST
    n_systems = n_points + _ROOT_EVALUATIONS * n_alphas
    columns = (n_points + _ROOT_EVALUATIONS) * n_targets
    eigen = _EIGEN_EXTRA * size**3 + n_val * size**2
    tridiagonal = n_systems * per_system + columns * size * (
        per_solve + per_lift * size
    )
    return "tridiagonal" if eigen > tridiagonal else "eigen"


def _reflect(reflectors, tau, V, trans):
    """``Q V`` (``trans="N"``) or ``Q'V`` (``"T"``), ``Q = diag(1, H)`` the
    orthogonal factor of LAPACK's lower ``sytrd``, ``H`` the product of the
    Householder reflectors below its subdiagonal (applied as ``ormqr`` does)."""
    out = np.array(V, dtype=np.float64, order="F", ndmin=2)
    if out.shape[0] < 2 or out.shape[1] == 0:
        return out
    lwork = lapack.dormqr("L", trans, reflectors, tau, out[1:], -1)[1]
    part, _, info = lapack.dormqr(
        "L", trans, reflectors, tau, out[1:], int(np.ravel(lwork)[0])
    )
    if info != 0:  # pragma: no cover - argument errors only
        raise np.linalg.LinAlgError(f"ormqr failed (info={info})")
    out[1:] = part
    return out


class _FoldPath:
    """The factorization of one fold: ``h`` and ``h'`` at any alpha.

    The fold's system ``S`` (``A'A`` of dimension p, or the kernel ``AA'`` of
    dimension n_train), right-hand sides ``R`` (``A'B``, or ``B``) and
    read-out ``G`` (the centred validation rows, or their weighted cross
    products with the training rows) give the centred validation predictions
    ``G (S + alpha I)^{-1} R``. One orthogonal factor ``S = Q T Q'`` serves
    every alpha: with ``C = Q'R`` computed once, the predictions are
    ``G Q (T + alpha I)^{-1} C``, and the derivatives in alpha take the next
    powers of the same inverse. ``T`` is

    - ``"eigen"``: diagonal (``S = U diag(d) U'``): any number of alphas,
      one per target included, at the price of a diagonal scaling and a
      product with ``M = G U``, formed once;
    - ``"tridiagonal"``: tridiagonal (LAPACK ``sytrd``, about a quarter of
      the eigendecomposition's work): each alpha then costs one Cholesky
      factorization of ``T + alpha I`` and a triangular solve per power, O(m)
      each, and ``Q`` (its Householder reflectors) is applied to the
      solutions (``G Q`` would cost more than the columns a search asks
      for). Should ``T + alpha I`` not be numerically positive definite
      (``S`` singular to round-off, alpha below it), ``T`` is
      eigendecomposed (a fraction of the work again) and the path continues
      as ``"eigen"``.

    Parameters
    ----------
    fold : Fold
    shared : tuple or None, default=None
        The fold's products computed from all the rows
        (:meth:`SharedRows.products`), or None to compute the fold's own.
    factorization : {"eigen", "tridiagonal"} or None, default=None
        None: :func:`choose_factorization` for ``workload``.
    workload : tuple of int, default=(25, 1)
        ``(n_points, n_alphas)`` of :func:`choose_factorization`.
    """

    def __init__(self, fold, shared=None, factorization=None, workload=(25, 1)):
        inner, outer = fold.inner, fold.outer
        X = inner.model.X
        y = np.asarray(to_numpy(inner.y), dtype=np.float64)
        self.one_target = y.ndim == 1
        Y = y.reshape(len(y), -1)
        weight = inner.sample_weight
        weight = None if weight is None else np.asarray(to_numpy(weight), float)
        self.fit_intercept = inner.model.fit_intercept
        X_val = outer.model.X
        kind, rows = (None, None) if shared is None else (shared[0], shared[-1])
        if shared is None:
            rows = _training_rows(X, weight)
        if rows is not None:  # the fold's training rows of X
            Y, weight = Y[rows], weight[rows]
        if weight is not None and np.all(weight == 1.0):
            weight = None
        n, p = len(Y), X.shape[1]
        self._X = self._rows = self._root = None  # the kernel's training data
        if n >= p:
            if kind == "gram":  # the fold's share of the products of all rows
                s = np.ones(n) if weight is None else weight
                means = (None, None)
                if self.fit_intercept:
                    means = (_column_means(X, rows, s), s @ Y / s.sum())
                self._set_means(*means, p, Y.shape[1])
                system, right = shared[1:-1]
            else:
                # the Gram matrix of the centred, weighted rows and A'B: the
                # engine's quadratic moments (a sparse X stays sparse)
                moments = quadratic_moments(
                    _take(X, rows), Y, weight, self.fit_intercept
                )
                self._set_means(moments.x_mean, moments.y_mean, p, Y.shape[1])
                system, right = moments.gram, moments.moment
            readout = _dense(X_val) - self.x_mean
        else:
            blocks = shared[1:-1] if kind == "kernel" else None
            system, right, readout = self._kernel_system(
                X, rows, X_val, Y, weight, blocks
            )
        if factorization is None or len(system) < 2:
            factorization = choose_factorization(
                len(system), len(readout), Y.shape[1], *workload
            )
        self.factorization = factorization
        self.rank = len(system)
        self._basis = self._reflectors = self.d = None
        if factorization == "eigen":
            d, self._basis = np.linalg.eigh(system)
            self.d = np.maximum(d, 0.0)
            self.C = self._basis.T @ right
            self.M = readout @ self._basis
        else:
            # S symmetric: S' is S, Fortran-ordered, and S is the fold's own
            # array (overwritten by the reduction)
            system = np.asarray(system, dtype=np.float64)
            lwork = int(lapack.dsytrd_lwork(len(system), lower=1)[0])
            reduced, diag, offdiag, tau, info = lapack.dsytrd(
                system.T, lower=1, lwork=lwork, overwrite_a=1
            )
            if info != 0:  # pragma: no cover - argument errors only
                raise np.linalg.LinAlgError(f"sytrd failed (info={info})")
            self._tridiagonal = (diag, offdiag)
            self._reflectors = (np.asfortranarray(reduced[1:, :-1]), tau)
            del system, reduced
            self.C = _reflect(*self._reflectors, right, "T")
            self.M, self._readout = None, readout  # G (Q z), never G Q
        y_val = np.asarray(to_numpy(outer.y), dtype=np.float64)
        self.Y_val = y_val.reshape(len(y_val), -1)
        s_val = outer.sample_weight
        self.s_val = (
            np.ones(X_val.shape[0])
            if s_val is None
            else np.asarray(to_numpy(s_val), dtype=np.float64)
        )
        # F = scale / sum(s) * sum_i s_i 0.5 ||r_i||^2
        self.factor = outer.scale / self.s_val.sum() * 0.5
        # built when many points are asked at once (with M)
        self._compact = None if self.M is not None else False
        self._lifted = {}  # Q z of points evaluated, by alpha

    def _set_means(self, x_mean, y_mean, n_features, n_outputs):
        """The intercept's weighted means (zeros without one)."""
        self.x_mean = np.zeros(n_features) if x_mean is None else x_mean
        self.y_mean = np.zeros(n_outputs) if y_mean is None else y_mean

    def _kernel_system(self, X, rows, X_val, Y, weight, blocks):
        """More features than samples: the fold's weighted kernel ``AA'``,
        ``B`` and the validation rows' weighted cross products.

        ``Z = X - centre`` (the fold's own mean, or the shared centre of all
        rows); the weighted fold mean of ``Z`` is ``m = Z's / S``, and the
        kernel of the fold-centred rows follows from ``ZZ'`` without another
        copy: ``(Z - 1m')(Z - 1m')' = ZZ' - u1' - 1u' + c`` with
        ``u = ZZ's / S``, ``c = s'u / S`` (the same for the validation
        rows' cross products, with ``v = Z_val Z's / S``).
        """
        s = np.ones(len(Y)) if weight is None else weight
        means = (None, None)
        if self.fit_intercept:
            means = (_column_means(X, rows, s), s @ Y / s.sum())
        self._set_means(*means, X.shape[1], Y.shape[1])
        if blocks is None:
            Z = _dense(_take(X, rows)) - self.x_mean
            kernel, cross = Z @ Z.T, (_dense(X_val) - self.x_mean) @ Z.T
            del Z
        else:  # blocks of the shared kernel: copies of their own
            kernel, cross = blocks
        if self.fit_intercept:
            total = s.sum()
            u, v = kernel @ s / total, cross @ s / total
            c = s @ u / total
            kernel -= u[:, None]
            kernel -= u[None, :] - c
            cross -= v[:, None]
            cross -= u[None, :] - c
        self._X, self._rows = X, rows
        right = Y - self.y_mean
        if weight is not None:
            self._root = root = np.sqrt(weight)
            kernel *= root[:, None]
            kernel *= root[None, :]
            cross *= root[None, :]
            right *= root[:, None]
        return kernel, right, cross

    def _powers(self, alphas, n_powers):
        """``(T + alpha I)^{-k} C`` for ``k = 1..n_powers`` at each point,
        shape (rank, n_powers, n_points, q); ``alphas`` of shape
        (n_points, q)."""
        n_points, q = alphas.shape
        if self.d is not None:
            inverse = 1.0 / (self.d[:, None, None] + alphas[None])
            powers = [inverse * self.C[:, None, :]]
            for _ in range(n_powers - 1):
                powers.append(inverse * powers[-1])
            return np.stack(powers, axis=1)
        diag, offdiag = self._tridiagonal
        out = np.empty((self.rank, n_powers, n_points, q))
        for i, row in enumerate(alphas):
            # targets that share an alpha share its factorization
            values, index = np.unique(row, return_inverse=True)
            for j, alpha in enumerate(values):
                columns = slice(None) if len(values) == 1 else index == j
                factor_d, factor_e, info = lapack.dpttrf(diag + alpha, offdiag)
                if info != 0:
                    self._diagonalize()
                    return self._powers(alphas, n_powers)
                z = self.C[:, columns]
                for k in range(n_powers):
                    z = lapack.dpttrs(factor_d, factor_e, z)[0]
                    out[:, k, i, columns] = z
        return out

    def _diagonalize(self):
        """``T = Z diag(d) Z'``: continue as the eigen path (``d`` clipped at
        zero, as there)."""
        d, Z = scipy.linalg.eigh_tridiagonal(*self._tridiagonal)
        self.d = np.maximum(d, 0.0)
        self.C, self._basis = Z.T @ self.C, Z
        self.M, self._readout = self._readout @ self._lift(np.eye(self.rank)), None
        self._compact = None
        self.factorization = "eigen"

    def _lift(self, V):
        """``Q V``: coordinates in the factorization's basis to those of ``S``."""
        if self._basis is not None:
            V = self._basis @ V
        if self._reflectors is not None:
            V = _reflect(*self._reflectors, V, "N")
        return V

    def _remember(self, alphas, lifted):
        """Keep ``Q z`` of each point, shape (rank, n_points, q), for its
        predictions and solutions (asked for after the search)."""
        for row, column in zip(alphas, np.moveaxis(lifted, 1, 0)):
            self._lifted[row.tobytes()] = column

    def _lifted_columns(self, alphas):
        """``Q (T + alpha I)^{-1} C`` of every point side by side, shape
        (rank, n_points * q): one matrix product then serves all points."""
        alphas = np.asarray(alphas, dtype=np.float64).reshape(len(alphas), -1)
        missing = [
            i for i, row in enumerate(alphas) if row.tobytes() not in self._lifted
        ]
        if missing:
            z = self._powers(alphas[missing], 1)[:, 0]
            lifted = self._lift(z.reshape(self.rank, -1)).reshape(z.shape)
            self._remember(alphas[missing], lifted)
        return np.concatenate([self._lifted[row.tobytes()] for row in alphas], axis=1)

    def curve(self, alphas, second=True):
        """``F_t`` and its first two derivatives in ``log alpha_t``, at many alphas.

        ``alphas`` has shape (n_points, q); returns three arrays of that shape
        (the second derivative None unless ``second``), from one matrix
        product for all points.
        """
        alphas = np.asarray(alphas, dtype=np.float64)
        n_points, q = alphas.shape
        # predictions P = M z1, dP/dalpha = -M z2, d2P/dalpha2 = 2 M z3 with
        # z_k = (T + alpha I)^{-k} C
        n_parts = 3 if second else 2
        stacked = self._powers(alphas, n_parts).reshape(self.rank, -1)
        rank, n_val = self.rank, len(self.Y_val)
        if self._compact is None and n_val > rank and stacked.shape[1] > 2 * rank:
            self._compact = self._compact_form()
        if self._compact:
            # weighted residuals in the basis of R: ||R z - u||^2 + the part
            # of the targets no alpha reaches (sums of squares: no cancellation)
            R, u, floor = self._compact
            every = (R @ stacked).reshape(rank, n_parts, n_points, q)
            weighted = residual = every[:, 0] - u[:, None, :]
            weight, extra = 1.0, floor
        else:
            if self.M is not None:
                every = self.M @ stacked
            else:
                lifted = self._lift(stacked)
                self._remember(alphas, lifted.reshape(rank, n_parts, n_points, q)[:, 0])
                every = self._readout @ lifted
            every = every.reshape(n_val, n_parts, n_points, q)
            residual = every[:, 0] + self.y_mean - self.Y_val[:, None, :]
            weight, extra = self.s_val[:, None, None], 0.0
            weighted = weight * residual
        slope = -every[:, 1]
        values = self.factor * (np.sum(weighted * residual, axis=0) + extra)
        first = 2 * self.factor * np.sum(weighted * slope, axis=0)
        if not second:
            return values, alphas * first, None
        bend = 2 * every[:, 2]
        second = 2 * self.factor * np.sum(weight * slope**2 + weighted * bend, axis=0)
        # in log alpha: d/dt = alpha d/dalpha, d2/dt2 = alpha F' + alpha^2 F''
        return values, alphas * first, alphas * first + alphas**2 * second

    def _compact_form(self):
        """``(R, u, floor)`` with ``sqrt(s_val) M = QR`` (reduced QR),
        ``u = Q' sqrt(s_val) (Y_val - y_mean)`` and ``floor`` the targets'
        weighted sum of squares outside ``range(M)``, per target.

        Then the weighted squared residuals at any alpha are
        ``||R z - u||^2 + floor`` with ``z = (T + alpha I)^{-1} C``: many points
        and targets cost ``rank^2`` each instead of ``n_val * rank``, after
        one QR (worth it when the columns outnumber twice the rank).
        """
        root = np.sqrt(self.s_val)[:, None]
        target = root * (self.Y_val - self.y_mean)
        Q, R = np.linalg.qr(root * self.M)
        u = Q.T @ target
        floor = np.sum((target - Q @ u) ** 2, axis=0)
        return R, u, floor

    def predictions(self, alphas):
        """Validation predictions at each of ``alphas`` (shape (n_points, q)).

        Returns a list of arrays of shape (n_val,) for one target, else
        (n_val, q): what the fold model's ``predict`` returns, from one matrix
        product for all points.
        """
        q = self.C.shape[1]
        if self.M is not None:
            alphas = np.asarray(alphas, dtype=np.float64).reshape(len(alphas), -1)
            every = self.M @ self._powers(alphas, 1).reshape(self.rank, -1)
        else:
            every = self._readout @ self._lifted_columns(alphas)
        out = []
        for k in range(len(alphas)):
            prediction = every[:, k * q : (k + 1) * q] + self.y_mean
            out.append(prediction[:, 0] if self.one_target else prediction)
        return out

    def solutions(self, alphas):
        """``(coef, intercept)`` in the engine's layout at each of ``alphas``.

        ``alphas`` has shape (n_points, q); the coefficients of all points are
        computed with one matrix product.
        """
        q = self.C.shape[1]
        coefs = self._lifted_columns(alphas)
        if self._X is not None:  # the kernel's: A' coefs with A = root (X - x_mean)
            if self._root is not None:
                coefs = self._root[:, None] * coefs
            coefs = _centred_transpose(self._X, self.x_mean, coefs, self._rows)
        out = []
        for k in range(len(alphas)):
            coef = coefs[:, k * q : (k + 1) * q]
            intercept = self.y_mean - self.x_mean @ coef if self.fit_intercept else None
            out.append((coef[:, 0] if self.one_target else coef, intercept))
        return out


class RidgePathSearch:
    """The search of :class:`GradientSearch`'s interface, in closed form.

    Parameters
    ----------
    folds : list of Fold
        Engine folds of the squared loss (NumPy / SciPy data).
    space : HyperSpace
        ``"scalar"`` (one alpha) or ``"outputs"`` (one per target).
    options : SearchOptions
        Only ``verbose`` and ``callback`` apply.
    keep_solutions : bool, default=False
        Accepted for the interface; solutions are computed on demand.
    rows : SharedRows or None, default=None
        All folds' rows of one array: fold kernels (or Gram matrices) come
        from products of all the rows.
    """

    def __init__(self, folds, space, options, *, keep_solutions=False, rows=None):
        self.folds = folds
        self.rows = rows if rows is not None and rows.applies(folds) else None
        n_outputs = folds[0].inner.model.n_outputs
        n_hyper = n_outputs if space.structure == "outputs" else 1
        self.space = space.resize(n_hyper)
        self.options = options
        self.n_outputs = n_outputs
        self.history = []
        self.polished = set()
        self._paths = None
        self._solutions = {}
        self._predictions = []

    @property
    def param(self):
        """The parameter's name on the estimator (``"C"``, not ``"clf__C"``)."""
        return self.space.param

    def _alpha(self, lam):
        """Per-target alpha (shape (q,)) from ``lam`` (shape (n_hyper,))."""
        return np.broadcast_to(np.exp(np.asarray(lam, float)), (self.n_outputs,))

    def _evaluate(self, lams, second=True):
        """CV loss and its log-derivatives at points ``lams`` (n, n_hyper).

        Returns ``fold_values`` (K, n) and the per-hyperparameter mean slopes
        and curvatures over folds, each (n, n_hyper): one matrix product per
        fold for all points.
        """
        lams = np.asarray(lams, dtype=np.float64).reshape(len(lams), -1)
        alphas = np.broadcast_to(np.exp(lams), (len(lams), self.n_outputs))
        curves = [path.curve(alphas, second) for path in self._paths]
        values = np.array([c[0] for c in curves])  # (K, n, q)
        slopes = np.mean([c[1] for c in curves], axis=0)
        bends = np.mean([c[2] for c in curves], axis=0) if second else None
        if lams.shape[1] == 1:  # one alpha for all targets: the sum's slope
            slopes = slopes.sum(axis=1, keepdims=True)
            bends = None if bends is None else bends.sum(axis=1, keepdims=True)
        return values, slopes, bends

    def _record(self, lam, fold_values, grad, phase, start):
        """One history record (every closed-form point is exact: polished)."""
        lam = np.asarray(lam, dtype=np.float64).reshape(-1)
        evaluation = Evaluation(
            lam=lam,
            value=float(fold_values.mean()),
            grad=np.asarray(grad, dtype=np.float64),
            fold_values=fold_values,
            inner_iter=0,
            n_fun=0,
            n_hvp=0,
            inner_converged=True,
            residual=None,
            time=0.0,
        )
        record = history_record(
            evaluation,
            iteration=len(self.history),
            phase=phase,
            accepted=True,
            step=None,
            inner_tol=0.0,
            elapsed=time.perf_counter() - start,
            gradient_step=0,
        )
        record[self.param] = self.space.values(lam)
        self.history.append(record)
        self.polished.add(record["iteration"])
        return record

    def run(self, callback_ctx=None, owner=None):
        """Scan the box, then find each target's minimum exactly.

        Returns
        -------
        SearchResult
        """
        options, space = self.options, self.space
        start = time.perf_counter()
        reporter = Reporter(options, space, callback_ctx, owner, 0)
        low, high = space.lam_low, space.lam_high
        # each hyperparameter scans its own box, with the same number of
        # points (3 per decade of the widest box)
        widest = float(np.max(high - low))
        n_points = max(int(np.ceil(widest / np.log(10) * _SCAN_PER_DECADE)) + 1, 3)
        factorizations = [
            choose_factorization(
                _system_size(fold),
                fold.outer.model.n_samples,
                self.n_outputs,
                n_points,
                low.size,
            )
            for fold in self.folds
        ]
        if options.verbose > 0:
            kinds = {
                "eigen": "eigendecomposition",
                "tridiagonal": "tridiagonal reduction",
            }
            print(
                f"Fitting {len(self.folds)} folds: closed-form search of "
                f"{space.name} (one "
                + " or ".join(kinds[k] for k in sorted(set(factorizations)))
                + " per fold)",
                flush=True,
            )
        self._paths = [
            _FoldPath(
                fold, None if self.rows is None else self.rows.products(k), method
            )
            for k, (fold, method) in enumerate(zip(self.folds, factorizations))
        ]
        self.rows = None  # the shared kernel is no longer needed
        setup = time.perf_counter() - start
        lams = np.linspace(high, low, n_points)  # shape (n_points, n_hyper)
        # the curvatures too: the root search starts from the best scan point
        values, slopes, bends = self._evaluate(lams)
        scan_time = time.perf_counter() - start - setup
        stop = None
        for k, lam in enumerate(lams):
            record = self._record(
                lam, values[:, k].sum(axis=1), slopes[k], "scan", start
            )
            # the setup and the scan's one product per fold, spread evenly
            record["time"] = (setup + scan_time) / len(lams)
            if reporter.report(record):
                stop = "stopped by callback"
                break
        if stop is None:
            at = time.perf_counter()
            lam, (point_values, point_slopes) = self._minimize(
                lams, values, slopes, bends
            )
            record = self._record(lam, point_values, point_slopes, "root", start)
            record["time"] += time.perf_counter() - at
            reporter.report(record)
            message = "global minimum of the scanned CV curve, refined exactly"
        else:
            message = stop
        values = [r["value"] for r in self.history]
        best = int(np.argmin(values))
        result = SearchResult(
            lam=self.history[best]["lam"].copy(),
            value=self.history[best]["value"],
            best_index=best,
            n_iter=0,
            converged=stop is None,
            message=message,
            history=self.history,
        )
        reporter.finish(result)
        return result

    def _minimize(self, lams, values, slopes, bends):
        """Each target's (or the sum's) minimizer: the best scan point, refined
        by a safeguarded Newton search for the root of the exact derivative
        on the side where the curve descends.

        ``lams`` has shape (n_points, n_hyper), from the top of each box down;
        ``values`` the per-fold, per-target CV losses there, shape (K,
        n_points, q); ``slopes`` and ``bends`` the derivatives in
        ``log alpha`` there, shape (n_points, n_hyper).

        Returns the minimizer (shape (n_hyper,)) and its fold values (summed
        over targets, shape (K,)) and slopes (shape (n_hyper,)).
        """
        table = values.mean(axis=0)
        per_target = lams.shape[1] > 1
        curves = table if per_target else table.sum(axis=1, keepdims=True)
        n_points, columns = lams.shape[0], np.arange(lams.shape[1])
        best = np.argmin(curves, axis=0)  # scan index per hyperparameter
        lam = lams[best, columns]
        g_best, dg_best = slopes[best, columns], bends[best, columns]
        # the fold values at the best point: a target's own (its loss depends
        # on its own alpha only), or all targets' at the scalar's best point
        if per_target:
            fold_t = values[:, best, np.arange(values.shape[2])]
        else:
            fold_t = values[:, best[0]]
        # h' > 0 at the best point: the minimum lies below it (towards the
        # next scan point down, index best + 1); h' < 0: above it
        index_below = np.minimum(best + 1, n_points - 1)
        index_above = np.maximum(best - 1, 0)
        below, above = lams[index_below, columns], lams[index_above, columns]
        a = np.where(g_best > 0, below, lam)
        b = np.where(g_best > 0, lam, above)
        g_a = np.where(g_best > 0, slopes[index_below, columns], g_best)
        g_b = np.where(g_best > 0, g_best, slopes[index_above, columns])
        # a bracket holds a root where h' goes from negative to positive
        bracketed = (g_a < 0) & (g_b > 0) & (b > a)
        t, g_t, dg_t = lam, g_best, dg_best
        scale = np.maximum(np.abs(g_a), np.abs(g_b))  # |h'| at the scan points
        # Newton on h' from the best scan point, kept inside the shrinking
        # bracket (a step that leaves it, or a non-positive curvature, takes
        # the regula falsi point instead): quadratic near the root, never
        # worse than the bracket's secant.
        for _ in range(_ROOT_ITER):
            active = bracketed & (b - a > _ROOT_TOL)
            if not np.any(active):
                break
            newton = t - g_t / np.where(dg_t > 0, dg_t, 1.0)
            secant = b - g_b * (b - a) / np.where(active, g_b - g_a, 1.0)
            inside = (dg_t > 0) & (newton > a) & (newton < b)
            step = np.where(inside, newton, secant)
            converged = active & (np.abs(step - t) <= _ROOT_TOL)
            t = np.where(active, step, t)
            new_values, new_g, new_dg = self._evaluate(t[None])
            fold_t = np.where(active, new_values[:, 0], fold_t)
            g_t = np.where(active, new_g[0], g_t)
            dg_t = np.where(active, new_dg[0], dg_t)
            left, right = active & (g_t < 0), active & (g_t >= 0)
            a, g_a = np.where(left, t, a), np.where(left, g_t, g_a)
            b, g_b = np.where(right, t, b), np.where(right, g_t, g_b)
            # a Newton step below the tolerance, or a root found to round-off,
            # closes the bracket
            flat = np.abs(g_t) <= 1e-12 * scale
            done = active & (converged | flat)
            a, b = np.where(done, t, a), np.where(done, t, b)
        # without a sign change, the best scan point (an end of the box, or
        # a flat stretch) is the minimum; t is that point there
        return t, (fold_t.sum(axis=1), g_t)

    def polish_best(self):
        """Every value is exact: the best point needs no re-solve."""
        return int(np.argmin([r["value"] for r in self.history]))

    def polish(self, index):
        """Nothing to re-solve: the closed form is exact."""
        self.polished.add(index)

    def solutions(self, index):
        """Every fold's ``(coef, intercept)`` at evaluated point ``index``.

        The first call computes that point's (the best fold models need no
        other); a call for another point computes every remaining point at
        once (one matrix product per fold: scoring through the fold models
        asks for all). Cached.
        """
        if index not in self._solutions:
            wanted = [index]
            if self._solutions:
                wanted = [
                    i for i in range(len(self.history)) if i not in self._solutions
                ]
            alphas = [self._alpha(self.history[i]["lam"]) for i in wanted]
            per_fold = [path.solutions(alphas) for path in self._paths]
            self._solutions.update(zip(wanted, map(list, zip(*per_fold))))
        return self._solutions[index]

    def predictions(self, index):
        """Every fold's validation predictions at evaluated point ``index``.

        The fold models' ``predict`` on the validation folds, without building
        them: lets the squared-error metrics score every point at once.
        Computed for every evaluated point at the first call, then cached.
        """
        if len(self._predictions) != len(self.history):
            alphas = [self._alpha(record["lam"]) for record in self.history]
            per_fold = [path.predictions(alphas) for path in self._paths]
            self._predictions = [list(point) for point in zip(*per_fold)]
        return self._predictions[index]
