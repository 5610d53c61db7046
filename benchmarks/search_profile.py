"""Where a search's time goes, against the oracle, on run.py's quick data sets.

Run ``python benchmarks/search_profile.py`` from the repository root
(``--repeat N``, default 3; about a minute on two cores). One BLAS thread, the
same 5 stratified folds for every method. For each data set of ``run.py
--quick``, the median over the repeats of:

- ``HOAGLogisticRegression(cv=folds)`` wall time, split into the bracket
  (and start), the gradient steps, the polish (re-solve of the best point to
  ``polish_tol``) and the refit on all the data; ``other`` is the rest (validation,
  fold construction, Python overhead);
- ``BilevelSearchCV(LogisticRegression(), {"C": (1e-4, 1e4)})`` wall time
  (refit and scoring of every evaluated point included);
- the oracle: ``cross_validate(LogisticRegression(C=C_))`` plus one refit;
- the inner cost of HOAG's search: passes over the data (gradients and
  Hessian-vector products of the fold fits and of the linear solves) summed
  over folds and evaluations (machine independent).

``--inner-solver lbfgs`` runs both searches with L-BFGS fold fits instead of
the default Newton-CG; ``--inner-tol T`` starts their tolerance schedule at
``T`` instead of the default. ``--datasets NAME ...`` profiles some of them
only; ``--full`` takes run.py's full data sets instead of the quick ones.
"""

import argparse
import time
import warnings

import numpy as np
from _common import oracle_fit, run_module
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

import skbilevel.linear_model._hoag_logistic as hoag_module
import skbilevel.search._service as service
from skbilevel import BilevelSearchCV, HOAGLogisticRegression


class _Timers:
    """Time spent in the polish (by phase of the polished point) and the refit."""

    def __init__(self):
        self.seconds = {}
        polish, refit = (
            service.GradientSearch.polish,
            hoag_module.HOAGLogisticRegression._refit,
        )
        timers = self

        def timed_polish(search, index):
            start = time.perf_counter()
            result = polish(search, index)
            timers.add(f"polish {search.history[index]['phase']}", start)
            return result

        def timed_refit(model, *args, **kwargs):
            start = time.perf_counter()
            result = refit(model, *args, **kwargs)
            timers.add("refit", start)
            return result

        service.GradientSearch.polish = timed_polish
        hoag_module.HOAGLogisticRegression._refit = timed_refit

    def add(self, key, start):
        self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - start


def profile(X, y, splits, timers, options):
    """One HOAG fit: total and per-phase seconds, inner cost, chosen C."""
    timers.seconds.clear()
    start = time.perf_counter()
    model = HOAGLogisticRegression(cv=splits, **options).fit(X, y)
    total = time.perf_counter() - start
    history = model.history_
    polish = {k: v for k, v in timers.seconds.items() if k.startswith("polish")}
    # a record's time includes the polish of that record: take it out
    gradient = sum(r["time"] for r in history if r["phase"] == "gradient")
    gradient -= polish.get("polish gradient", 0.0)
    bracket = sum(r["time"] for r in history if r["phase"] != "gradient")
    bracket -= sum(v for k, v in polish.items() if k != "polish gradient")
    refit = timers.seconds.get("refit", 0.0)
    polish_total = sum(polish.values())
    cost = sum(r["n_fun"] + r["n_hvp"] for r in history)
    return {
        "total": total,
        "bracket": bracket,
        "gradient": gradient,
        "polish": polish_total,
        "refit": refit,
        "other": total - bracket - gradient - polish_total - refit,
        "evals": len(history),
        "cost": cost,
        "C": model.C_,
    }


DATASETS = ("breast_cancer", "digits", "sparse", "fashion_binary", "fashion_multiclass")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--inner-solver", choices=("newton-cg", "lbfgs"), default="newton-cg"
    )
    parser.add_argument("--inner-tol", type=float, default=None)
    parser.add_argument(
        "--datasets",
        nargs="+",
        default=list(DATASETS),
        choices=DATASETS,
        help="data sets to profile (default: all)",
    )
    parser.add_argument(
        "--full", action="store_true", help="run.py's full data sets, not --quick's"
    )
    args = parser.parse_args()
    options = {"inner_solver": args.inner_solver}
    if args.inner_tol is not None:
        options["inner_tol"] = args.inner_tol
    warnings.simplefilter("ignore")
    run = run_module()
    timers = _Timers()
    columns = ("total", "bracket", "gradient", "polish", "refit", "other")
    print(
        f"{'data':20s}"
        + "".join(f"{c:>9s}" for c in columns)
        + f"{'Bilevel':>9s}{'oracle':>8s}{'HOAG/or':>8s}{'Bil/or':>7s}"
        + f"{'evals':>6s}{'cost':>7s}"
    )
    with threadpool_limits(1):
        for name in args.datasets:
            try:
                X, y, _, _ = run.DATASETS[name](not args.full)
            except OSError as error:
                print(f"{name}: skipped ({error})")
                continue
            splits = list(StratifiedKFold(5).split(X, y))
            rows, bilevel, oracle = [], [], []
            for _ in range(args.repeat):
                rows.append(profile(X, y, splits, timers, options))
                start = time.perf_counter()
                BilevelSearchCV(
                    LogisticRegression(), {"C": (1e-4, 1e4)}, cv=splits, **options
                ).fit(X, y)
                bilevel.append(time.perf_counter() - start)
                C = rows[-1]["C"]
                start = time.perf_counter()
                oracle_fit(X, y, splits, C)
                oracle.append(time.perf_counter() - start)
            med = {c: float(np.median([r[c] for r in rows])) for c in columns}
            b, o = float(np.median(bilevel)), float(np.median(oracle))
            print(
                f"{name:20s}"
                + "".join(f"{med[c]:9.3f}" for c in columns)
                + f"{b:9.3f}{o:8.3f}{med['total'] / o:8.1f}{b / o:7.1f}"
                + f"{rows[0]['evals']:6d}{rows[0]['cost']:7d}",
                flush=True,
            )


if __name__ == "__main__":
    main()
