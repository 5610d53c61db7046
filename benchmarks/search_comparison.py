"""BilevelSearchCV against scikit-learn's searches for C (and Optuna's, if installed).

Run ``python benchmarks/search_comparison.py`` from the repository root
(``--quick`` for smaller problems: Fashion-MNIST 2000 images pooled to
14 x 14, digits 600 rows, sparse 4000 x 2000; ``--datasets`` to choose).
On each data set, side by side in one run, on the same 5 stratified folds, all
with ``scoring="neg_log_loss"`` and ``LogisticRegression()`` defaults:

- ``BilevelSearchCV(LogisticRegression(), {"C": (1e-4, 1e4)})``;
- ``GridSearchCV`` over ``np.logspace(-4, 4, 20)``;
- ``RandomizedSearchCV`` with 20 draws of ``loguniform(1e-4, 1e4)``;
- ``LogisticRegressionCV`` with the same 20 values of C (warm-started path);
- ``HalvingGridSearchCV`` over the same 20 values;
- ``OptunaSearchCV`` with 20 trials on the same log range, when optuna (and its
  scikit-learn integration) is installed; skipped otherwise.

Each pick is then scored the same way, by scikit-learn: the mean CV log-loss of
``LogisticRegression(C=pick, tol=1e-6)`` on the same folds, and the log-loss on
held-out test data of the model each method refit on all the selection data.
Data: Fashion-MNIST T-shirt/top vs Shirt (train file for selection, test file
for testing, standardized), digits (25% held out, standardized), and the
synthetic sparse problem (50000 x 20000, density 0.002, 20% held out).
"""

import argparse
import os
import sys
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedKFold

# The checkout's package and the benchmarks' helpers, whatever is installed.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(_HERE), _HERE]
from _common import (  # noqa: E402
    cv_log_loss,
    load_fashion_split,
    load_sklearn_split,
    load_sparse_split,
    optuna_search,
    print_table,
    search_methods,
)

DATASETS = ("fashion", "digits", "sparse")


def load(name, quick):
    """``(X_select, y_select, X_test, y_test)`` of a benchmark data set."""
    if name == "fashion":
        if quick:
            # 2000 images pooled to 14 x 14: 784 pixels on 1000 images are
            # separable, and the baselines' fits at large C crawl.
            return load_fashion_split((0, 6), n_samples=2000, pool=True)
        return load_fashion_split((0, 6))
    if name == "sparse":
        return load_sparse_split(*((4000, 2000) if quick else (50000, 20000)))
    return load_sklearn_split("digits", n_samples=600 if quick else None)


def run_dataset(name, quick):
    X, y, X_test, y_test = load(name, quick)
    sparse = " sparse" if hasattr(X, "toarray") else ""
    print(
        f"## {name}: {X.shape[0]} x {X.shape[1]}{sparse}, "
        f"{np.unique(y).size} classes, {X_test.shape[0]} test samples",
        flush=True,
    )
    cv = StratifiedKFold(5)
    rows = []
    for method, (search, pick) in search_methods(cv).items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", FutureWarning)
            # HalvingGridSearchCV's first rounds see too few samples for every
            # class: their log-loss fails (NaN, a warning per fold). Its pick
            # shows the effect.
            warnings.simplefilter("ignore", UserWarning)
            start = time.perf_counter()
            search.fit(X, y)
            seconds = time.perf_counter() - start
        C = pick(search)
        proba = search.predict_proba(X_test)
        rows.append(
            {
                "method": method,
                "time": seconds,
                "C": C,
                "cv_loss": cv_log_loss(C, X, y, cv),
                "test_loss": log_loss(y_test, proba, labels=search.classes_),
            }
        )
        print(f"   {method}: {seconds:.2f} s", flush=True)
    reference = rows[0]
    for row in rows:
        row["ratio"] = row["time"] / reference["time"]
        row["gap"] = 100 * (row["cv_loss"] / reference["cv_loss"] - 1)
    print_table(
        rows,
        [
            ("method", "method", ""),
            ("time", "time (s)", ".2f"),
            ("ratio", "x Bilevel", ".1f"),
            ("C", "C", ".4g"),
            ("cv_loss", "CV log-loss", ".5f"),
            ("gap", "vs Bilevel %", "+.3f"),
            ("test_loss", "test log-loss", ".5f"),
        ],
    )
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="smaller problems (about a minute)"
    )
    parser.add_argument(
        "--datasets", nargs="+", default=list(DATASETS), choices=DATASETS
    )
    args = parser.parse_args()
    if optuna_search(StratifiedKFold(5)) is None:
        print("optuna is not installed: OptunaSearchCV skipped.\n")
    for name in args.datasets:
        run_dataset(name, args.quick)


if __name__ == "__main__":
    main()
