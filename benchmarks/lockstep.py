"""Folds solved in lockstep against the same folds solved one after the other.

Run ``python benchmarks/lockstep.py`` from the repository root (``--repeat N``
turns, default 3; about 4 minutes on two cores). On run.py's full data sets
whose folds read their rows in place from one matrix (the sparse 40000 x
20000 CSR problem, Fashion-MNIST 0/6 12000 x 784, and the 10-class
Fashion-MNIST subsample of 5000 x 784, which run.py's default full run
leaves out for its baselines), with the same 5 stratified folds and one BLAS
thread:

- ``HOAGLogisticRegression(cv=folds)``, the default: lockstep solves;
- the same with the folds solved one after the other (the private switch
  ``skbilevel.outer.problem.LOCKSTEP = False``);
- ``HOAGLogisticRegression(cv=folds, n_jobs=2)``: the folds solved separately
  on two threads (two cores);
- the oracle: ``cross_validate(LogisticRegression(C=C_))`` plus one refit.

Each is fitted once per turn, in turns, so that all see the shared machine in
the same states; medians over the turns. The chosen ``C`` is printed for both
sequential variants (they differ by round-off only).
"""

import argparse
import time

import numpy as np
from _common import oracle_fit, run_module
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

import skbilevel.outer.problem as problem_module
from skbilevel import HOAGLogisticRegression

DATA_SETS = ("sparse", "fashion_binary", "fashion_multiclass")


def _hoag(X, y, cv, *, lockstep=True, n_jobs=None):
    def fit():
        problem_module.LOCKSTEP = lockstep
        try:
            start = time.perf_counter()
            model = HOAGLogisticRegression(cv=cv, n_jobs=n_jobs).fit(X, y)
            return time.perf_counter() - start, model.C_
        finally:
            problem_module.LOCKSTEP = True

    return fit


def _oracle(X, y, cv, C):
    def fit():
        start = time.perf_counter()
        oracle_fit(X, y, cv, C)
        return time.perf_counter() - start, C

    return fit


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="turns (median)")
    args = parser.parse_args(argv)
    run = run_module()
    header = (
        f"{'data':28s} {'lockstep s':>10s} {'one by one s':>12s} "
        f"{'n_jobs=2 s':>10s} {'oracle s':>8s} {'x oracle':>8s} "
        f"{'one by one / lockstep':>21s}  C (lockstep, one by one)"
    )
    print(header)
    with threadpool_limits(1):
        for name in DATA_SETS:
            try:
                X, y, _, _ = run.DATASETS[name](False)
            except OSError as error:
                print(f"{name}: skipped ({str(error).splitlines()[0]})")
                continue
            cv = list(StratifiedKFold(run.N_FOLDS).split(X, y))
            methods = {
                "lockstep": _hoag(X, y, cv),
                "one by one": _hoag(X, y, cv, lockstep=False),
                "n_jobs=2": _hoag(X, y, cv, n_jobs=2),
            }
            times = {key: [] for key in [*methods, "oracle"]}
            picks = {}
            for _ in range(args.repeat):
                for key, fit in methods.items():
                    seconds, picks[key] = fit()
                    times[key].append(seconds)
                if "oracle" not in methods:
                    methods["oracle"] = _oracle(X, y, cv, picks["lockstep"])
                    times["oracle"].append(methods["oracle"]()[0])
            median = {key: float(np.median(value)) for key, value in times.items()}
            label = f"{name} {X.shape[0]} x {X.shape[1]}"
            print(
                f"{label:28s} {median['lockstep']:10.2f} {median['one by one']:12.2f} "
                f"{median['n_jobs=2']:10.2f} {median['oracle']:8.2f} "
                f"{median['lockstep'] / median['oracle']:8.2f} "
                f"{median['one by one'] / median['lockstep']:21.2f}  "
                f"{picks['lockstep']:.5g}, {picks['one by one']:.5g}",
                flush=True,
            )


if __name__ == "__main__":
    main()
