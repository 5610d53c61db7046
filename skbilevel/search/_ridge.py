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
(``choose_factorization`` in :mod:`._ridge_factor`).

With one target, a Lanczos basis of the target's Krylov space serves as well
(every shifted solution lies in it): as many steps as give the solution at
the box's smallest ``alpha`` to a set accuracy, when that takes fewer than
the reduction's cost (else the fold is reduced after all).

This is what leave-one-out ``RidgeCV`` does with one decomposition of all the
data, for K-fold cross-validation at the price of K decompositions (or K
reductions).

This module owns the search (:class:`RidgePathSearch`: the scan and the root
search), :class:`ExactSearch` (what it shares with the banded search: exact
points, nothing to polish) and :func:`closed_form_applies`; each fold's
factorization is in :mod:`._ridge_factor`, the products of all rows shared by
the folds in :mod:`._ridge_rows`.
"""

import time
from collections import Counter

import numpy as np
import scipy.sparse as sp

from ..outer import Evaluation
from ..outer.hoag import history_record
from ._ridge_factor import CompactFolds, _FoldPath
from ._service import Reporter, SearchResult

__all__ = [
    "ExactSearch",
    "RidgePathSearch",
    "closed_form_applies",
    "minimize_curves",
]

# Scan density in log(alpha): 3 points per decade (the curve between scan
# points is then refined exactly), and the root search's precision.
_SCAN_PER_DECADE = 3
_ROOT_TOL = 1e-8
_ROOT_ITER = 100


class ExactSearch:
    """What the closed-form searches share of :class:`GradientSearch`'s
    interface: every point they evaluate is exact, so polished when it is
    recorded, and nothing is ever re-solved.

    Subclasses set ``space``, ``history`` (a list) and ``polished`` (a set).
    """

    @property
    def param(self):
        """The parameter's name on the estimator (``"alpha"``, not
        ``"ridge__alpha"``)."""
        return self.space.param

    def polish(self, index):
        """Nothing to re-solve: the closed form is exact."""
        self.polished.add(index)

    def _exact_record(self, lam, fold_values, grad, phase, start, gradient_step):
        """Append the history record of a point evaluated exactly to
        ``history``, polished; returns it.

        Parameters
        ----------
        lam : ndarray of shape (n_hyper,)
        fold_values : ndarray of shape (n_folds,)
        grad : array-like of shape (n_hyper,)
        phase : str
        start : float
            The search's start time (``time.perf_counter``).
        gradient_step : int
        """
        # positional: a NamedTuple built by keyword costs more than the
        # record's arithmetic (26 records per scalar search)
        grad = np.asarray(grad, dtype=np.float64)
        value = float(fold_values.sum()) / fold_values.size
        evaluation = Evaluation(lam, value, grad, fold_values, 0, 0, 0, True, None, 0.0)
        record = history_record(
            evaluation,
            iteration=len(self.history),
            phase=phase,
            accepted=True,
            step=None,
            inner_tol=0.0,
            elapsed=time.perf_counter() - start,
            gradient_step=gradient_step,
        )
        self.history.append(record)
        self.polished.add(record["iteration"])
        return record


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


def describe_factorizations(paths):
    """The folds' factorizations in words, for verbose output: ``"one
    eigendecomposition per fold"``, or a count of each, and the folds
    whose Krylov basis gave up (reduced after all)."""
    kinds = {
        "eigen": "eigendecomposition",
        "tridiagonal": "tridiagonal reduction",
        "krylov": "Krylov (Lanczos) basis",
    }
    counts = Counter(path.factorization for path in paths)
    if len(counts) == 1:
        text = f"one {kinds[next(iter(counts))]} per fold"
    else:
        text = ", ".join(f"{kinds[k]}: {n} folds" for k, n in sorted(counts.items()))
    if counts.get("krylov"):
        kept = [p.krylov_steps for p in paths if p.factorization == "krylov"]
        text += f", {min(kept)}-{max(kept)} Lanczos steps"
    gave_up = sum(
        p.krylov_steps is not None and p.factorization != "krylov" for p in paths
    )
    if gave_up:
        text += (
            f"; the Krylov basis of {gave_up} fold(s) would not reach its "
            "accuracy within its budget"
        )
    return text


class RidgePathSearch(ExactSearch):
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
        from products of all the rows, and so does the solution on all of
        them (:meth:`all_rows_solution`, the refit).
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
        self._paths = self._batch = None
        self._solutions = {}

    def _alpha(self, lam):
        """Per-target alpha (shape (q,)) from ``lam`` (shape (n_hyper,))."""
        return np.broadcast_to(np.exp(np.asarray(lam, float)), (self.n_outputs,))

    def _evaluate(self, lams, second=True):
        """CV loss and its log-derivatives at points ``lams`` (n, n_hyper).

        Returns ``fold_values`` (K, n, q) and the per-hyperparameter mean
        slopes and curvatures over folds, each (n, n_hyper) (the curvatures
        None unless ``second``): one matrix product per fold for all points.
        """
        lams = np.asarray(lams, dtype=np.float64).reshape(len(lams), -1)
        alphas = np.exp(lams)
        if alphas.shape[1] != self.n_outputs:  # one alpha for all targets
            alphas = np.repeat(alphas, self.n_outputs, axis=1)
        if self._batch is not None:
            values, slopes, bends = self._batch.curves(alphas, second)
        else:
            curves = [path.curve(alphas, second) for path in self._paths]
            values = np.array([c[0] for c in curves])  # (K, n, q)
            slopes = np.array([c[1] for c in curves])
            bends = np.array([c[2] for c in curves]) if second else None
        slopes = slopes.mean(axis=0)
        bends = bends.mean(axis=0) if second else None
        if lams.shape[1] == 1:  # one alpha for all targets: the sum's slope
            slopes = slopes.sum(axis=1, keepdims=True)
            bends = None if bends is None else bends.sum(axis=1, keepdims=True)
        return values, slopes, bends

    def _record(self, lam, fold_values, grad, phase, start):
        """One history record (every closed-form point is exact: polished)."""
        lam = np.asarray(lam, dtype=np.float64).reshape(-1)
        record = self._exact_record(lam, fold_values, grad, phase, start, 0)
        record[self.param] = self.space.values(lam)
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
        alpha_low = float(np.exp(np.min(low)))
        self._paths = [
            _FoldPath(
                fold,
                None if self.rows is None else self.rows.products(k),
                workload=(n_points, low.size),
                alpha_low=alpha_low,
            )
            for k, fold in enumerate(self.folds)
        ]
        # small systems: the folds' curves in one computation
        self._batch = CompactFolds.of(self._paths)
        if options.verbose > 0:
            print(
                f"Fitting {len(self.folds)} folds: closed-form search of "
                f"{space.name} ({describe_factorizations(self._paths)})",
                flush=True,
            )
        setup = time.perf_counter() - start
        lams = np.linspace(high, low, n_points)  # shape (n_points, n_hyper)
        # no curvatures (the root search takes them at the best scan point),
        # except where the folds' curves are one small computation: there
        # the call, not the arithmetic, is the cost
        values, slopes, bends = self._evaluate(lams, second=self._batch is not None)
        scan_time = time.perf_counter() - start - setup
        stop = None
        fold_sums = values.sum(axis=2)  # (K, n_points): each point's fold values
        for k, lam in enumerate(lams):
            record = self._record(lam, fold_sums[:, k], slopes[k], "scan", start)
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
            # a minimum at a scan point itself (an end of the box, a root the
            # scan hit) is already a row
            if not any(np.array_equal(lam, scanned) for scanned in lams):
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

    def _minimize(self, lams, values, slopes, bends=None):
        """Each target's (or the sum's) minimizer (:func:`minimize_curves`;
        ``bends``: the scan's curvatures, where it computed them), its fold
        values summed over targets (shape (K,)) and its slopes."""
        lam, fold_t, g_t = minimize_curves(
            self._evaluate, lams, values, slopes, bends=bends
        )
        return lam, (fold_t.sum(axis=1), g_t)

    def all_rows_solution(self, index):
        """The ridge solution on all the rows at evaluated point ``index``,
        from the products the folds shared (no product of the data with
        itself), or None when they do not give it (see
        :meth:`SharedRows.solution`).

        Returns
        -------
        tuple or None
            ``(coef, intercept, weights, targets)``: coefficients of shape
            (n_outputs, n_features), intercepts (n_outputs,), and the rows'
            weights and targets the solution fits, for the caller to check
            against the data's own.
        """
        if self.rows is None:
            return None
        return self.rows.solution(self._alpha(self.history[index]["lam"]))

    def release_rows(self):
        """Drop the products of all rows (the refit took what it needed, or
        fits otherwise: its own products need not sit beside these)."""
        self.rows = None

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

    def predictions(self, indices):
        """Every fold's validation predictions at evaluated points ``indices``.

        The fold models' ``predict`` on the validation folds (one column per
        target), without building them: lets the squared-error metrics score
        every point at once. One matrix product per fold for all the points.

        Returns
        -------
        list of ndarray
            Per fold, shape (n_points, n_val, n_outputs).
        """
        alphas = np.array([self._alpha(self.history[i]["lam"]) for i in indices])
        return [path.predictions(alphas) for path in self._paths]


def minimize_curves(evaluate, lams, values, slopes, tol=_ROOT_TOL, bends=None):
    """Each target's (or the sum's) minimizer: the best scan point, refined
    by a safeguarded Newton search for the root of the exact derivative
    on the side where the curve descends.

    ``lams`` has shape (n_points, n_hyper), from the top of each box down;
    ``values`` the per-fold, per-target CV losses there, shape (K,
    n_points, q); ``slopes`` the derivatives in ``log alpha`` there, shape
    (n_points, n_hyper). The curvature is computed at the best scan points
    only (the only ones the search reads: a scan without second derivatives
    is a third cheaper), unless ``bends``, the scan's second derivatives
    (shape (n_points, n_hyper)), are given.

    ``evaluate(lams)`` gives the same three arrays at points ``lams`` of
    shape (n, n_hyper). ``tol`` is the precision of the minimizer in ``log
    alpha``. Returns the minimizer (shape (n_hyper,)), its fold values
    (shape (K, q)) and slopes (shape (n_hyper,)).
    """
    table = values.mean(axis=0)
    per_target = lams.shape[1] > 1
    curves = table if per_target else table.sum(axis=1, keepdims=True)
    n_points, columns = lams.shape[0], np.arange(lams.shape[1])
    best = np.argmin(curves, axis=0)  # scan index per hyperparameter
    lam = lams[best, columns]
    g_best = slopes[best, columns]
    if bends is None:
        dg_best = evaluate(lam[None])[2][0]
    else:
        dg_best = bends[best, columns]
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
    bracketed = ((g_a < 0) & (g_b > 0) & (b > a)).tolist()
    scale = np.maximum(np.abs(g_a), np.abs(g_b)).tolist()  # |h'| at the scan points
    # each column's search on Python floats (the evaluations serve all
    # columns at once): numpy's calls on arrays of one element would cost
    # more than the evaluations of a scalar search
    a, b, g_a, g_b = a.tolist(), b.tolist(), g_a.tolist(), g_b.tolist()
    t, g_t, dg_t = lam.tolist(), g_best.tolist(), dg_best.tolist()
    fold_t = np.array(fold_t, dtype=np.float64)
    # Newton on h' from the best scan point, kept inside the shrinking
    # bracket (a step that leaves it, or a non-positive curvature, takes
    # the regula falsi point instead): quadratic near the root, never
    # worse than the bracket's secant.
    for _ in range(_ROOT_ITER):
        moving, tiny = [], []
        for c in range(len(t)):
            if not (bracketed[c] and b[c] - a[c] > tol):
                continue
            newton = t[c] - g_t[c] / (dg_t[c] if dg_t[c] > 0 else 1.0)
            inside = dg_t[c] > 0 and a[c] < newton < b[c]
            if inside:
                step = newton
                # a Newton step below the tolerance: t is the root to that
                # precision (quadratic convergence), no evaluation to confirm
                if abs(step - t[c]) <= tol:
                    a[c] = b[c] = t[c]
                    continue
            else:
                step = b[c] - g_b[c] * (b[c] - a[c]) / (g_b[c] - g_a[c])
            tiny.append(abs(step - t[c]) <= tol)
            t[c] = step
            moving.append(c)
        if not moving:
            break
        new_values, new_g, new_dg = evaluate(np.array(t)[None])
        new_g, new_dg = new_g[0].tolist(), new_dg[0].tolist()
        for c, small in zip(moving, tiny):
            if per_target:
                fold_t[:, c] = new_values[:, 0, c]
            else:
                fold_t = new_values[:, 0]
            g_t[c], dg_t[c] = new_g[c], new_dg[c]
            if g_t[c] < 0:
                a[c], g_a[c] = t[c], g_t[c]
            else:
                b[c], g_b[c] = t[c], g_t[c]
            # a secant step below the tolerance, or a root found to
            # round-off, closes the bracket
            if small or abs(g_t[c]) <= 1e-12 * scale[c]:
                a[c] = b[c] = t[c]
    # without a sign change, the best scan point (an end of the box, or
    # a flat stretch) is the minimum; t is that point there
    t, g_t = np.array(t), np.array(g_t)
    return t, fold_t, g_t
