"""The folds of one search on threads and on a dask cluster: time and bytes per
evaluation of the CV loss.

Run ``python benchmarks/folds_on_cluster.py`` (``--quick`` for 10000 x 5000). On the
sparse 50000 x 20000 problem of :func:`make_sparse_classification` (selection
part, 5 folds, one C for all features), the same sequence of warm-started
evaluations (a search's: penalties moving in, tolerances tightening) runs

- serially (the per-fold compute time),
- on two threads (``n_jobs=2``, no backend: the default),
- on a ``LocalCluster`` of two worker processes (``parallel_config("dask")``),

and the table gives the wall time per evaluation, the bytes sent per evaluation
(each fold's call -- its warm start, ``lambda``, the settings, the fold's
future -- and its result, cloudpickled, as dask sends them) against the
folds' data, scattered once. The last lines estimate a cluster of one node per
fold from the measured per-fold times and transfer sizes.
"""

import argparse
import os
import sys
import time
import warnings

import numpy as np
from joblib import parallel_config
from sklearn.model_selection import StratifiedKFold

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(_HERE), _HERE]
from _common import load_sparse_split, print_table  # noqa: E402

from skbilevel.hypergrad import get_linear_solver  # noqa: E402
from skbilevel.objectives import (  # noqa: E402
    BinaryLogisticLoss,
    InnerObjective,
    L2Penalty,
    ValidationLoss,
)
from skbilevel.outer import CrossValidatedProblem, Fold  # noqa: E402
from skbilevel.outer._fold_eval import (  # noqa: E402
    FoldSettings,
    evaluate_fold,
    initial_state,
)

N_FOLDS = 5
# A search's evaluations: the bracket's strong penalties, then steps near the
# optimum at tightening tolerances.
LAMBDAS = (4.0, 2.0, 0.0, 0.5, 0.8, 0.9, 0.95)
TOLS = (1e-3, 1e-3, 1e-3, 1e-4, 1e-5, 1e-6, 1e-6)


def _cloudpickle():
    import cloudpickle

    return cloudpickle


def make_folds(X, y):
    loss = BinaryLogisticLoss()
    y = loss.encode(np, y, np.arange(2), np.float64)
    folds = []
    for train, test in StratifiedKFold(N_FOLDS).split(X, y):
        folds.append(
            Fold(
                InnerObjective(X[train], y[train], loss, L2Penalty.scalar(), 1, True),
                ValidationLoss(X[test], y[test], loss, 1, True),
            )
        )
    return folds


def run_serial(folds):
    """Each fold's compute time per evaluation, and the bytes its calls move:
    the call (warm start, lambda, settings) and the result, cloudpickled."""
    cloudpickle = _cloudpickle()
    states = [initial_state(fold) for fold in folds]
    fold_times, sent = [], []
    for lam, tol in zip(LAMBDAS, TOLS):
        settings = FoldSettings(get_linear_solver("shine"), 1000, 10, True, tol, tol,
                                True, False)  # fmt: skip
        lam = np.array([lam])
        results = [
            evaluate_fold(fold, state, lam, settings)
            for fold, state in zip(folds, states)
        ]
        fold_times.append([result.time for result in results])
        sent.append(
            sum(
                len(cloudpickle.dumps((state, lam, settings)))
                + len(cloudpickle.dumps(result))
                for state, result in zip(states, results)
            )
        )
        states = [result.state for result in results]
    return np.array(fold_times), np.array(sent)


def run(folds, n_jobs, backend=None):
    """Wall time of each evaluation."""
    problem = CrossValidatedProblem(folds, get_linear_solver("shine"), n_jobs=n_jobs)
    times = []
    context = parallel_config(backend=backend) if backend else parallel_config()
    with context, problem.parallel():
        for lam, tol in zip(LAMBDAS, TOLS):
            start = time.perf_counter()
            problem.evaluate([lam], inner_tol=tol, linear_tol=tol)
            times.append(time.perf_counter() - start)
    return np.array(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    shape = (10000, 5000) if args.quick else (50000, 20000)
    X, y, _, _ = load_sparse_split(*shape)
    folds = make_folds(X, y)
    cloudpickle = _cloudpickle()
    fold_bytes = [len(cloudpickle.dumps(fold)) for fold in folds]

    fold_times, sent = run_serial(folds)
    threads = run(folds, 2)
    import dask.config
    from dask.distributed import Client, LocalCluster

    # dask starts its workers with MALLOC_TRIM_THRESHOLD_=65536, which also
    # freezes glibc's mmap threshold at 128 KB: every vector of the solves
    # (160-320 KB here) is then mmap-ed and page-faulted afresh, and a fold
    # solve takes 2.5x longer than in the client (measured here).
    environ = dask.config.get("distributed.nanny.pre-spawn-environ")
    environ = {k: v for k, v in environ.items() if k != "MALLOC_TRIM_THRESHOLD_"}
    with (
        dask.config.set({"distributed.nanny.pre-spawn-environ": environ}),
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster),
    ):
        dask = run(folds, 2, backend="dask")

    serial = fold_times.sum(axis=1)
    rows = [
        {
            "eval": i,
            "lam": LAMBDAS[i],
            "tol": TOLS[i],
            "serial": serial[i],
            "fold": fold_times[i].max(),
            "threads": threads[i],
            "dask": dask[i],
            "sent": sent[i] / 1e6,
        }
        for i in range(len(LAMBDAS))
    ]
    print_table(
        rows,
        [
            ("eval", "eval", "d"),
            ("lam", "lambda", ".2f"),
            ("tol", "inner tol", ".0e"),
            ("serial", "serial s", ".3f"),
            ("fold", "slowest fold s", ".3f"),
            ("threads", "2 threads s", ".3f"),
            ("dask", "2 dask procs s", ".3f"),
            ("sent", "sent MB", ".2f"),
        ],
        title=f"{shape[0]} x {shape[1]} sparse, {N_FOLDS} folds (selection part: "
        f"{X.shape[0]} rows, nnz {X.nnz}); dask's first evaluation scatters the "
        "folds",
    )
    data = sum(fold_bytes) / 1e6
    per_eval = sent.mean() / 1e6
    print(
        f"folds' data: {data:.1f} MB ({np.mean(fold_bytes) / 1e6:.1f} MB per fold), "
        f"sent once; per evaluation {per_eval:.2f} MB "
        f"({per_eval / N_FOLDS:.2f} MB per fold, calls and results: "
        f"{100 * per_eval / data:.1f}% of the data)."
    )
    overhead = np.median(dask[1:] - threads[1:])
    print(
        f"dask over threads on the same two cores: {overhead:+.3f}s per evaluation "
        "(median, scatter excluded)."
    )
    # One node per fold: an evaluation takes its slowest fold, plus that fold's
    # call and result over the network, plus the dispatch latency measured here.
    for gbit in (1, 10):
        transfer = sent / N_FOLDS / (gbit * 1.25e8)
        estimate = fold_times.max(axis=1) + transfer + max(overhead, 0.0)
        print(
            f"{N_FOLDS} nodes at {gbit} Gbit/s, one fold each: ~{estimate.sum():.2f}s "
            f"for these {len(LAMBDAS)} evaluations (serial {serial.sum():.2f}s, "
            f"2 threads {threads.sum():.2f}s, 2 dask processes {dask.sum():.2f}s; "
            f"transfers {transfer.sum():.2f}s of it)."
        )


if __name__ == "__main__":
    main()
