"""The search of many penalties (one per feature or per group) that generalizes.

With hundreds of hyperparameters the cross-validated loss is a noisy target:
descending on it to convergence fits the validation folds (Cawley & Talbot,
JMLR 2010), and on held-out data the many penalties lose to the single best
``C``. :class:`VectorSearch` therefore

1. runs the scalar search first, on the same folds with one penalty for all
   coefficients (the single best ``C``, exactly as ``penalty_groups=None``
   finds it);
2. splits the validation rows of each fold in two halves, stratified by
   class, with a fixed seed: the *descent* half ``A`` and the *held-out* half
   ``B``;
3. starts the vector search at the scalar optimum (every coordinate equal)
   and descends on the CV loss of the ``A`` halves only; the ``B`` halves,
   which the descent never sees, score every evaluated point;
4. with ``strategy="holdout"`` (the default) stops when ``B`` has not improved
   for ``PATIENCE`` evaluations and keeps the point with the lowest ``B``
   loss; with ``strategy="hyperreg"`` descends on ``A`` plus
   ``(mu / 2) ||lambda - lambda_scalar||^2`` (``mu`` from the curvature of the
   scalar CV curve, see :func:`diagonal_curvature`) and keeps its best point;
5. re-solves the kept point and the scalar optimum to ``POLISH_TOL`` and
   returns the scalar optimum (all coordinates equal) unless the kept point
   has a lower ``B`` loss there by more than ``SIGNIFICANCE`` standard errors
   of the per-sample loss difference.

``penalty_gain`` is the relative decrease of the ``B`` loss from the scalar
optimum to the returned point: what the many penalties gained on the
criterion the descent did not optimize (zero when the scalar optimum is kept).
It is mildly optimistic: ``B`` also chose the point, among a short path.

``strategy="cv-loss"`` (see :func:`vector_search`) is the former behaviour:
the plain gradient search on the whole CV loss (a bracket along the diagonal,
then HOAG on every coordinate), kept for comparisons.
"""

import numpy as np

from ..hypergrad import get_linear_solver
from ..objectives import InnerObjective, L2Penalty, ValidationLoss
from ..outer import CrossValidatedProblem, Fold, hoag
from ..utils._array_api import to_numpy
from ._folds import _take_rows
from ._progress import SearchProgress
from ._service import (
    POLISH_TOL,
    GradientSearch,
    KeptSolutions,
    SearchResult,
    mean_of,
    warn_if_not_polished,
)

__all__ = [
    "DEFAULT_STRATEGY",
    "PATIENCE",
    "STRATEGIES",
    "VectorSearch",
    "diagonal_curvature",
    "split_validation",
    "vector_search",
]

STRATEGIES = ("holdout", "hyperreg", "cv-loss")
#: Strategy of ``make_search`` for the "features" and "groups" structures.
DEFAULT_STRATEGY = "holdout"
# Evaluations without a new lowest held-out loss before the descent stops: the
# path is short (a few steps from the scalar optimum), and one or two noisy
# rises of B should not end it.
PATIENCE = 3
MU_SCALE = 1.0
# The held-out halves must prefer the many penalties by this many standard
# errors of the per-sample loss difference (one-sided, ~2.3% false positives
# under a normal approximation): the descent's path is chosen on the same
# halves, and with 20-row halves (breast_cancer) a lower mean is often noise.
SIGNIFICANCE = 2.0
# Seed of the split of the validation rows (the halves must not change
# between fits of the same data).
SPLIT_SEED = 0
VECTOR_STRUCTURES = ("features", "groups")


def split_validation(y, seed=SPLIT_SEED):
    """Two halves of the validation rows, stratified by class.

    Parameters
    ----------
    y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        Encoded targets of the validation rows (host); rows of a 2-d ``y`` are
        grouped by their argmax (the class of a one-hot row).
    seed : int
        Seed of the shuffle within each class.

    Returns
    -------
    descent, heldout : ndarray of int
        Sorted row indices; each class alternates between the halves, so their
        sizes differ by at most the number of classes.
    """
    y = np.asarray(y)
    labels = y if y.ndim == 1 else np.argmax(y, axis=1)
    rng = np.random.RandomState(seed)
    halves = ([], [])
    offset = 0
    for label in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == label))
        halves[offset % 2].append(rows[0::2])
        halves[1 - offset % 2].append(rows[1::2])
        offset += rows.size  # odd classes hand the extra row to the other half
    return tuple(np.sort(np.concatenate(half)) for half in halves)


def _half_loss(outer, rows):
    """The :class:`ValidationLoss` of ``outer`` restricted to ``rows``."""
    xp, model, weight = outer.xp, outer.model, outer.sample_weight

    def take(a):
        return None if a is None else _take_rows(a, rows)

    return ValidationLoss(
        _take_rows(model.X, rows),
        take(outer.y),
        outer.loss,
        model.n_outputs,
        model.fit_intercept,
        take(weight),
        scale=outer.scale,
    ), _weight_total(xp, weight, rows)


def _weight_total(xp, weight, rows):
    if weight is None:
        return float(len(rows))
    return float(xp.sum(_take_rows(weight, rows)))


def diagonal_curvature(history):
    """Second derivative of the scalar CV curve ``h(t)`` at its best point.

    Secant of ``h'`` between the best record of a scalar search and its
    nearest neighbour in ``t``; None when it is not positive (or one point).
    """
    values = [record["value"] for record in history]
    best = int(np.argmin(values))
    t0, g0 = float(history[best]["lam"][0]), float(history[best]["grad"][0])
    others = [
        (abs(float(r["lam"][0]) - t0), float(r["lam"][0]), float(r["grad"][0]))
        for i, r in enumerate(history)
        if i != best and abs(float(r["lam"][0]) - t0) > 1e-6
    ]
    if not others:
        return None
    _, t1, g1 = min(others)
    curvature = (g1 - g0) / (t1 - t0)
    return curvature if curvature > 0 else None


class _HyperRegularized:
    """``h(lambda) + (mu / 2) ||lambda - center||^2`` over a CV problem."""

    def __init__(self, problem, center, mu):
        self.problem, self.center, self.mu = problem, center, mu

    @property
    def n_hyper(self):
        return self.problem.n_hyper

    def evaluate(self, lam, **kwargs):
        evaluation = self.problem.evaluate(lam, **kwargs)
        gap = evaluation.lam - self.center
        value = evaluation.value + 0.5 * self.mu * float(gap @ gap)
        grad = evaluation.grad
        if grad is not None:
            grad = grad + self.mu * gap
        return evaluation._replace(value=value, grad=grad)


class VectorSearch(KeptSolutions):
    """Many penalties, started at the single best one, kept if held-out data agree.

    Parameters
    ----------
    folds : list of Fold
        Engine folds with a per-feature or per-group penalty.
    space : HyperSpace
        Box, start (a given start is averaged into the scalar search's start)
        and structure ("features" or "groups").
    options : SearchOptions
        The scalar search and the vector descent run under the same options
        (``max_iter`` gradient steps each).
    keep_solutions : bool, default=False
        Keep every fold's solution at every evaluated point.
    strategy : {"holdout", "hyperreg"}, default="holdout"
        See the module docstring.
    patience : int or None, default=None
        :data:`PATIENCE` when None. Evaluations without a new lowest held-out loss before stopping
        (``"holdout"``).

    Attributes
    ----------
    scalar : GradientSearch
        The scalar search (one penalty, the same folds).
    problem : CrossValidatedProblem
        The vector descent's problem (its validation losses are the ``A``
        halves).
    history : list of dict
        Records of the scalar search (``"stage": "scalar"``, ``lam`` repeated
        over the coordinates), then of the vector descent (``"stage":
        "vector"``), each with ``heldout_value``, the ``B`` loss (and
        ``heldout_polished`` at re-solved points), ``descent_value``, the
        criterion the descent minimized, and
        ``value``, the CV loss on the descent halves (the whole validation
        folds at polished points).
    penalty_gain : float
        Relative decrease of the ``B`` loss from the scalar optimum to the
        returned point (0 when the scalar optimum is returned).
    mu : float or None
        Hyper-regularization strength (``"hyperreg"``).
    significance : float or None
        ``B`` loss decrease of the kept point over the scalar optimum, in
        standard errors (None when the descent found nothing better).
    """

    def __init__(
        self,
        folds,
        space,
        options,
        *,
        keep_solutions=False,
        strategy=DEFAULT_STRATEGY,
        patience=None,
    ):
        if strategy not in ("holdout", "hyperreg"):
            raise ValueError(
                f"strategy must be 'holdout' or 'hyperreg', got {strategy!r}."
            )
        self.strategy = strategy
        self.patience = PATIENCE if patience is None else int(patience)
        self.options, self.keep_solutions = options, keep_solutions
        n_hyper = {fold.inner.n_hyper for fold in folds}.pop()
        self.space = space.resize(n_hyper)
        low, high = self.space.lam_low, self.space.lam_high
        common_low, common_high = low.max(), high.min()
        if common_low >= common_high:
            common_low, common_high = low.min(), high.max()
        start = self.space.lam_start
        scalar_space = self.space._replace(
            lam_low=np.array([common_low]),
            lam_high=np.array([common_high]),
            lam_start=None if start is None else np.array([np.mean(start)]),
            structure="scalar",
            groups=None,
        )
        self.scalar = GradientSearch(
            [Fold(_scalar_inner(fold.inner), fold.outer) for fold in folds],
            scalar_space,
            options,
            keep_solutions=keep_solutions,
        )
        self.n_hyper = n_hyper
        descent, self._heldout, self._totals = [], [], []
        halves = [split_validation(to_numpy(fold.outer.y)) for fold in folds]
        # a half without positive weight (weights zero on a class) has no
        # loss: then there is no held-out criterion and the scalar optimum
        # is returned
        self.splittable = all(
            _weight_total(fold.outer.xp, fold.outer.sample_weight, rows) > 0
            for fold, pair in zip(folds, halves)
            for rows in pair
        )
        for fold, (rows_a, rows_b) in zip(folds, halves):
            if not self.splittable:
                descent.append(fold)
                continue
            loss_a, total_a = _half_loss(fold.outer, rows_a)
            loss_b, total_b = _half_loss(fold.outer, rows_b)
            descent.append(Fold(fold.inner, loss_a))
            self._heldout.append(loss_b)
            self._totals.append((total_a, total_b))
        self.problem = CrossValidatedProblem(
            descent,
            get_linear_solver(options.hypergradient),
            inner_max_iter=options.inner_max_iter,
            memory_size=options.memory_size,
            n_jobs=options.n_jobs,
        )
        self.history = []
        self.polished = set()
        self.penalty_gain = 0.0
        self.mu = None
        self.significance = None
        self._samples = None
        self._n_scalar = 0
        self._kept = []
        self._selected_w = None
        self._selected = None

    # -- criteria ------------------------------------------------------------------
    def _heldout_values(self):
        """``B`` loss of every fold at the descent problem's current solutions."""
        return np.array(
            [
                float(loss.value(w))
                for loss, w in zip(self._heldout, self.problem.solutions())
            ]
        )

    def _heldout_samples(self):
        """Per-sample ``B`` losses of every fold (their mean is the fold's ``B``)."""
        samples = []
        for loss, w in zip(self._heldout, self.problem.solutions()):
            xp = loss.xp
            values = loss.loss.value(xp, loss.y, loss.model.raw(w))
            if loss.sample_weight is not None:
                values = values * loss.sample_weight
            values = np.asarray(to_numpy(values), dtype=np.float64).reshape(-1)
            samples.append(values * loss._factor * values.size)
        return samples

    def _whole(self, values_a, values_b):
        """Validation loss of each whole fold from its two halves' means."""
        totals = np.asarray(self._totals)
        return (totals[:, 0] * values_a + totals[:, 1] * values_b) / totals.sum(axis=1)

    # -- the search ----------------------------------------------------------------
    def run(self, callback_ctx=None, owner=None):
        """Scalar search, then the vector descent from its optimum.

        Returns
        -------
        SearchResult
            ``lam`` of shape (n_hyper,), ``value`` its CV loss on the whole
            validation folds (polished), ``history`` as :attr:`history`.
        """
        scalar_result = self.scalar.run(callback_ctx=callback_ctx, owner=owner)
        self.history = [
            dict(record, lam=np.repeat(record["lam"], self.n_hyper), stage="scalar")
            for record in scalar_result.history
        ]
        for record in self.history:
            record[self.param] = self.space.values(record["lam"])
        self._n_scalar = len(self.history)
        if self.keep_solutions:
            self._kept = [self.scalar.solutions(i) for i in range(len(self.history))]
        self.polished = set(self.scalar.polished)
        if self.n_hyper == 1 or not self.splittable:
            self._selected = scalar_result.best_index
            self._selected_w = self.scalar.mean_solution()
            return scalar_result._replace(
                lam=self.history[scalar_result.best_index]["lam"].copy(),
                history=self.history,
            )
        lam0 = np.repeat(scalar_result.lam, self.n_hyper)
        # warm start at the scalar optimum: the same solutions (equal penalties)
        self.problem.states = [
            state._replace(w=w)
            for state, w in zip(self.problem.states, self.scalar.problem.solutions())
        ]
        options = self.options
        progress = SearchProgress(
            options.verbose, self.space.describe, options.max_iter
        )
        problem = self.problem
        if self.strategy == "hyperreg":
            curvature = diagonal_curvature(scalar_result.history)
            # mu = h''(t): moving one coordinate alone by d costs as much as
            # moving all of them together by d costs on the scalar curve.
            self.mu = (
                curvature if curvature is not None else abs(scalar_result.value)
            ) / MU_SCALE
            problem = _HyperRegularized(problem, lam0, self.mu)
        first = len(self.history)
        best = {"index": first, "value": np.inf, "since": 0}

        def on_record(record):
            heldout = self._heldout_values()
            record["heldout_value"] = float(heldout.mean())
            record["heldout_fold_values"] = heldout
            record["descent_value"] = record["value"]
            record["stage"] = "vector"
            record["iteration"] = len(self.history)
            record[self.param] = self.space.values(record["lam"])
            self.history.append(record)
            if self.keep_solutions:
                self._kept.append(self._snapshot())
            progress.evaluation(record)
            stop = options.callback is not None and bool(options.callback(record))
            if record["heldout_value"] < best["value"]:
                best.update(index=record["iteration"], value=record["heldout_value"])
                best["since"] = 0
            else:
                best["since"] += 1
            if self.strategy == "holdout" and best["since"] >= self.patience:
                return True
            return stop

        with self.problem.parallel():
            outer = hoag(
                problem,
                lam0,
                bounds=(self.space.lam_low, self.space.lam_high),
                max_iter=options.max_iter,
                tol=options.tol,
                tol_schedule=options.tol_schedule,
                tol_start=options.inner_tol,
                bracket=0,
                max_time=options.max_time,
                callback=on_record,
            )
            if self.strategy == "holdout":
                candidate = best["index"]
            else:
                candidate = first + int(
                    np.argmin([r["value"] for r in self.history[first:]])
                )
            selected = self._select(first, candidate)
        self._selected = selected
        record = self.history[selected]
        result = SearchResult(
            lam=record["lam"].copy(),
            value=record["value"],
            best_index=selected,
            n_iter=scalar_result.n_iter + outer.n_iter,
            converged=scalar_result.converged,
            message=f"{outer.message}; kept evaluation {selected} by held-out loss",
            history=self.history,
        )
        progress.finish(result)
        return result

    def _select(self, start, candidate):
        """Polish the start and the candidate; keep the candidate if ``B`` agrees."""
        reference = self.polish(start)
        if candidate == start:
            self._selected_w = reference
            self.penalty_gain = 0.0
            return start
        start_samples = self._samples
        contender = self.polish(candidate)
        b_start = self.history[start]["heldout_polished"]
        b_candidate = self.history[candidate]["heldout_polished"]
        # mean over folds of the mean per-sample difference, and its standard
        # error (the folds' validation rows are disjoint)
        differences = [a - b for a, b in zip(start_samples, self._samples)]
        standard_error = np.sqrt(
            sum(d.var(ddof=1) / d.size for d in differences)
        ) / len(differences)
        self.significance = (b_start - b_candidate) / max(standard_error, 1e-300)
        if self.significance > SIGNIFICANCE:
            self._selected_w = contender
            self.penalty_gain = (b_start - b_candidate) / abs(b_start)
            return candidate
        self._selected_w = reference
        self.penalty_gain = 0.0
        return start

    def polish(self, index):
        """Re-solve the folds at vector evaluation ``index`` to ``POLISH_TOL``.

        Sets the record's ``value`` (and ``fold_values``) to the loss on the
        whole validation folds and ``heldout_polished`` to the exact ``B``
        loss (``heldout_value`` keeps the search's, which chose the point);
        returns the fold solutions there. Scalar records are the scalar
        search's (:meth:`GradientSearch.polish`).
        """
        record = self.history[index]
        if index < self._n_scalar:
            self.scalar.polish(index)
            scalar = self.scalar.history[index]
            record.update(
                value=scalar["value"],
                fold_values=scalar["fold_values"],
                time=scalar["time"],
            )
            if self.keep_solutions:  # the scalar search replaced its snapshot
                self._kept[index] = self.scalar.solutions(index)
            self.polished.add(index)
            return list(self.scalar.problem.solutions())
        evaluation = self.problem.evaluate(
            record["lam"], inner_tol=POLISH_TOL, gradient=False, newton=True
        )
        heldout = self._heldout_values()
        self._samples = self._heldout_samples()
        whole = self._whole(evaluation.fold_values, heldout)
        record.update(
            value=float(whole.mean()),
            fold_values=whole,
            heldout_polished=float(heldout.mean()),
        )
        record["time"] += evaluation.time
        if self.keep_solutions:
            self._kept[index] = self._snapshot()
        self.polished.add(index)
        warn_if_not_polished(evaluation, self.space)
        return list(self.problem.solutions())

    def polish_best(self):
        """Index of the point :meth:`run` returned (already polished)."""
        return self._selected

    def mean_solution(self):
        """Mean of the folds' solutions at the returned point (refit warm start)."""
        solutions = self._selected_w
        return solutions if not isinstance(solutions, list) else mean_of(solutions)


def _scalar_inner(inner):
    """``inner`` with one penalty for every coefficient (same arrays)."""
    model = inner.model
    return InnerObjective(
        model.X,
        inner.y,
        inner.loss,
        L2Penalty.scalar(),
        model.n_outputs,
        model.fit_intercept,
        inner.sample_weight,
    )


def vector_search(folds, space, options, *, keep_solutions=False, strategy=None):
    """The search of a "features" or "groups" space under ``strategy``.

    ``strategy=None`` reads :data:`DEFAULT_STRATEGY` (at call time, so that a
    benchmark can compare strategies through the estimators); ``"cv-loss"``
    is the plain :class:`GradientSearch` on the whole CV loss.
    """
    strategy = DEFAULT_STRATEGY if strategy is None else strategy
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}.")
    if strategy == "cv-loss":
        return GradientSearch(folds, space, options, keep_solutions=keep_solutions)
    return VectorSearch(
        folds, space, options, keep_solutions=keep_solutions, strategy=strategy
    )
