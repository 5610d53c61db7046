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
import importlib
import importlib.util
import os
import sys
import time
import warnings

import numpy as np
from scipy.stats import loguniform
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.metrics import log_loss
from sklearn.model_selection import (
    GridSearchCV,
    HalvingGridSearchCV,
    RandomizedSearchCV,
    StratifiedKFold,
    train_test_split,
)
from sklearn.preprocessing import StandardScaler

# The checkout's package and the benchmarks' helpers, whatever is installed.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(_HERE), _HERE]
from _common import print_table  # noqa: E402

from skbilevel import BilevelSearchCV  # noqa: E402
from skbilevel.datasets import (  # noqa: E402
    load_fashion_mnist,
    make_sparse_classification,
)

CS = np.logspace(-4, 4, 20)
LOW, HIGH = 1e-4, 1e4
DATASETS = ("fashion", "digits", "sparse")


def load(name, quick):
    """``(X_select, y_select, X_test, y_test)`` of a benchmark data set."""
    if name == "fashion":
        X, y = load_fashion_mnist(subset="train", classes=(0, 6))
        X_test, y_test = load_fashion_mnist(subset="test", classes=(0, 6))
        if quick:
            # 2000 images pooled to 14 x 14: 784 pixels on 1000 images are
            # separable, and the baselines' fits at large C crawl.
            X, y = _pool(X[:2000]), y[:2000]
            X_test = _pool(X_test)
        scaler = StandardScaler().fit(X)
        return scaler.transform(X), y, scaler.transform(X_test), y_test
    if name == "sparse":
        n_samples, n_features = (4000, 2000) if quick else (50000, 20000)
        X, y = make_sparse_classification(
            n_samples, n_features, density=0.002, random_state=0
        )
        X, X_test, y, y_test = train_test_split(
            X, y, test_size=0.2, stratify=y, random_state=0
        )
        return X, y, X_test, y_test
    X, y = load_digits(return_X_y=True)
    X, X_test, y, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=0
    )
    if quick:
        X, y = X[:600], y[:600]
    scaler = StandardScaler().fit(X)
    return scaler.transform(X), y, scaler.transform(X_test), y_test


def _pool(images):
    """Average 2 x 2 blocks of pixels: 28 x 28 -> 14 x 14."""
    blocks = images.reshape(-1, 14, 2, 14, 2)
    return blocks.mean(axis=(2, 4)).reshape(len(images), -1)


def searches(cv):
    """``{name: (unfitted search, pick(fitted) -> C)}``, in table order."""

    def best_C(search):
        return float(search.best_params_["C"])

    common = dict(cv=cv, scoring="neg_log_loss")
    methods = {
        "BilevelSearchCV": (
            BilevelSearchCV(LogisticRegression(), {"C": (LOW, HIGH)}, **common),
            best_C,
        ),
        "GridSearchCV (20)": (
            GridSearchCV(LogisticRegression(), {"C": CS}, **common),
            best_C,
        ),
        "RandomizedSearchCV (20)": (
            RandomizedSearchCV(
                LogisticRegression(),
                {"C": loguniform(LOW, HIGH)},
                n_iter=20,
                random_state=0,
                **common,
            ),
            best_C,
        ),
        "LogisticRegressionCV (20)": (
            LogisticRegressionCV(Cs=CS, **common),
            lambda search: float(np.ravel(search.C_)[0]),
        ),
        "HalvingGridSearchCV (20)": (
            HalvingGridSearchCV(
                LogisticRegression(), {"C": CS}, random_state=0, **common
            ),
            best_C,
        ),
    }
    optuna_search = _optuna_search(cv)
    if optuna_search is not None:
        methods["OptunaSearchCV (20)"] = (optuna_search, best_C)
    return methods


def _optuna_search(cv):
    """OptunaSearchCV with 20 trials, or None when optuna is not installed."""
    for module in ("optuna_integration", "optuna.integration"):
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if found:
            integration = importlib.import_module(module)
            import optuna

            distribution = optuna.distributions.FloatDistribution(LOW, HIGH, log=True)
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            return integration.OptunaSearchCV(
                LogisticRegression(),
                {"C": distribution},
                cv=cv,
                scoring="neg_log_loss",
                n_trials=20,
                random_state=0,
            )
    return None


def cv_log_loss(C, X, y, cv):
    """Mean validation log-loss of ``LogisticRegression(C, tol=1e-6)``."""
    losses = []
    for train, test in cv.split(X, y):
        model = LogisticRegression(C=C, tol=1e-6, max_iter=10000)
        model.fit(X[train], y[train])
        proba = model.predict_proba(X[test])
        losses.append(log_loss(y[test], proba, labels=model.classes_))
    return float(np.mean(losses))


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
    for method, (search, pick) in searches(cv).items():
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
    if _optuna_search(StratifiedKFold(5)) is None:
        print("optuna is not installed: OptunaSearchCV skipped.\n")
    for name in args.datasets:
        run_dataset(name, args.quick)


if __name__ == "__main__":
    main()
