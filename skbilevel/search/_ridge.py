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

This is what leave-one-out ``RidgeCV`` does with one decomposition of all the
data, for K-fold cross-validation at the price of K decompositions.
"""

import time

import numpy as np
import scipy.sparse as sp

from ..objectives.quadratic import centred_products, quadratic_moments
from ..outer import Evaluation
from ..outer.hoag import history_record
from ..utils._array_api import to_numpy
from ._service import Reporter, SearchResult

__all__ = ["RidgePathSearch", "SharedRows", "closed_form_applies"]

# Scan density in log(alpha): 3 points per decade (the curve between scan
# points is then refined exactly), and the root search's precision.
_SCAN_PER_DECADE = 3
_ROOT_TOL = 1e-8
_ROOT_ITER = 100


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


def _dense(X):
    return X.toarray() if sp.issparse(X) else X


def _centred_transpose(X, mean, V, block=4096):
    """``(X - mean)' V`` by blocks of rows (no centred copy of ``X``)."""
    out = np.zeros((X.shape[1], V.shape[1]))
    for start in range(0, X.shape[0], block):
        rows = slice(start, start + block)
        out += (_dense(X[rows]) - mean).T @ V[rows]
    return out


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
        may give, counts twice there: not a block of the products)."""
        if not (isinstance(self.X, np.ndarray) and len(self.splits) == len(folds)):
            return False
        n_features = self.X.shape[1]
        for (train, test), fold in zip(self.splits, folds):
            if (
                fold.inner.model.X.shape != (len(train), n_features)
                or fold.outer.model.X.shape != (len(test), n_features)
                or np.unique(train).size != train.size
            ):
                return False
        self._folds = folds
        return True

    def products(self, index):
        """``("kernel", train kernel, validation x train cross products)`` or
        ``("gram", A'A, A'B)`` of fold ``index`` (see :class:`_FoldPath`), or
        None when the fold computes its own."""
        train, test = self.splits[index]
        if len(train) < self.X.shape[1]:
            if self._kernel is None:
                centre = self.X.mean(axis=0) if self.fit_intercept else 0.0
                Z = self.X - centre
                self._kernel = Z @ Z.T
            kernel = self._kernel
            return "kernel", kernel[np.ix_(train, train)], kernel[np.ix_(test, train)]
        totals = self._gram_totals()
        if totals is None:
            return None
        return ("gram",) + self._fold_gram(train, totals)

    def _row_data(self):
        """Every row's training weight and target, or None if some fold gives
        a row another weight or target than a fold before it."""
        n = self.X.shape[0]
        weights, targets = np.full(n, np.nan), None
        for (train, _), fold in zip(self.splits, self._folds):
            inner = fold.inner
            w = inner.sample_weight
            w = np.ones(len(train)) if w is None else np.asarray(to_numpy(w), float)
            y = np.asarray(to_numpy(inner.y), dtype=np.float64).reshape(len(train), -1)
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
        rest = np.setdiff1d(np.arange(self.X.shape[0]), train)
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


class _FoldPath:
    """The decomposition of one fold: ``h`` and ``h'`` at any alpha.

    ``shared``: the fold's products computed from all the rows
    (:meth:`SharedRows.products`), or None to compute the fold's own.
    """

    def __init__(self, fold, shared=None):
        inner, outer = fold.inner, fold.outer
        X = inner.model.X
        y = np.asarray(to_numpy(inner.y), dtype=np.float64)
        self.one_target = y.ndim == 1
        Y = y.reshape(len(y), -1)
        weight = inner.sample_weight
        weight = None if weight is None else np.asarray(to_numpy(weight), float)
        s = np.ones(X.shape[0]) if weight is None else weight
        self.fit_intercept = inner.model.fit_intercept
        X_val = outer.model.X
        n, p = X.shape
        self.basis = None
        kind = None if shared is None else shared[0]
        if n >= p and kind != "gram":
            # the Gram matrix of the centred, weighted rows and A'B: the
            # engine's quadratic moments (a sparse X stays sparse)
            moments = quadratic_moments(X, Y, weight, self.fit_intercept)
            self._set_means(moments.x_mean, moments.y_mean, p, Y.shape[1])
            gram, xtb = moments.gram, moments.moment
        else:
            means = (None, None)
            if self.fit_intercept:
                means = (np.asarray(X.T @ s).ravel() / s.sum(), s @ Y / s.sum())
            self._set_means(*means, p, Y.shape[1])
            if n >= p:  # the fold's share of the products of all the rows
                gram, xtb = shared[1:]
        if n >= p:
            d, self.basis = np.linalg.eigh(gram)
            self.C = self.basis.T @ xtb
        else:
            blocks = shared[1:] if kind == "kernel" else None
            d = self._kernel_path(X, X_val, Y, s, blocks)
        self.d = np.maximum(d, 0.0)
        y_val = np.asarray(to_numpy(outer.y), dtype=np.float64)
        self.Y_val = y_val.reshape(len(y_val), -1)
        s_val = outer.sample_weight
        self.s_val = (
            np.ones(X_val.shape[0])
            if s_val is None
            else np.asarray(to_numpy(s_val), dtype=np.float64)
        )
        if self.basis is not None:
            self.M = (_dense(X_val) - self.x_mean) @ self.basis
        # F = scale / sum(s) * sum_i s_i 0.5 ||r_i||^2
        self.factor = outer.scale / self.s_val.sum() * 0.5
        self._compact = None  # built when many points are asked at once

    def _set_means(self, x_mean, y_mean, n_features, n_outputs):
        """The intercept's weighted means (zeros without one)."""
        self.x_mean = np.zeros(n_features) if x_mean is None else x_mean
        self.y_mean = np.zeros(n_outputs) if y_mean is None else y_mean

    def _kernel_path(self, X, X_val, Y, s, blocks):
        """More features than samples: eigendecompose the fold's kernel.

        ``Z = X - centre`` (the fold's own mean, or the shared centre of all
        rows); the weighted fold mean of ``Z`` is ``m = Z's / S``, and the
        kernel of the fold-centred rows follows from ``ZZ'`` without another
        copy: ``(Z - 1m')(Z - 1m')' = ZZ' - u1' - 1u' + c`` with
        ``u = ZZ's / S``, ``c = s'u / S`` (the same for the validation
        rows' cross products, with ``v = Z_val Z's / S``).
        """
        if blocks is None:
            Z = _dense(X) - self.x_mean
            kernel, cross = Z @ Z.T, (_dense(X_val) - self.x_mean) @ Z.T
            del Z
        else:
            kernel, cross = blocks
        if self.fit_intercept:
            total = s.sum()
            u, v = kernel @ s / total, cross @ s / total
            c = s @ u / total
            kernel = kernel - u[:, None] - u[None, :] + c
            cross = cross - v[:, None] - u[None, :] + c
        root = np.sqrt(s)
        d, U = np.linalg.eigh(root[:, None] * kernel * root[None, :])
        self._X, self._weighted_U = X, root[:, None] * U
        # C = U'B with B = root (Y - y_mean)
        self.C = U.T @ (root[:, None] * (Y - self.y_mean))
        self.M = cross @ self._weighted_U
        return d

    def _columns(self, alphas):
        """``C / (d + alpha)`` of every point side by side, shape
        (rank, n_points * q): one matrix product then serves all points."""
        alphas = np.asarray(alphas, dtype=np.float64).reshape(len(alphas), -1)
        scaled = self.C[:, None, :] / (self.d[:, None, None] + alphas[None])
        return scaled.reshape(len(self.d), -1)

    def curve(self, alphas, second=True):
        """``F_t`` and its first two derivatives in ``log alpha_t``, at many alphas.

        ``alphas`` has shape (n_points, q); returns three arrays of that shape
        (the second derivative None unless ``second``), from one matrix
        product for all points.
        """
        alphas = np.asarray(alphas, dtype=np.float64)
        n_points, q = alphas.shape
        inverse = 1.0 / (self.d[:, None, None] + alphas[None])  # (rank, n, q)
        scaled = inverse * self.C[:, None, :]
        # predictions P, dP/dalpha = -M inv^2 C, d2P/dalpha2 = 2 M inv^3 C
        parts = [scaled, inverse * scaled] + ([inverse**2 * scaled] if second else [])
        stacked = np.stack(parts, axis=1).reshape(len(self.d), -1)
        rank, n_val = len(self.d), len(self.M)
        if self._compact is None and n_val > rank and stacked.shape[1] > 2 * rank:
            self._compact = self._compact_form()
        if self._compact:
            # weighted residuals in the basis of R: ||R z - u||^2 + the part
            # of the targets no alpha reaches (sums of squares: no cancellation)
            R, u, floor = self._compact
            every = (R @ stacked).reshape(rank, len(parts), n_points, q)
            weighted = residual = every[:, 0] - u[:, None, :]
            weight, extra = 1.0, floor
        else:
            every = (self.M @ stacked).reshape(n_val, len(parts), n_points, q)
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
        ``||R z - u||^2 + floor`` with ``z = C / (d + alpha)``: many points
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
        scaled = self._columns(alphas)
        every = self.M @ scaled
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
        scaled = self._columns(alphas)
        if self.basis is not None:
            coefs = self.basis @ scaled
        else:  # A' U z with A = root (X - x_mean)
            coefs = _centred_transpose(self._X, self.x_mean, self._weighted_U @ scaled)
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
        self._solutions = []
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
        if options.verbose > 0:
            print(
                f"Fitting {len(self.folds)} folds: closed-form search of "
                f"{space.name} (one eigendecomposition per fold)",
                flush=True,
            )
        self._paths = [
            _FoldPath(fold, None if self.rows is None else self.rows.products(k))
            for k, fold in enumerate(self.folds)
        ]
        self.rows = None  # the shared kernel is no longer needed
        setup = time.perf_counter() - start
        low, high = space.lam_low, space.lam_high
        # each hyperparameter scans its own box, with the same number of
        # points (3 per decade of the widest box)
        widest = float(np.max(high - low))
        n_points = max(int(np.ceil(widest / np.log(10) * _SCAN_PER_DECADE)) + 1, 3)
        lams = np.linspace(high, low, n_points)  # shape (n_points, n_hyper)
        values, slopes, _ = self._evaluate(lams, second=False)
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
            lam = self._minimize(lams, values.mean(axis=0), slopes)
            at = time.perf_counter()
            point_values, point_slopes, _ = self._evaluate(lam[None])
            record = self._record(
                lam, point_values[:, 0].sum(axis=1), point_slopes[0], "root", start
            )
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

    def _minimize(self, lams, table, slopes):
        """Each target's (or the sum's) minimizer: the best scan point, refined
        by a safeguarded Newton search for the root of the exact derivative
        on the side where the curve descends.

        ``lams`` has shape (n_points, n_hyper), from the top of each box down;
        ``table`` the per-target CV losses there, shape (n_points, q);
        ``slopes`` the derivatives in ``log alpha`` there, shape (n_points,
        n_hyper).
        """
        per_target = lams.shape[1] > 1
        curves = table if per_target else table.sum(axis=1, keepdims=True)
        n_points, columns = lams.shape[0], np.arange(lams.shape[1])
        best = np.argmin(curves, axis=0)  # scan index per hyperparameter
        lam = lams[best, columns]
        g_best = slopes[best, columns]
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
        t, g_t, dg_t = lam, g_best, self._evaluate(lam[None])[2][0]
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
            _, new_g, new_dg = self._evaluate(t[None])
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
        # a flat stretch) is the minimum
        return np.where(bracketed, t, lam)

    def polish_best(self):
        """Every value is exact: the best point needs no re-solve."""
        return int(np.argmin([r["value"] for r in self.history]))

    def polish(self, index):
        """Nothing to re-solve: the closed form is exact."""
        self.polished.add(index)

    def solutions(self, index):
        """Every fold's ``(coef, intercept)`` at evaluated point ``index``.

        Computed for every evaluated point at the first call (one matrix
        product per fold), then cached.
        """
        if len(self._solutions) != len(self.history):
            alphas = [self._alpha(record["lam"]) for record in self.history]
            per_fold = [path.solutions(alphas) for path in self._paths]
            self._solutions = [list(point) for point in zip(*per_fold)]
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
