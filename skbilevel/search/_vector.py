"""The search of many penalties (one per feature or per group) that generalizes.

With hundreds of hyperparameters the cross-validated loss is a noisy target:
descending on it to convergence fits the validation folds (Cawley & Talbot,
JMLR 2010), and on held-out data the many penalties lose to the single best
``C``. Stopping and checking the descent on validation rows it does not descend
on (half ``B`` of each validation fold, the descent using the other half
``A``) is not enough when the descent's models train on ``B``: with K-fold CV
every validation row of one fold trains all the other folds' models. The
descent then rewards a penalty under which the models trained on rows of
``B`` predict rows of ``A`` well, and the check rewards the same penalty for
the models trained on those rows of ``A`` predicting those of ``B``: both see
the same chance agreement between the two sets of rows. Measured on
Fashion-MNIST 0 vs 6 (2000 rows, one penalty per pixel), the ``B`` halves
improved by up to 6% along the descent while rows no fold model trained on,
and the test rows, got steadily worse (+2% to +25%).

:class:`VectorSearch` therefore keeps ``B`` out of everything the descent
sees:

1. it runs the scalar search first, on the user's folds with one penalty for
   all coefficients (the single best ``C``, exactly as ``penalty_groups=None``
   finds it);
2. it splits the validation rows of each fold in two halves, stratified by
   class, with a fixed seed (:func:`split_validation`): ``A`` and ``B``;
3. it descends from the scalar optimum (every coordinate equal) on a CV built
   from the ``A`` halves alone (:func:`descent_folds`): fold ``k``'s model is
   trained on the ``A`` halves of the other folds and scored on ``A_k``. No
   row of ``B`` enters a model or a criterion of the descent, so the chosen
   penalties depend on ``A`` only;
4. it scores every evaluated point on the ``B`` halves with the user's fold
   models (trained on all their training rows, solved to ``POLISH_TOL``):
   given ``A``, the rows of ``B`` are fresh, and a chance pattern of ``A``
   that the penalties learned does not help on them;
5. with ``strategy="holdout"`` (the default) it stops when ``B`` has not
   improved for ``PATIENCE`` evaluations and takes the point of lowest ``B``
   loss; with ``strategy="hyperreg"`` it descends on the ``A`` criterion plus
   ``(mu / 2) ||lambda - lambda_scalar||^2`` (``mu`` from the curvature of the
   scalar CV curve, see :func:`diagonal_curvature`) and takes its best point
   on that criterion;
6. it returns that point only if its ``B`` loss is lower than the scalar
   optimum's by more than ``SIGNIFICANCE`` standard errors of the paired
   per-row difference; otherwise the scalar search's best point.

``penalty_gain`` is the relative decrease of the ``B`` loss from the scalar
optimum to the returned point (zero when the scalar optimum is kept). It is
mildly optimistic: ``B`` also chose the point, among a short path.

``strategy="cv-loss"`` (see :func:`vector_search`) is the plain gradient
search on the whole CV loss of the user's folds (a bracket along the
diagonal, then HOAG on every coordinate), kept for comparisons.
"""

import numpy as np

from ..objectives import InnerObjective, L2Penalty
from ..outer import Fold, hoag
from ..utils._array_api import to_numpy
from ._heldout import (
    _rows_loss,
    _weight_total,
    descent_folds,
    expected_square_difference,
    paired_significance,
    per_row_losses,
    split_validation,
)
from ._progress import SearchProgress
from ._service import (
    POLISH_TOL,
    GradientSearch,
    KeptSolutions,
    SearchResult,
    cv_problem,
    mean_of,
    snapshot,
    warn_if_not_polished,
)

__all__ = [
    "DEFAULT_STRATEGY",
    "PATIENCE",
    "SIGNIFICANCE",
    "STRATEGIES",
    "VectorSearch",
    "diagonal_curvature",
    "vector_search",
]

STRATEGIES = ("holdout", "hyperreg", "cv-loss")
#: Strategy of ``make_search`` for the "features" and "groups" structures.
DEFAULT_STRATEGY = "holdout"
# Evaluations without a new lowest held-out loss before the descent stops: the
# path is short (a few steps from the scalar optimum), and one or two noisy
# rises of B should not end it (5 instead of 3 changed no benchmark result).
PATIENCE = 3
MU_SCALE = 1.0
# B must prefer the many penalties by this many standard errors of the paired
# per-row loss difference (one-sided, ~2.3% false positives under a normal
# approximation for one point; B also chose the point among the path's, which
# are strongly correlated with each other near the start).
SIGNIFICANCE = 2.0
VECTOR_STRUCTURES = ("features", "groups")


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
    """Many penalties, started at the single best one, kept if held-out rows agree.

    Parameters
    ----------
    folds : list of Fold
        Engine folds with a per-feature or per-group penalty (at least two).
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
        :data:`PATIENCE` when None. Evaluations without a new lowest held-out
        loss before stopping (``"holdout"``).

    Attributes
    ----------
    scalar : GradientSearch
        The scalar search (one penalty, the same folds).
    problem : CrossValidatedProblem
        The vector descent's problem (:func:`descent_folds`: trained and
        scored on the ``A`` halves).
    cv_problem : CrossValidatedProblem
        The user's folds with the many penalties: their models score ``B``.
    history : list of dict
        Records of the scalar search (``"stage": "scalar"``, ``lam`` repeated
        over the coordinates), then of the vector descent (``"stage":
        "vector"``), each with ``heldout_value``, the ``B`` loss of the fold
        models, ``descent_value``, the criterion the descent minimized, and
        ``value`` and ``fold_values``, the CV loss on the whole validation
        folds (the fold models are solved to ``POLISH_TOL`` at every point).
    penalty_gain : float
        Relative decrease of the ``B`` loss from the scalar optimum to the
        returned point (0 when the scalar optimum is returned).
    mu : float or None
        Hyper-regularization strength (``"hyperreg"``).
    significance : float or None
        ``B`` loss decrease of the candidate over the scalar optimum, in
        standard errors (:func:`paired_significance`; None when the descent
        found nothing better).
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
        halves = [split_validation(to_numpy(fold.outer.y)) for fold in folds]
        # a half without positive weight (weights zero on a class) has no
        # loss, and one fold has no other fold to train on: then there is no
        # held-out criterion and the scalar optimum is returned
        self.splittable = len(folds) > 1 and all(
            _weight_total(fold.outer.xp, fold.outer.sample_weight, rows) > 0
            for fold, pair in zip(folds, halves)
            for rows in pair
        )
        self.cv_problem = cv_problem(folds, options)
        self.problem = None
        self._heldout = []
        if self.splittable:
            self.problem = cv_problem(
                descent_folds(folds, [descent for descent, _ in halves]), options
            )
            self._heldout = [
                _rows_loss(fold.outer, heldout)
                for fold, (_, heldout) in zip(folds, halves)
            ]
        self.history = []
        self.polished = set()
        self.penalty_gain = 0.0
        self.mu = None
        self.significance = None
        self._n_scalar = 0
        self._kept = []
        self._rows = {}  # per-row B losses of the start and the best point
        self._solutions = {}  # the fold models at the same points
        self._selected_w = None
        self._selected = None

    def _snapshot(self):
        return snapshot(self.cv_problem)

    # -- the held-out criterion -----------------------------------------------------
    def _solve_folds(self, record):
        """The user's fold models at the record's point, to ``POLISH_TOL``."""
        evaluation = self.cv_problem.evaluate(
            record["lam"], inner_tol=POLISH_TOL, gradient=False, newton=True
        )
        record["cv_value"] = evaluation.value
        record["cv_fold_values"] = evaluation.fold_values
        record["time"] += evaluation.time
        warn_if_not_polished(evaluation, self.space)
        return evaluation

    def _score(self, record):
        """Solve the fold models at the record's point; their loss on ``B``."""
        self._solve_folds(record)
        rows = self._heldout_rows()
        heldout = np.array([r.mean() for r in rows])
        record["heldout_value"] = float(heldout.mean())
        record["heldout_fold_values"] = heldout
        return rows

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
        self._selected = scalar_result.best_index
        self._selected_w = self.scalar.mean_solution()
        if self.n_hyper == 1 or not self.splittable:
            return scalar_result._replace(
                lam=self.history[scalar_result.best_index]["lam"].copy(),
                history=self.history,
            )
        lam0 = np.repeat(scalar_result.lam, self.n_hyper)
        # the user's folds start at the scalar optimum's solutions (equal
        # penalties). The descent's folds start cold: those solutions were
        # trained on B, and an inexact solve warm-started from them would
        # carry some of B into the descent.
        # (the descent's states are fresh: no path, no memory to drop)
        self.cv_problem.states = [
            state._replace(w=w)
            for state, w in zip(self.cv_problem.states, self.scalar.problem.solutions())
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
            record["iteration"] = len(self.history)
            rows = self._score(record)
            record["descent_value"] = record["value"]
            record["stage"] = "vector"
            record[self.param] = self.space.values(record["lam"])
            self.history.append(record)
            if self.keep_solutions:
                self._kept.append(self._snapshot())
            progress.evaluation(record)
            stop = options.callback is not None and bool(options.callback(record))
            improved = record["heldout_value"] < best["value"]
            if improved or record["iteration"] == first:
                self._rows[record["iteration"]] = rows
                self._solutions[record["iteration"]] = list(self.cv_problem.solutions())
            if improved:
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
        # every vector point's fold models were solved exactly: its value is
        # the CV loss on the whole validation folds
        for index in range(first, len(self.history)):
            record = self.history[index]
            record.update(
                value=record["cv_value"], fold_values=record["cv_fold_values"]
            )
            self.polished.add(index)
        if self.strategy == "holdout":
            candidate = best["index"]
        else:
            candidate = first + int(
                np.argmin([r["descent_value"] for r in self.history[first:]])
            )
            if candidate not in self._rows:
                self.polish(candidate)
                self._rows[candidate] = self._heldout_rows()
                self._solutions[candidate] = list(self.cv_problem.solutions())
        selected = self._select(scalar_result.best_index, first, candidate)
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

    def _heldout_rows(self):
        return [
            per_row_losses(loss, w)
            for loss, w in zip(self._heldout, self.cv_problem.solutions())
        ]

    def _select(self, scalar_best, start, candidate):
        """The candidate if ``B`` prefers it significantly, else the scalar optimum."""
        if candidate == start:
            return scalar_best
        floors = [
            expected_square_difference(fold.outer, w_start, w_candidate)
            for fold, w_start, w_candidate in zip(
                self.cv_problem.folds,
                self._solutions[start],
                self._solutions[candidate],
            )
        ]
        self.significance = paired_significance(
            self._rows[start], self._rows[candidate], floors
        )
        if self.significance <= SIGNIFICANCE:
            return scalar_best
        b_start = self.history[start]["heldout_value"]
        b_candidate = self.history[candidate]["heldout_value"]
        self.penalty_gain = (b_start - b_candidate) / abs(b_start)
        self._selected = candidate
        self._selected_w = mean_of(self._solutions[candidate])
        return candidate

    def polish(self, index):
        """Re-solve the folds at evaluated point ``index`` to ``POLISH_TOL``.

        Vector points are solved so at evaluation (this re-solves them and
        sets ``value``, ``fold_values``); scalar records are the scalar
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
        else:
            evaluation = self._solve_folds(record)
            record.update(value=evaluation.value, fold_values=evaluation.fold_values)
            if self.keep_solutions:
                self._kept[index] = self._snapshot()
        self.polished.add(index)

    def polish_best(self):
        """Index of the point :meth:`run` returned (already polished)."""
        return self._selected

    def mean_solution(self):
        """Mean of the folds' solutions at the returned point (refit warm start)."""
        return self._selected_w


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
