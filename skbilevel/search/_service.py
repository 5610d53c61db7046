"""The search service: bracket, HOAG, polish of the best point, history, warnings.

Both estimators hand it the engine folds of one fit (:mod:`._folds`), a
:class:`~skbilevel.search.HyperSpace` and :class:`SearchOptions`; it returns
the point with the lowest cross-validated loss, every evaluation on the way
(the history), and keeps the fold solutions for whoever scores them. A
capability added here (a faster polish, a new start rule, a device fix) serves
``HOAGLogisticRegression`` and ``BilevelSearchCV`` alike.
"""

import warnings
from typing import NamedTuple

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from ..hypergrad import get_linear_solver
from ..outer import CrossValidatedProblem, hoag
from ..outer._fold_eval import gradient_test
from ..solvers import minimize_newton_cg
from ..utils._array_api import to_numpy
from ._progress import SearchProgress

__all__ = [
    "GradientSearch",
    "PATHS",
    "Reporter",
    "POLISH_TOL",
    "SearchOptions",
    "SearchResult",
    "make_search",
]

# How a search may run: chosen by the problem ("auto"), the closed form of the
# squared loss, or the gradient search (HOAG) that serves every problem.
PATHS = ("auto", "closed-form", "gradient")

# Relative gradient-norm tolerance of the re-solves where a search needs its
# fold models exact rather than as precise as the user's (the points of the
# many-penalty search, compared by its held-out check): fold models then match
# scikit-learn fits at tol=1e-10 to ~5e-7 in the weights (measured on
# breast_cancer, digits, diabetes).
POLISH_TOL = 1e-8
# Points of the coarse bracket when no start is given: strongest penalty
# first, stopped past the minimum.
BRACKET = 5
# The search's fold fits are never solved more than 1 / FLOOR_FACTOR times
# tighter than the user's estimator would fit them (scikit-learn's test at
# FLOOR_FACTOR * polish_tol; log-losses only): the inner tolerance is
# relative to the gradient at zero, which is small per sample on sparse
# data (0.02 on the sparse problem of benchmarks/run.py, 3 on Fashion-MNIST
# 0/6), where the fits ended 50-500 times tighter than scikit-learn's
# tol=1e-4. Measured on that sparse problem (5 folds): the search's last
# evaluation from 15 Newton steps to 10, 11% of the search; the same C.
# A floor at polish_tol itself cost it an evaluation (a rejected step).
FLOOR_FACTOR = 0.1
# Newton steps a refit on all the data may take at least (see newton_refit).
REFIT_MIN_ITER = 1000


class SearchOptions(NamedTuple):
    """How the search runs (the estimators' parameters of the same names).

    Attributes
    ----------
    hypergradient : str or LinearSolver
        Solver of the hypergradient linear systems.
    max_iter : int
        Gradient steps at most (bracket excluded).
    tol : float
        Outer stopping tolerance (projected hypergradient norm).
    inner_tol : float
        First tolerance of the inner and linear solves.
    inner_max_iter : int
        Iterations (L-BFGS) or steps (Newton-CG) at most per inner solve.
    memory_size : int
        Curvature pairs kept from each inner solve (SHINE's estimate).
    inner_solver : {"newton-cg", "lbfgs"}
        Solver of the fold fits.
    tol_schedule : {"exponential", "quadratic", "cubic"}
        Decrease of the inner tolerance along the outer steps.
    max_time : float or None
        Time budget of the search, in seconds.
    n_jobs : int or None
        Folds solved in parallel.
    verbose : int
        Progress display level.
    callback : callable or None
        Called with each decided history record; a truthy return stops.
    polish_tol : float
        Tolerance of the re-solves of a best point (the polish), per unit of
        training weight: a fold is re-solved until ``max |grad| <= polish_tol *
        sum of its training weights``, ``LogisticRegression(tol=polish_tol)``'s
        own test (a squared loss's stays relative to its gradient at zero).
    """

    hypergradient: object = "shine-refine"
    max_iter: int = 30
    tol: float = 1e-4
    inner_tol: float = 1e-3
    inner_max_iter: int = 1000
    memory_size: int = 10
    tol_schedule: str = "exponential"
    max_time: object = None
    n_jobs: object = None
    verbose: int = 0
    callback: object = None
    polish_tol: float = 1e-4
    inner_solver: str = "newton-cg"

    @classmethod
    def from_estimator(cls, estimator):
        """The options an estimator holds as parameters of the same names."""
        return cls(**{name: getattr(estimator, name) for name in cls._fields})


class SearchResult(NamedTuple):
    """What a search found.

    Attributes
    ----------
    lam : ndarray of shape (n_hyper,)
        Best point (lowest cross-validated loss), log penalty strengths.
    value : float
        Its cross-validated loss, from fold fits solved to ``polish_tol``.
    best_index : int
        Its index in ``history``.
    n_iter : int
        Gradient steps taken (accepted or rejected; bracket excluded), at
        most ``max_iter``.
    converged : bool
        Whether a stopping test was met before ``max_iter`` or the budget.
    message : str
        Why the search stopped.
    history : list of dict
        One record per evaluation of the CV loss, in order (see
        :meth:`GradientSearch.run`).
    """

    lam: np.ndarray
    value: float
    best_index: int
    n_iter: int
    converged: bool
    message: str
    history: list


class Reporter:
    """Where every decided record of a search goes: the verbose display, the
    user's ``callback`` and scikit-learn's callback contexts.

    Parameters
    ----------
    options : SearchOptions
        Its ``verbose`` and ``callback``.
    space : HyperSpace
        Describes the points in the display.
    callback_ctx : CallbackContext or None
        The estimator's fit context (1.9's ``set_callbacks`` API): the search
        becomes its subtask, each evaluation a subtask of the search.
    owner : estimator instance or None
        The estimator whose fit runs the search (the hooks receive it).
    max_iter : int
        Gradient steps allowed, for the display's step counter.
    """

    def __init__(self, options, space, callback_ctx, owner, max_iter):
        self.progress = SearchProgress(options.verbose, space.describe, max_iter)
        self.callback, self.owner = options.callback, owner
        self.context = None
        if callback_ctx is not None:
            # the number of evaluations is not known in advance
            self.context = callback_ctx.subcontext(
                task_name="search", max_subtasks=None
            )
            self.context.call_on_fit_task_begin(estimator=owner)

    def report(self, record):
        """Hand on a decided record; True when someone asks to stop."""
        self.progress.evaluation(record)
        stop = self.callback is not None and bool(self.callback(record))
        if self.context is not None:
            evaluation = self.context.subcontext(task_name="evaluation")
            evaluation.call_on_fit_task_begin(estimator=self.owner)
            stop |= bool(evaluation.call_on_fit_task_end(estimator=self.owner))
        return stop

    def finish(self, result):
        """Close the search's task and print why it stopped."""
        if self.context is not None:
            self.context.call_on_fit_task_end(estimator=self.owner)
        self.progress.finish(result)


class KeptSolutions:
    """What the iterative searches share: the parameter's name and the fold
    solutions kept at every evaluated point (``keep_solutions=True``), in
    ``self._kept``, for the estimators that score them as fold models."""

    @property
    def param(self):
        """The parameter's name on the estimator (``"C"``, not ``"clf__C"``)."""
        return self.space.param

    def solutions(self, index):
        """Every fold's ``(coef, intercept)`` (NumPy) at evaluated point ``index``."""
        if not self.keep_solutions:
            raise RuntimeError("This search was created with keep_solutions=False.")
        return self._kept[index]

    def _snapshot(self):
        return snapshot(self.problem)

    def release_predictions(self):
        """Drop the kept validation predictions (the points are scored: the
        refit's arrays need not sit beside them); :meth:`kept_predictions`
        then gives None."""
        self._kept_raw = None

    def kept_predictions(self, indices):
        """Every fold's validation predictions at evaluated points ``indices``,
        as the search computed them at the kept solutions (no product), or
        None when some point has none kept (see :func:`validation_raw`).

        Returns
        -------
        list of ndarray or None
            Per fold, shape (n_points, n_val, n_outputs).
        """
        kept = getattr(self, "_kept_raw", None)
        if kept is None or len(kept) != len(self._kept):
            return None  # released, or never kept
        points = [kept[index] for index in indices]
        if any(point is None for point in points):
            return None
        return [
            np.stack(
                [np.reshape(point[k], (point[k].shape[0], -1)) for point in points]
            )
            for k in range(len(points[0]))
        ]


class GradientSearch(KeptSolutions):
    """One gradient search over fixed folds.

    Parameters
    ----------
    folds : list of Fold
        Engine folds (:func:`~skbilevel.search.engine_folds`).
    space : HyperSpace
        Box, start and structure; the box is broadcast to the folds' number
        of hyperparameters.
    options : SearchOptions
    keep_solutions : bool, default=False
        Keep every fold's solution at every evaluated point (to score them
        as fold models later: :meth:`solutions`).
    """

    def __init__(self, folds, space, options, *, keep_solutions=False):
        self.problem = cv_problem(folds, options)
        self.space = space.resize(self.problem.n_hyper)
        self.options = options
        self.keep_solutions = keep_solutions
        self.history = []
        self.polished = set()
        self._kept = []
        self._kept_raw = []

    def run(self, callback_ctx=None, owner=None):
        """Bracket (without a start), HOAG, then polish the best point.

        Parameters
        ----------
        callback_ctx : CallbackContext or None, default=None
            scikit-learn callback context of the estimator's fit (1.9's
            ``set_callbacks`` API): the search is a subtask of it, each
            evaluation of the CV loss a subtask of the search (a
            ``ProgressBar`` advances once per evaluation).
        owner : estimator instance or None, default=None
            The estimator whose fit runs the search (the callbacks' hooks
            receive it).

        Each history record holds ``lam``, the parameter's values under its
        name (an array of shape (n_hyper,)), ``value`` (mean CV loss, from
        inexact fold fits corrected to first order; exact at polished
        points), ``fold_values``, ``grad``, ``grad_norm``, ``phase``
        ("bracket", "start" or "gradient"), ``accepted``, the solves' costs
        and times.

        Returns
        -------
        SearchResult
        """
        space, options = self.space, self.options
        reporter = Reporter(options, space, callback_ctx, owner, options.max_iter)

        def on_record(record):
            record[self.param] = space.values(record["lam"])
            if self.keep_solutions:
                self._kept.append(self._snapshot())
                if self._kept_raw is not None:  # not released
                    self._kept_raw.append(validation_raw(self.problem))
            return reporter.report(record)

        if options.verbose > 0:
            ends = np.sort(
                np.concatenate(
                    [space.values(space.lam_low), space.values(space.lam_high)]
                )
            )
            print(
                f"Fitting {self.problem.n_folds} folds: gradient search of "
                f"{space.name} in [{ends[0]:.4g}, {ends[-1]:.4g}]",
                flush=True,
            )
        if space.lam_start is None:
            lam0, bracket = (space.lam_low + space.lam_high) / 2, BRACKET
        else:
            lam0, bracket = space.lam_start, 0
        # one pool of workers for the whole search (see CrossValidatedProblem)
        with self.problem.parallel():
            outer = hoag(
                self.problem,
                lam0,
                bounds=(space.lam_low, space.lam_high),
                max_iter=options.max_iter,
                tol=options.tol,
                tol_schedule=options.tol_schedule,
                tol_start=options.inner_tol,
                bracket=bracket,
                max_time=options.max_time,
                callback=on_record,
                inner_floor=FLOOR_FACTOR * options.polish_tol,
            )
            self.history = outer.history
            best = self.polish_best()
        result = SearchResult(
            lam=self.history[best]["lam"].copy(),
            value=self.history[best]["value"],
            best_index=best,
            n_iter=outer.n_iter,
            converged=outer.converged,
            message=outer.message,
            history=self.history,
        )
        reporter.finish(result)
        if not result.converged:
            warnings.warn(
                f"The search for {self.param} stopped before convergence "
                f"({result.message}); the best {self.param} seen is used. Increase "
                f"max_iter (or max_time), or increase tol to accept a less precise "
                f"{self.param}.",
                ConvergenceWarning,
                stacklevel=3,
            )
        return result

    def polish_best(self):
        """Polish the point of lowest CV loss until the lowest is a polished one.

        A polished value can rise above another point's inexact one; that
        point is then polished in turn (rarely more than once).

        Returns
        -------
        int
            Index of the best point in the history.
        """
        # each pass polishes a new point: after len(history) passes at most,
        # the lowest is a polished one
        for _ in range(len(self.history) + 1):
            best = int(np.argmin([record["value"] for record in self.history]))
            if best in self.polished:
                break
            self.polish(best)
        return best

    def polish(self, index):
        """Re-solve the folds at evaluated point ``index`` to ``polish_tol``.

        The search's solves are inexact by design (their tolerance decreases
        along the outer iterations): a point reported as best deserves fold
        models as precise as the user's estimator fits them (scikit-learn's
        gradient test at ``options.polish_tol``; at the last point evaluated,
        folds that already pass it cost one gradient; elsewhere each fold
        takes one step at least, from the last point's solution). Updates the
        record's ``value``, ``fold_values``
        and ``time`` (and the kept solutions).
        """
        record = self.history[index]
        tol = self.options.polish_tol
        evaluation = self.problem.evaluate(
            record["lam"], inner_tol=tol, gradient=False, newton=True, per_sample=True
        )
        if self.keep_solutions:
            self._kept[index] = self._snapshot()
            if self._kept_raw is not None:  # not released
                self._kept_raw[index] = validation_raw(self.problem)
        self.polished.add(index)
        record["value"] = evaluation.value
        record["fold_values"] = evaluation.fold_values
        record["time"] += evaluation.time
        if self.options.verbose > 0:
            print(
                f"Re-solved the folds of evaluation {index} "
                f"({self.space.describe(record['lam'])}) to tol {tol:g}: "
                f"CV loss {evaluation.value:.6g}, {evaluation.inner_iter} inner "
                f"iterations, {evaluation.time:.2f}s.",
                flush=True,
            )
        warn_if_not_polished(evaluation, self.space, tol)
        return evaluation

    def mean_solution(self):
        """Mean of the folds' current solutions (engine layout, data namespace).

        After :meth:`run`, the folds hold the last point polished: the best
        one, or one whose inexact value was as low. Their mean is a warm start
        for the refit on all the data (each fold was trained on most of it);
        only its starting point depends on it, not its result.
        """
        return mean_of(self.problem.solutions())


def cv_problem(folds, options):
    """The :class:`CrossValidatedProblem` of ``folds`` under ``options``."""
    return CrossValidatedProblem(
        folds,
        get_linear_solver(options.hypergradient),
        inner_max_iter=options.inner_max_iter,
        memory_size=options.memory_size,
        inner_solver=options.inner_solver,
        n_jobs=options.n_jobs,
    )


def warn_if_not_polished(evaluation, space, tol=POLISH_TOL):
    """ConvergenceWarning when a re-solve to ``tol`` did not get there."""
    if not evaluation.inner_converged:
        warnings.warn(
            f"The fold fits at {space.describe(evaluation.lam)} did not reach the "
            f"tolerance {tol:g}; increase inner_max_iter, scale the data, or "
            "narrow the bounds of the search.",
            ConvergenceWarning,
            stacklevel=4,
        )


def snapshot(problem):
    """Copy of every fold's current solution as (coef, intercept), on the host."""
    copies = []
    for fold, w in zip(problem.folds, problem.solutions()):
        coef, intercept = fold.inner.model.split(w)
        copies.append(
            (
                np.array(to_numpy(coef), dtype=np.float64),
                None if intercept is None else np.array(to_numpy(intercept)),
            )
        )
    return copies


def validation_raw(problem):
    """Every fold's validation predictions (raw: decision values) at its
    current solution, where the fold's training objective kept them with
    its last gradient there (a ``ValidationLoss`` whose ``sibling`` it is:
    folds reading one shared matrix in this process); None when a fold has
    none. Scoring the point from them takes no product with ``X`` (on the
    sparse problem of ``benchmarks/run.py`` the product for every point at
    once took 18 ms of a 0.63 s ``BilevelSearchCV`` fit).

    Returns
    -------
    list of ndarray or None
        Per fold, the array the objective keeps (float64, not copied: it is
        replaced, never modified, by the objective's next point).
    """
    out = []
    for fold, w in zip(problem.folds, problem.solutions()):
        outer = fold.outer
        sibling = getattr(outer, "sibling", None)
        raw = None if sibling is None else sibling.shared_raw(w, outer.model.rows)
        if raw is None or not isinstance(raw, np.ndarray) or raw.dtype != np.float64:
            return None
        out.append(raw)
    return out


def newton_refit(inner, lam, w0, *, tol, max_iter):
    """A refit on all the data at ``lam`` from ``w0`` (the mean of the fold
    solutions): Newton-CG on ``inner`` (an :class:`InnerObjective`) with its
    gradient test at ``tol`` (``polish_tol``) and the step test below.

    The gradient test is the fold fits': scikit-learn's (the largest entry
    per unit of training weight) for the log-losses, relative to the
    gradient at zero for a squared loss (whose gradient carries the units of
    ``X`` and ``y``).

    The mean of the fold solutions was fitted with a fifth less data at the
    same penalty: along directions of weak curvature it can pass
    scikit-learn's gradient test at ``polish_tol``
    while its coefficients are far from the solution (on the 40000 x 20000
    sparse problem of the benchmarks, 15% off, with a held-out log-loss
    0.75% worse than the solution's). The refit therefore ends only after
    a full Newton step shorter than ``min(0.1, 1000 polish_tol)`` times the
    norm of the parameters (coefficients and intercepts; 0.1 at the default
    1e-4, 1e-5 at 1e-8): with the step's conjugate gradient solved
    to a tenth, they are then within about 1% of the solution. On the data
    sets of the benchmarks the refits ended 1e-4 to 1.6e-2 from it, each
    closer than ``LogisticRegression`` at ``tol=polish_tol`` fitted from zero
    (2e-3 to 8e-2); a bound of 1% cost 10-class Fashion-MNIST (5000 rows) 5.1 s
    instead of 1.5 s for a precision no fit there needs (session scripts at
    6936c30 and 6842423).

    ``max_iter`` (the estimator's ``inner_max_iter``) is raised to
    ``REFIT_MIN_ITER`` at least: one solve of all the data, which a small
    iteration budget meant for the search's many fold fits must not cut.

    Returns the result of :func:`~skbilevel.solvers.minimize_newton_cg`
    (an ``LBFGSResult``).
    """
    gtol_scale, gtol_norm = gradient_test(inner, per_sample=True)
    # the trial points' raw predictions from the steps' products (see
    # objectives.linear.RawTracker), where the objective offers them
    make_tracker = getattr(inner, "tracker", None)
    result = minimize_newton_cg(
        lambda w: inner.value_and_grad(w, lam),
        lambda w: inner.hessp(w, lam),
        w0,
        tol=tol,
        gtol_scale=gtol_scale,
        gtol_norm=gtol_norm,
        max_iter=max(max_iter, REFIT_MIN_ITER),
        xtol=min(0.1, 1e3 * float(tol)),
        tracker=None if make_tracker is None else make_tracker(lam),
    )
    return result._replace(x=center_intercepts(inner, result.x))


def center_intercepts(inner, w):
    """``w`` with its multinomial intercepts shifted to sum to zero.

    The softmax is unchanged when one constant is added to every class's
    score: the unpenalized intercepts of a multinomial model are determined
    up to that constant, and the objective's gradient and curvature along it
    vanish. A fit started at zero keeps their sum at zero (scikit-learn's
    solution); a Newton step whose conjugate gradient meets directions of
    nearly zero curvature (nearly separable classes, large weights) can move
    it, leaving the same predictions with other intercepts (on iris with
    per-feature penalties: all three shifted by 9e-5). Other models: ``w``
    as it is.
    """
    model = inner.model
    if getattr(inner.loss, "name", None) != "multinomial_logistic" or not (
        model.fit_intercept
    ):
        return w
    intercept = w[model.n_coef :]
    return inner.xp.concat([w[: model.n_coef], intercept - inner.xp.mean(intercept)])


def mean_of(solutions):
    """Mean of a list of arrays of any namespace (no stacking: CuPy-safe)."""
    total = solutions[0]
    for w in solutions[1:]:
        total = total + w
    return total / len(solutions)


def make_search(folds, space, options, *, keep_solutions=False, path="auto", rows=None):
    """The search for these folds: closed form where it exists, else HOAG.

    The "features" and "groups" structures take the vector search
    (:mod:`._vector`: the scalar search, then a descent stopped on held-out
    halves of the validation folds); the "output-groups" structure the
    banded ridge search (:mod:`._banded`, closed form only: ValueError where
    it does not apply).

    Parameters
    ----------
    folds : list of Fold
        Engine folds.
    space : HyperSpace
    options : SearchOptions
    keep_solutions : bool, default=False
        See :class:`GradientSearch`.
    path : {"auto", "closed-form", "gradient"}, default="auto"
        ``"auto"`` takes the closed form for a squared loss with one penalty
        for all coefficients or one per target (NumPy / SciPy data, sparse
        only with more samples than features per fold), the gradient search
        otherwise; ``"closed-form"`` raises ValueError when it does not
        apply.
    rows : SharedRows or None, default=None
        When every fold's data are rows of one array (no per-fold transform):
        the closed form computes the products of all rows once.

    Returns
    -------
    GradientSearch, RidgePathSearch, VectorSearch or BandedRidgeSearch
    """
    from ._banded import BandedRidgeSearch, banded_applies
    from ._ridge import RidgePathSearch, closed_form_applies
    from ._vector import VECTOR_STRUCTURES, vector_search

    if path not in PATHS:
        raise ValueError(f"path must be one of {PATHS}, got {path!r}.")
    if space.structure == "output-groups":
        reason = (
            "path='gradient' asks for the iterative engine"
            if path == "gradient"
            else banded_applies(folds)
        )
        if reason is not None:
            raise ValueError(
                "One penalty per target and per group is searched in closed form "
                f"only (the banded ridge search), which does not apply: {reason}."
            )
        return BandedRidgeSearch(
            folds, space, options, keep_solutions=keep_solutions, rows=rows
        )
    reason = None if path == "gradient" else closed_form_applies(folds, space)
    if path != "gradient" and reason is None:
        return RidgePathSearch(
            folds, space, options, keep_solutions=keep_solutions, rows=rows
        )
    if path == "closed-form":
        raise ValueError(f"path='closed-form' does not apply: {reason}.")
    if space.structure in VECTOR_STRUCTURES:
        return vector_search(folds, space, options, keep_solutions=keep_solutions)
    squared = getattr(folds[0].inner.loss, "name", None) == "squared"
    if options.verbose > 0 and squared:
        print(f"Gradient search: {reason} (no closed form).", flush=True)
    return GradientSearch(folds, space, options, keep_solutions=keep_solutions)
