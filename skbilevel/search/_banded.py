"""The closed-form search of one ridge penalty per target and per feature band.

``BilevelSearchCV(Ridge(), {"alpha": (low, high)}, penalty_groups=bands)``
with bounds of shape (n_targets, n_bands) searches ``alpha_tb``, the penalty
of band ``b`` in the model of target ``t``. A target's band penalties are a
scalar and band weights, ``alpha_tb = alpha_t / g_b``; for one candidate
``g`` shared by all targets, one eigendecomposition per fold gives every
target's exact CV curve in its own ``alpha_t`` (:mod:`._banded_fold`). The
search is over candidates:

1. the first candidate is ``g = 1``: the exact best ``alpha`` of each target
   (what bounds of shape (n_targets,) find); a target whose boxes share no
   ``alpha`` across bands also gets the weights of its boxes' centres;
2. at its current best point, each target's gradient and Hessian in its
   ``log alpha_tb`` (exact, in the eigenbasis of the candidate it came from)
   give a Newton step, shortened to the target's trust radius and kept in
   its box: the band weights the target would like next;
3. the proposals of the targets that expect a decrease are clustered
   (k-means, weighted by the decrease each expects) into a few candidates,
   each evaluated for every target (the global minimum of its curve in
   ``alpha_t``); every target keeps its best point so far;
4. a target that improved doubles its trust radius, one that did not halves
   it; the search stops when three rounds in a row improve no target by more
   than a relative ``_TOL`` of its CV loss, when no target expects a
   decrease, or after ``_MAX_CANDIDATES`` candidates (10 up to 100 targets,
   one more per 5 targets beyond).

A random search over band weights would evaluate the same candidates
blindly; here each costs K eigendecompositions, and the candidates follow
the targets' own Newton steps.

Each target chooses among a few dozen candidates at most, with ``n_bands``
hyperparameters of its own: a mild multiple comparison (see the benchmark
``benchmarks/banded_ridge.py`` for held-out R^2 along the rounds).
"""

import time
import warnings

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning

from ._banded_fold import BandedFold, scaled_eigh
from ._ridge import ExactSearch, minimize_curves
from ._service import Reporter, SearchResult

__all__ = ["BandedRidgeSearch", "banded_applies", "banded_coefficients"]

# Candidates evaluated per round (k-means clusters of the targets' steps: 8
# in the first round, then 4), candidates at most after g = 1 (10 up to 100
# targets, one more per 5 targets beyond: more targets want more distinct
# weightings), rounds at most, and the relative decrease of a target's CV
# loss that counts as an improvement. Measured on benchmarks/banded_ridge.py
# (4 bands, band weights per target), held-out R^2 rises with the candidates,
# no overfitting of the CV loss seen: --quick (100 targets) 0.567 at g = 1,
# 0.653 after 8, 0.661 after 10, 0.668 after 32; full size (300 targets)
# 0.726, 0.750 after 10, 0.7545 after 50. Each candidate costs about one
# K-fold eigendecomposition (0.2 s quick, 0.6 s full size, one thread).
_ROUND_CANDIDATES = (8, 4)
_MAX_CANDIDATES = (10, 100, 5)
_MAX_ROUNDS = 20
_PATIENCE = 3
_TOL = 1e-4
# Trust radius of a target's Newton step in log alpha_tb (largest coordinate):
# first, largest, and below which the target is converged.
_RADIUS = (np.log(100.0), np.log(1000.0), 1e-2)
# Scan density of each target's curve in log(alpha_t), per decade, over its
# whole box (the safeguarded Newton search then refines the best scan point
# exactly), and over a window of half-width _WINDOW around the expected
# log(alpha_t) of a new candidate. Measured on benchmarks/banded_ridge.py
# --quick: the chosen points, and the test R^2, are the same at 3 and at 1
# point per decade, the search 10-20% faster.
_SCAN_PER_DECADE = (2, 1)
_WINDOW = np.log(100.0)
# Precision of each target's log(alpha_t): the CV loss is flat at its
# minimum, off by ~h'' tol^2 / 2, 5e-7 of a curvature of 1 per unit of loss.
_ALPHA_TOL = 1e-3


def banded_applies(folds):
    """Why the banded search cannot serve these folds, or None when it can."""
    for fold in folds:
        if getattr(fold.inner.loss, "name", None) != "squared":
            return "the loss is not the squared loss"
        X = fold.inner.model.X
        if sp.issparse(X):
            return (
                "the data are sparse (each candidate eigendecomposes a dense "
                "n_features x n_features Gram matrix); pass a dense array"
            )
        if not isinstance(X, np.ndarray):
            return "the data are not NumPy arrays (device='cuda' does not apply)"
    return None


def banded_coefficients(moments, band_index, lam):
    """Ridge coefficients with penalty ``exp(lam[t, band_index[j]])`` on
    coefficient ``j`` of target ``t``.

    Parameters
    ----------
    moments : QuadraticMoments
        Centred weighted Gram ``A'A`` and ``A'B`` of the data.
    band_index : ndarray of int of shape (n_features,)
    lam : ndarray of shape (n_targets, n_bands)

    Returns
    -------
    ndarray of shape (n_features, n_targets)
        Solutions of ``(A'A + diag(alpha_t)) w_t = A'b_t``: targets with the
        same band weights (the same candidate, to 1e-8 in ``log alpha``)
        share one eigendecomposition of the scaled Gram when there are enough
        of them, others take one Cholesky factorization each.
    """
    gram, moment = moments.gram, moments.moment
    n_features, n_targets = moment.shape
    coef = np.empty((n_features, n_targets))
    top = lam.max(axis=1)
    pattern = np.round(lam - top[:, None], 8)  # -log g_b, the candidate
    keys, which = np.unique(pattern, axis=0, return_inverse=True)
    for k, key in enumerate(keys):
        targets = np.flatnonzero(which.reshape(-1) == k)
        if len(targets) >= _EIGEN_TARGETS:
            d, basis = scaled_eigh(gram, np.exp(-0.5 * key[band_index]))
            z = (basis.T @ moment[:, targets]) / (
                d[:, None] + np.exp(top[targets])[None, :]
            )
            coef[:, targets] = basis @ z
            continue
        for t in targets:
            system = gram + np.diag(np.exp(lam[t, band_index]))
            factor = scipy.linalg.cho_factor(system, check_finite=False)
            coef[:, t] = scipy.linalg.cho_solve(factor, moment[:, t])
    return coef


# Targets of one candidate from which one eigendecomposition (~4 p^3 / 3
# flops and the back-transform, ~13 Cholesky factorizations measured with one
# OpenBLAS thread at p = 450) is cheaper than a Cholesky factorization each.
_EIGEN_TARGETS = 13


class BandedRidgeSearch(ExactSearch):
    """The search of :class:`GradientSearch`'s interface, one alpha per target
    and band, over candidate band weights (see the module docstring).

    Parameters
    ----------
    folds : list of Fold
        Engine folds of the squared loss (NumPy data).
    space : HyperSpace
        Structure ``"output-groups"``: box of shape (n_targets * n_bands,),
        target-major.
    options : SearchOptions
        ``verbose``, ``callback`` and ``max_time`` apply.
    keep_solutions : bool, default=False
        Accepted for the interface; the fold solutions are always kept.
    rows : SharedRows or None, default=None
        All folds' rows of one array: the fold Gram matrices come from
        products of all the rows.
    """

    def __init__(self, folds, space, options, *, keep_solutions=False, rows=None):
        labels, band_index = np.unique(space.groups, return_inverse=True)
        self.band_index = band_index.reshape(-1)
        self.n_bands = labels.size
        self.n_outputs = folds[0].inner.model.n_outputs
        self.space = space.resize(self.n_outputs * self.n_bands)
        self.options = options
        self.folds = folds
        self.rows = rows if rows is not None and rows.applies(folds) else None
        self.history = []
        self.polished = set()
        self.penalty_gain = 0.0
        self.candidates = []
        self._blocks = []  # (positions, fold solutions, fold predictions)
        self._owners = []  # per record: the block of each target's point

    def _box(self):
        shape = (self.n_outputs, self.n_bands)
        return self.space.lam_low.reshape(shape), self.space.lam_high.reshape(shape)

    # -- one candidate ---------------------------------------------------------
    def _evaluate_candidate(self, log_weights, guess=None):
        """Every target's best ``alpha_t`` at band weights ``exp(log_weights)``.

        ``guess`` (q,), the expected ``log alpha_t``, limits each target's scan
        to ``_WINDOW`` either side of it; a target whose minimum lies at the
        edge of its window is scanned again over its whole box. Returns the
        fold factorizations, ``lam`` (q, n_bands), the fold values (K, q)
        (inf where the candidate leaves a target's box) and the per-target
        ``log alpha_t``.
        """
        factors = [fold.candidate(log_weights) for fold in self._folds]
        low, high = self._box()
        # lambda_tb = a_t - c_b must lie in [low_tb, high_tb]
        a_low = np.max(low + log_weights, axis=1)
        a_high = np.min(high + log_weights, axis=1)
        feasible = a_low <= a_high
        a_high = np.where(feasible, a_high, a_low)
        targets = np.arange(self.n_outputs)
        if guess is None:
            ends = a_low, a_high
        else:
            centre = np.clip(guess, a_low, a_high)
            ends = (
                np.maximum(a_low, centre - _WINDOW),
                np.minimum(a_high, centre + _WINDOW),
            )
        per_decade = _SCAN_PER_DECADE[guess is not None]
        a, fold_values, top, bottom = _minimize(factors, *ends, targets, per_decade)
        again = (top & (ends[1] < a_high)) | (bottom & (ends[0] > a_low))
        if again.any():
            redo = targets[again]
            a[redo], fold_values[:, redo], _, _ = _minimize(
                factors, a_low[redo], a_high[redo], redo, _SCAN_PER_DECADE[0]
            )
        fold_values = np.where(feasible, fold_values, np.inf)
        return factors, a[:, None] - log_weights[None, :], fold_values, a

    def _try(self, log_weights, round_index, hessian):
        """Evaluate one candidate; every target it improves moves there.

        Returns the mask of the targets it improved.
        """
        guess = None
        if round_index > 0:  # the current point's alpha_t on this ray
            guess = np.mean(self.lam + log_weights, axis=1)
        factors, lam, fold_values, a = self._evaluate_candidate(log_weights, guess)
        self.candidates.append(log_weights)
        value = fold_values.mean(axis=0)
        current = self.fold_values.mean(axis=0)
        with np.errstate(invalid="ignore"):  # inf - inf: no point yet
            better = value < current - _TOL * np.abs(current)
        better |= ~np.isfinite(current)
        better &= np.isfinite(value)
        targets = np.flatnonzero(better)
        if targets.size:
            self._accept(factors, a, lam, fold_values, targets, hessian)
        return better

    def _accept(self, factors, a, lam, fold_values, targets, hessian=True):
        """Make ``lam`` the point of ``targets``: keep their fold solutions and
        predictions, and their band derivatives there (mean over folds; the
        Hessian only where another round may follow)."""
        alpha = np.exp(a[targets])
        solutions, predictions = [], []
        grad = np.zeros((len(targets), self.n_bands))
        hess = np.zeros((len(targets), self.n_bands, self.n_bands))
        for factor in factors:
            solution = factor.solution(alpha, targets)
            coef, centred = solution
            fold = factor.fold
            intercept = None
            if fold.fit_intercept:
                intercept = fold.y_mean[targets] - fold.x_mean @ coef
            solutions.append((coef, intercept))
            predictions.append(centred + fold.y_mean[targets])
            g, h = factor.band_derivatives(alpha, targets, hessian, solution)
            grad += g / len(factors)
            if hessian:
                hess += h / len(factors)
        positions = np.full(self.n_outputs, -1)
        positions[targets] = np.arange(len(targets))
        self._blocks.append((positions, solutions, predictions))
        self._owner[targets] = len(self._blocks) - 1
        self.lam[targets] = lam[targets]
        self.fold_values[:, targets] = fold_values[:, targets]
        self.grad[targets], self.hess[targets] = grad, hess

    # -- the rounds ------------------------------------------------------------
    def _proposals(self):
        """Each target's Newton step in its ``log alpha_tb``, as centred band
        log-weights, the decrease its quadratic model expects, and the
        model's (positive definite) Hessians, shape (n_targets, B, B)."""
        low, high = self._box()
        vals, vecs = np.linalg.eigh(self.hess)
        # a positive definite model: curvatures below 1e-6 of the largest
        # (or negative) are raised to it
        floor = 1e-6 * np.maximum(np.abs(vals).max(axis=1, keepdims=True), 1e-300)
        vals = np.maximum(np.abs(vals), floor)
        hessians = np.einsum("tbk,tk,tck->tbc", vecs, vals, vecs)
        rotated = np.einsum("tbc,tb->tc", vecs, self.grad)
        step = -np.einsum("tbc,tc->tb", vecs, rotated / vals)
        longest = np.abs(step).max(axis=1)
        step *= np.minimum(1.0, self.radius / np.maximum(longest, 1e-300))[:, None]
        target = np.clip(self.lam + step, low, high)
        step = target - self.lam
        model = np.einsum("tbc,tb,tc->t", hessians, step, step)
        decrease = -(np.sum(self.grad * step, axis=1) + 0.5 * model)
        # band log-weights c_b = a_t - lambda_tb, centred (the scale is alpha_t's)
        return target.mean(axis=1, keepdims=True) - target, decrease, hessians

    def _model_gain(self, targets, log_weights, hessians):
        """The decrease the quadratic models of ``targets`` expect at each
        candidate of ``log_weights`` (m, n_bands), shape (n, m): at the best
        ``alpha_t`` of the model on the candidate's ray ``lambda = a - c``;
        zero beyond twice a target's trust radius. ``hessians``: the models'
        of every target (:meth:`_proposals`)."""
        grad, model = self.grad[targets], hessians[targets]
        s0 = -log_weights[None, :, :] - self.lam[targets][:, None, :]  # (n, m, B)
        ones = np.ones(self.n_bands)
        h_ones = model @ ones  # (n, B)
        a = -(grad @ ones)[:, None] - np.einsum("tb,tmb->tm", h_ones, s0)
        a /= (h_ones @ ones)[:, None]
        step = a[:, :, None] + s0
        value = np.einsum("tb,tmb->tm", grad, step) + 0.5 * np.einsum(
            "tmb,tbc,tmc->tm", step, model, step
        )
        near = np.abs(step).max(axis=2) <= 2 * self.radius[targets][:, None]
        return np.where(near, -value, 0.0)

    def run(self, callback_ctx=None, owner=None):
        """The candidates ``g = 1``, then rounds of the targets' Newton steps.

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
                f"{space.name} per target and band ({self.n_outputs} x "
                f"{self.n_bands}; one eigendecomposition per fold and candidate "
                "band weights)",
                flush=True,
            )
        self._folds = [
            BandedFold(
                fold,
                self.band_index,
                None if self.rows is None else self.rows.products(k, gram_only=True),
            )
            for k, fold in enumerate(self.folds)
        ]
        self.rows = None
        q, n_bands = self.n_outputs, self.n_bands
        self.lam = np.zeros((q, n_bands))
        self.fold_values = np.full((len(self.folds), q), np.inf)
        self.grad = np.zeros((q, n_bands))
        self.hess = np.zeros((q, n_bands, n_bands))
        self.radius = np.full(q, _RADIUS[0])
        self._owner = np.full(q, -1)
        stop = None
        first, targets, per_candidate = _MAX_CANDIDATES
        n_candidates = first + max(q - targets, 0) // per_candidate
        queue = self._first_candidates()
        budget = len(queue) + n_candidates
        round_index, idle = 0, 0
        while queue:
            # no Hessian where no round follows
            last = (
                round_index >= _MAX_ROUNDS
                or len(self.candidates) + len(queue) >= budget
            )
            improved = np.zeros(q, dtype=bool)
            at = time.perf_counter()
            for i, log_weights in enumerate(queue):
                improved |= self._try(log_weights, round_index, hessian=not last)
                if round_index == 0 and i < len(queue) - 1:
                    continue  # a row once every target has a point
                record = self._record(
                    "scan" if round_index == 0 else "band", round_index, start
                )
                record["time"] = time.perf_counter() - at
                at = time.perf_counter()
                if reporter.report(record):
                    stop = "stopped by callback"
                elif options.max_time is not None and (
                    time.perf_counter() - start > options.max_time
                ):
                    stop = "time budget reached"
                if stop is not None:
                    break
            if stop is not None:
                break
            if round_index > 0:
                self.radius = np.where(improved, self.radius * 2, self.radius / 2)
                self.radius = np.minimum(self.radius, _RADIUS[1])
                # _PATIENCE rounds in a row without improvement (each with
                # shorter steps) end the search
                idle = 0 if improved.any() else idle + 1
                if idle == _PATIENCE:
                    break
            if last:
                stop = (
                    f"budget of {n_candidates} band weightings"
                    if round_index < _MAX_ROUNDS
                    else f"{_MAX_ROUNDS} rounds"
                )
                break
            round_index += 1
            n_next = _ROUND_CANDIDATES[min(round_index, len(_ROUND_CANDIDATES)) - 1]
            queue = self._next_candidates(min(n_next, budget - len(self.candidates)))
        first_value = self.history[0]["value"]
        best = len(self.history) - 1
        value = self.history[best]["value"]
        self.penalty_gain = (
            (first_value - value) / abs(first_value) if first_value else 0.0
        )
        if stop is None:
            message = (
                f"no target's CV loss decreased by more than {_TOL:g} "
                f"({len(self.candidates)} band weightings)"
            )
        else:
            message = stop
        # the budget of weightings is the search's own stopping rule (its
        # points are each target's exact best on every weighting tried); a
        # callback or max_time cut it short
        interrupted = stop is not None and not stop.startswith("budget")
        result = SearchResult(
            lam=self.history[best]["lam"].copy(),
            value=value,
            best_index=best,
            n_iter=round_index,
            converged=not interrupted,
            message=message,
            history=self.history,
        )
        reporter.finish(result)
        if interrupted and stop != "stopped by callback":
            warnings.warn(
                f"The search of one alpha per target and band stopped early "
                f"({message}); each target's best point so far is used. Increase "
                "max_time.",
                ConvergenceWarning,
                stacklevel=3,
            )
        return result

    def _first_candidates(self):
        """Band weights ``g = 1`` (each target's best single alpha), and for
        the targets whose boxes share no alpha across bands, the weights of
        their boxes' centres (``g = 1`` leaves their boxes: without a point
        of their own they would have no model)."""
        low, high = self._box()
        queue = [np.zeros(self.n_bands)]
        apart = np.max(low, axis=1) > np.min(high, axis=1)
        if apart.any():
            centre = (low[apart] + high[apart]) / 2
            weights = centre.mean(axis=1, keepdims=True) - centre
            queue += list(np.unique(np.round(weights, 8), axis=0))
        return queue

    def _next_candidates(self, n_candidates):
        """At most ``n_candidates`` for the next round: the targets' proposals
        clustered."""
        proposals, decrease, hessians = self._proposals()
        value = self.fold_values.mean(axis=0)
        active = (self.radius > _RADIUS[2]) & (decrease > _TOL * np.abs(value))
        if not active.any():
            return []
        targets = np.flatnonzero(active)
        centres, labels = _weighted_kmeans(
            proposals[targets], decrease[targets], n_candidates
        )
        queue = []
        for c, centre in enumerate(centres):
            # the cluster's candidate: of its centre and its members'
            # proposals, the one its members' models expect most of
            members = targets[labels == c]
            if members.size == 0:
                continue
            options = np.vstack([centre, proposals[members]])
            gain = self._model_gain(members, options, hessians)
            gain = np.maximum(gain, 0.0)
            centre = options[np.argmax(gain.sum(axis=0))]
            centre = centre - centre.max()
            seen = self.candidates + queue
            if all(np.max(np.abs(centre - other)) > 1e-3 for other in seen):
                queue.append(centre)
        return queue

    def _record(self, phase, round_index, start):
        """The history record of the current point of every target."""
        record = self._exact_record(
            self.lam.reshape(-1).copy(),
            self.fold_values.sum(axis=1),
            self.grad.reshape(-1).copy(),
            phase,
            start,
            round_index,
        )
        record[self.param] = self.space.values(self.lam)
        record["band_weights"] = np.exp(self.candidates[-1])
        self._owners.append(self._owner.copy())
        return record

    # -- the interface of the other searches -----------------------------------
    def _owned(self, index):
        """``(block, targets, columns)`` of evaluated point ``index``: the
        targets whose point block ``block`` holds, and their columns in it."""
        owners = self._owners[index]
        for block in np.unique(owners):
            targets = np.flatnonzero(owners == block)
            yield block, targets, self._blocks[block][0][targets]

    def solutions(self, index):
        """Every fold's ``(coef, intercept)`` at evaluated point ``index``."""
        out = []
        for k, fold in enumerate(self._folds):
            coef = np.empty((len(fold.x_mean), self.n_outputs))
            intercept = np.empty(self.n_outputs) if fold.fit_intercept else None
            for block, targets, columns in self._owned(index):
                block_coef, block_intercept = self._blocks[block][1][k]
                coef[:, targets] = block_coef[:, columns]
                if intercept is not None:
                    intercept[targets] = block_intercept[columns]
            out.append((coef[:, 0] if fold.one_target else coef, intercept))
        return out

    def predictions(self, indices):
        """Every fold's validation predictions at evaluated points ``indices``:
        per fold, shape (n_points, n_val, n_outputs)."""
        out = []
        for k, fold in enumerate(self._folds):
            prediction = np.empty((len(indices), len(fold.Y_val), self.n_outputs))
            for i, index in enumerate(indices):
                for block, targets, columns in self._owned(index):
                    prediction[i][:, targets] = self._blocks[block][2][k][:, columns]
            out.append(prediction)
        return out


def _minimize(factors, a_low, a_high, targets, per_decade):
    """The minimum of each target's CV curve in ``a = log alpha_t`` over
    ``[a_low, a_high]``: a scan, then :func:`minimize_curves`.

    Returns ``a``, the fold values there (K, n), and whether the scan's best
    point was the top or the bottom of the interval.
    """

    def evaluate(points, second=True, columns=slice(None)):
        alphas = np.exp(points[:, columns])
        chosen = targets[columns]
        curves = [factor.curve(alphas, second, chosen) for factor in factors]
        values = np.array([c[0] for c in curves])
        slopes = np.mean([c[1] for c in curves], axis=0)
        bends = np.mean([c[2] for c in curves], axis=0) if second else None
        return values, slopes, bends

    last = {}

    def evaluate_moved(points):
        """One point per target (the root search's steps): only the targets
        whose point moved are computed again (most converge in a few)."""
        if not last:
            last.update(zip(("point", "curves"), (points, evaluate(points))))
            return last["curves"]
        moved = np.flatnonzero(points[0] != last["point"][0])
        curves = tuple(np.array(c, copy=True) for c in last["curves"])
        if moved.size:
            for old, new in zip(curves, evaluate(points, columns=moved)):
                old[..., moved] = new
        last.update(point=points, curves=curves)
        return curves

    widest = float(np.max(a_high - a_low))
    n_points = max(int(np.ceil(widest / np.log(10) * per_decade)) + 1, 3)
    lams = np.linspace(a_high, a_low, n_points)
    values, slopes, _ = evaluate(lams, second=False)
    best = np.argmin(values.mean(axis=0), axis=0)
    a, fold_values, _ = minimize_curves(
        evaluate_moved, lams, values, slopes, tol=_ALPHA_TOL
    )
    return a, fold_values, best == 0, best == n_points - 1


def _weighted_kmeans(points, weights, n_clusters, n_iter=20):
    """Centres (and each point's cluster) of at most ``n_clusters`` weighted
    k-means clusters of ``points`` (n, d): seeded by the heaviest point, then
    each next seed the point of largest weighted squared distance to the
    seeds (deterministic)."""
    n_clusters = min(n_clusters, len(points))
    seeds = [int(np.argmax(weights))]
    distance = np.sum((points - points[seeds[0]]) ** 2, axis=1)
    for _ in range(n_clusters - 1):
        score = weights * distance
        if score.max() <= 0:
            break
        seeds.append(int(np.argmax(score)))
        distance = np.minimum(
            distance, np.sum((points - points[seeds[-1]]) ** 2, axis=1)
        )
    centres = points[seeds].copy()
    label = np.zeros(len(points), dtype=int)
    for _ in range(n_iter):
        gaps = np.sum((points[:, None, :] - centres[None]) ** 2, axis=2)
        label = np.argmin(gaps, axis=1)
        moved = centres.copy()
        for c in range(len(centres)):
            mine = label == c
            if mine.any():
                moved[c] = weights[mine] @ points[mine] / weights[mine].sum()
        if np.allclose(moved, centres):
            break
        centres = moved
    return centres, label
