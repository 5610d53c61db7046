"""HOAGLogisticRegression against GridSearchCV and LogisticRegressionCV.

Run ``python benchmarks/hoag_logistic.py`` (``--quick`` for a short run,
``--datasets fashion sparse`` to choose). For each data set, measured side by
side in one run on the same 5 stratified folds:

- ``HOAGLogisticRegression()`` (defaults: SHINE-refine hypergradient, bracket start),
- ``GridSearchCV(LogisticRegression(), {"C": np.logspace(-4, 4, 20)}, cv=5,
  scoring="neg_log_loss")``, scikit-learn's defaults otherwise (what users run),
- ``LogisticRegressionCV(Cs=np.logspace(-4, 4, 20), cv=5, scoring="neg_log_loss")``,
- the fine-grid truth: ``LogisticRegressionCV`` with 21 values of C over the decade
  on each side of the best 20-grid value (steps of 10^0.1), tol=1e-6.

Every pick is scored the same way, by scikit-learn: the mean CV log-loss of
``LogisticRegression(C=pick, tol=1e-6)`` on the same folds, and the log-loss and
accuracy on held-out test data of the model refit on all the selection data.
The table gives wall times, their ratio to HOAG, and the gap of each pick's CV
log-loss to the fine-grid best.

The per-feature section compares, on Fashion-MNIST binary, the test log-loss of
``HOAGLogisticRegression(penalty_groups="features")`` with that of the best single C.
"""

import argparse
import os
import sys
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.metrics import accuracy_score, log_loss
from sklearn.model_selection import GridSearchCV, StratifiedKFold

# The checkout's package and the benchmarks' helpers, whatever is installed.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(_HERE), _HERE]
from _common import (  # noqa: E402
    C_GRID,
    cv_log_loss,
    load_fashion_split,
    load_sklearn_split,
    load_sparse_split,
)

from skbilevel import HOAGLogisticRegression  # noqa: E402

CS = C_GRID


def load(name, quick):
    """(X_select, y_select, X_test, y_test) for a benchmark data set."""
    if name == "fashion":
        return load_fashion_split((0, 6), n_samples=3000 if quick else None)
    if name == "sparse":
        return load_sparse_split(*((10000, 5000) if quick else (50000, 20000)))
    return load_sklearn_split(name)


def _timed(fit):
    start = time.perf_counter()
    result = fit()
    return result, time.perf_counter() - start


def _lrcv_best_C(lrcv):
    return float(np.ravel(lrcv.C_)[0])


def run_dataset(name, quick):
    X, y, X_test, y_test = load(name, quick)
    cv = StratifiedKFold(5)
    picks = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", FutureWarning)
        print(f"[{name}] fitting...", flush=True)
        hoag, picks["HOAGLogisticRegression"] = _timed(
            lambda: HOAGLogisticRegression(cv=cv).fit(X, y)
        )
        grid, picks["GridSearchCV (20 C)"] = _timed(
            lambda: GridSearchCV(
                LogisticRegression(), {"C": CS}, cv=cv, scoring="neg_log_loss"
            ).fit(X, y)
        )
        lrcv, picks["LogisticRegressionCV (20 C)"] = _timed(
            lambda: LogisticRegressionCV(Cs=CS, cv=cv, scoring="neg_log_loss").fit(X, y)
        )
        center = np.log10(grid.best_params_["C"])
        fine_Cs = np.logspace(center - 1, center + 1, 21)
        fine, fine_time = _timed(
            lambda: LogisticRegressionCV(
                Cs=fine_Cs, cv=cv, scoring="neg_log_loss", tol=1e-6, max_iter=10000
            ).fit(X, y)
        )
    chosen = {
        "HOAGLogisticRegression": (hoag.C_, hoag),
        "GridSearchCV (20 C)": (grid.best_params_["C"], grid.best_estimator_),
        "LogisticRegressionCV (20 C)": (_lrcv_best_C(lrcv), lrcv),
    }
    fine_C = _lrcv_best_C(fine)
    truth = cv_log_loss(fine_C, X, y, cv)
    rows = []
    for method, seconds in picks.items():
        C, model = chosen[method]
        loss = cv_log_loss(C, X, y, cv)
        proba = model.predict_proba(X_test)
        rows.append(
            (
                method,
                seconds,
                seconds / picks["HOAGLogisticRegression"],
                C,
                loss,
                100 * (loss / truth - 1),
                log_loss(y_test, proba, labels=model.classes_),
                accuracy_score(y_test, model.classes_[np.argmax(proba, axis=1)]),
            )
        )
    print(
        f"\n## {name}: {X.shape[0]} x {X.shape[1]}"
        f"{' sparse' if hasattr(X, 'toarray') else ''}, {np.unique(y).size} classes; "
        f"fine-grid best C = {fine_C:.4g}, CV log-loss {truth:.5f} "
        f"(21-point grid, {fine_time:.1f} s)"
    )
    print(
        f"{'method':30s} {'time (s)':>9s} {'x HOAG':>7s} {'C':>9s} {'CV loss':>9s} "
        f"{'gap %':>7s} {'test loss':>9s} {'test acc':>8s}"
    )
    for method, seconds, ratio, C, loss, gap, test_loss, accuracy in rows:
        print(
            f"{method:30s} {seconds:9.2f} {ratio:7.1f} {C:9.4g} {loss:9.5f} {gap:7.3f} "
            f"{test_loss:9.5f} {accuracy:8.4f}"
        )
    return rows


def run_per_feature(quick):
    X, y, X_test, y_test = load("fashion", quick)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        scalar, t_scalar = _timed(lambda: HOAGLogisticRegression().fit(X, y))
        per_feature, t_feature = _timed(
            lambda: HOAGLogisticRegression(penalty_groups="features", max_iter=50).fit(
                X, y
            )
        )
    print("\n## Fashion-MNIST binary: one C per pixel against the best single C")
    print(
        f"{'model':28s} {'time (s)':>9s} {'CV loss':>9s} {'test loss':>9s} {'test acc':>8s}"
    )
    for label, model, seconds in [
        ("single C", scalar, t_scalar),
        ("one C per pixel (784)", per_feature, t_feature),
    ]:
        proba = model.predict_proba(X_test)
        print(
            f"{label:28s} {seconds:9.2f} {model.cv_loss_:9.5f} "
            f"{log_loss(y_test, proba):9.5f} {model.score(X_test, y_test):8.4f}"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small problems, minutes")
    parser.add_argument(
        "--datasets",
        nargs="+",
        default=["breast_cancer", "digits", "fashion", "sparse"],
        choices=["breast_cancer", "digits", "fashion", "sparse"],
    )
    parser.add_argument("--no-per-feature", action="store_true")
    args = parser.parse_args()
    for name in args.datasets:
        run_dataset(name, args.quick)
    if not args.no_per_feature:
        run_per_feature(args.quick)


if __name__ == "__main__":
    main()
