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

from ..outer import Evaluation
from ..outer.hoag import history_record
from ..utils._array_api import to_numpy
from ._service import Reporter, SearchResult

__all__ = ["RidgePathSearch", "closed_form_applies"]

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


def _centred_products(X, mean, root, B, block=4096):
    """``(A'A, A'B)`` with ``A = root * (X - mean)``, by blocks of rows.

    The centred copy of a block, never of the whole fold: same flops as one
    product, memory of ``block`` rows.
    """
    p = X.shape[1]
    gram, xtb = np.zeros((p, p)), np.zeros((p, B.shape[1]))
    for start in range(0, X.shape[0], block):
        rows = slice(start, start + block)
        A = root[rows] * (X[rows] - mean)
        gram += A.T @ A
        xtb += A.T @ B[rows]
    return gram, xtb


class _FoldPath:
    """The decomposition of one fold: ``h`` and ``h'`` at any alpha."""

    def __init__(self, fold):
        inner, outer = fold.inner, fold.outer
        X = inner.model.X
        y = np.asarray(to_numpy(inner.y), dtype=np.float64)
        self.one_target = y.ndim == 1
        Y = y.reshape(len(y), -1)
        s = inner.sample_weight
        s = np.ones(X.shape[0]) if s is None else np.asarray(to_numpy(s), float)
        self.fit_intercept = inner.model.fit_intercept
        if self.fit_intercept:
            self.x_mean = np.asarray(X.T @ s).ravel() / s.sum()
            self.y_mean = s @ Y / s.sum()
        else:
            self.x_mean = np.zeros(X.shape[1])
            self.y_mean = np.zeros(Y.shape[1])
        root = np.sqrt(s)[:, None]
        B = root * (Y - self.y_mean)
        n, p = X.shape
        if n >= p and sp.issparse(X):
            # Sparse X stays sparse: the Gram of the centred, weighted rows is
            # X'SX - sum(s) x_mean x_mean' (a difference that loses digits for
            # features whose mean dwarfs their spread; sparse features are
            # rarely so)
            XS = X if inner.sample_weight is None else X.multiply(s[:, None]).tocsr()
            gram = _dense(X.T @ XS) - s.sum() * np.outer(self.x_mean, self.x_mean)
            d, self.basis = np.linalg.eigh(gram)
            # A'B = X'S(Y - y_mean) - x_mean s'(Y - y_mean)
            centred_Y = Y - self.y_mean
            xtb = np.asarray(X.T @ (s[:, None] * centred_Y))
            self.C = self.basis.T @ (xtb - np.outer(self.x_mean, s @ centred_Y))
        elif n >= p:
            # dense: centre explicitly (exact for any offset of the features)
            gram, xtb = _centred_products(X, self.x_mean, root, B)
            d, self.basis = np.linalg.eigh(gram)
            self.C = self.basis.T @ xtb
        else:
            A = root * (_dense(X) - self.x_mean)
            d, U = np.linalg.eigh(A @ A.T)
            self.basis = None
            self._A, self._U = A, U
            self.C = U.T @ B
        self.d = np.maximum(d, 0.0)
        X_val = outer.model.X
        y_val = np.asarray(to_numpy(outer.y), dtype=np.float64)
        self.Y_val = y_val.reshape(len(y_val), -1)
        s_val = outer.sample_weight
        self.s_val = (
            np.ones(X_val.shape[0])
            if s_val is None
            else np.asarray(to_numpy(s_val), dtype=np.float64)
        )
        centred_val = _dense(X_val) - self.x_mean
        if self.basis is not None:
            self.M = centred_val @ self.basis
        else:
            self.M = (centred_val @ self._A.T) @ self._U
        # F = scale / sum(s) * sum_i s_i 0.5 ||r_i||^2
        self.factor = outer.scale / self.s_val.sum() * 0.5

    def _scaled(self, alpha):
        # 1 / (d + alpha), shape (rank, q): one column per target's alpha
        alpha = np.asarray(alpha, dtype=np.float64).reshape(1, -1)
        return 1.0 / (self.d[:, None] + alpha)

    def values(self, alpha, derivative=False):
        """Per-target ``F_t`` (shape (q,)) and ``alpha_t dF_t / dalpha_t``."""
        inverse = self._scaled(alpha)
        q = self.C.shape[1]
        scaled = inverse * self.C
        if derivative:  # one product for the predictions and their slopes
            both = self.M @ np.concatenate([scaled, inverse * scaled], axis=1)
            prediction, slope = both[:, :q], -both[:, q:]
        else:
            prediction = self.M @ scaled
        residual = prediction + self.y_mean - self.Y_val
        weighted = self.s_val[:, None] * residual
        values = self.factor * np.sum(weighted * residual, axis=0)
        if not derivative:
            return values, None
        # d prediction / d alpha = -M diag(1 / (d + alpha)^2) C
        derivatives = 2 * self.factor * np.sum(weighted * slope, axis=0)
        return values, np.asarray(alpha, float).reshape(-1) * derivatives

    def solutions(self, alphas):
        """``(coef, intercept)`` in the engine's layout at each of ``alphas``.

        ``alphas`` has shape (n_points, q); the coefficients of all points are
        computed with one matrix product.
        """
        q = self.C.shape[1]
        scaled = np.concatenate([self._scaled(alpha) * self.C for alpha in alphas], 1)
        if self.basis is not None:
            coefs = self.basis @ scaled
        else:
            coefs = self._A.T @ (self._U @ scaled)
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
    """

    def __init__(self, folds, space, options, *, keep_solutions=False):
        self.folds = folds
        n_outputs = folds[0].inner.model.n_outputs
        n_hyper = n_outputs if space.structure == "outputs" else 1
        self.space = space.resize(n_hyper)
        self.options = options
        self.n_outputs = n_outputs
        self.history = []
        self.polished = set()
        self._paths = None
        self._solutions = []

    @property
    def param(self):
        """The parameter's name on the estimator (``"C"``, not ``"clf__C"``)."""
        return self.space.param

    def _alpha(self, lam):
        """Per-target alpha (shape (q,)) from ``lam`` (shape (n_hyper,))."""
        return np.broadcast_to(np.exp(np.asarray(lam, float)), (self.n_outputs,))

    def _evaluate(self, lam, derivative=True):
        """Per-fold, per-target values (K, q) and log-derivatives (K, q)."""
        results = [path.values(self._alpha(lam), derivative) for path in self._paths]
        values = np.array([r[0] for r in results])
        grads = np.array([r[1] for r in results]) if derivative else None
        return values, grads

    def _record(self, lam, phase, start, accepted=True):
        lam = np.asarray(lam, dtype=np.float64).reshape(-1)
        values, grads = self._evaluate(lam)
        fold_values = values.sum(axis=1)
        per_target = grads.mean(axis=0)
        grad = per_target if lam.size > 1 else np.array([per_target.sum()])
        evaluation = Evaluation(
            lam=lam,
            value=float(fold_values.mean()),
            grad=grad,
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
            accepted=accepted,
            step=None,
            inner_tol=0.0,
            elapsed=time.perf_counter() - start,
            gradient_step=0,
        )
        record[self.param] = self.space.values(lam)
        self.history.append(record)
        self.polished.add(record["iteration"])
        return record, values.mean(axis=0)

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
        self._paths = [_FoldPath(fold) for fold in self.folds]
        setup = time.perf_counter() - start
        low, high = space.lam_low, space.lam_high
        # each hyperparameter scans its own box, with the same number of
        # points (3 per decade of the widest box)
        widest = float(np.max(high - low))
        n_points = max(int(np.ceil(widest / np.log(10) * _SCAN_PER_DECADE)) + 1, 3)
        lams = np.linspace(high, low, n_points)  # shape (n_points, n_hyper)
        table, slopes = [], []
        stop = None
        for k, lam in enumerate(lams):
            record, per_target = self._record(lam, "scan", start)
            if k == 0:
                record["time"] = setup
            table.append(per_target)
            slopes.append(record["grad"])
            if reporter.report(record):
                stop = "stopped by callback"
                break
        if stop is None:
            lam = self._minimize(lams[: len(table)], np.array(table), np.array(slopes))
            record, _ = self._record(lam, "root", start)
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
        by a root search on the exact derivative on the side where it
        descends.

        ``lams`` has shape (n_points, n_hyper), from the top of each box down;
        ``table`` the per-target CV losses there, shape (n_points, q);
        ``slopes`` the scan's derivatives in log alpha, shape (n_points,
        n_hyper) (the bracket's ends are scan points: no re-evaluation).
        """
        per_target = lams.shape[1] > 1
        curves = table if per_target else table.sum(axis=1, keepdims=True)
        n_points, columns = lams.shape[0], np.arange(lams.shape[1])
        best = np.argmin(curves, axis=0)  # scan index per hyperparameter
        lam = lams[best, columns]

        def slope(point):
            grads = self._evaluate(point)[1].mean(axis=0)
            return grads if per_target else np.array([grads.sum()])

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
        flat = 1e-12 * np.maximum(np.abs(g_a), np.abs(g_b))  # |h'| at round-off
        # Regula falsi with the Illinois modification (superlinear, and the
        # bracket always shrinks): a few evaluations instead of bisection's 35.
        for _ in range(_ROOT_ITER):
            active = bracketed & (b - a > _ROOT_TOL)
            if not np.any(active):
                break
            t = np.where(
                active, b - g_b * (b - a) / np.where(active, g_b - g_a, 1), lam
            )
            g_t = slope(t)
            left = active & (g_t < 0)
            right = active & (g_t >= 0)
            # Illinois: halve the slope kept at the end that did not move
            g_b = np.where(left, g_b / 2, np.where(right, g_t, g_b))
            g_a = np.where(right, g_a / 2, np.where(left, g_t, g_a))
            a = np.where(left, t, a)
            b = np.where(right, t, b)
            # a root found to round-off closes its bracket
            done = active & (np.abs(g_t) <= flat)
            a, b = np.where(done, t, a), np.where(done, t, b)
        # without a sign change, the best scan point (an end of the box, or
        # a flat stretch) is the minimum
        return np.where(bracketed, (a + b) / 2, lam)

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
