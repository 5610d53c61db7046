"""HOAGLogisticRegression against GridSearchCV and LogisticRegressionCV.

Run ``python benchmarks/hoag_logistic.py`` (``--quick`` for a short run,
``--datasets fashion sparse`` to choose). For each data set, measured side by
side in one run on the same 5 stratified folds:

- ``HOAGLogisticRegression()`` (defaults: SHINE hypergradient, bracket start),
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
import time
import warnings

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.metrics import accuracy_score, log_loss
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split
from sklearn.preprocessing import StandardScaler

from skbilevel import HOAGLogisticRegression
from skbilevel.datasets import load_fashion_mnist, make_sparse_classification

CS = np.logspace(-4, 4, 20)


def load(name, quick):
    """(X_select, y_select, X_test, y_test) for a benchmark data set."""
    if name == "fashion":
        X, y = load_fashion_mnist(subset="train", classes=(0, 6))
        X_test, y_test = load_fashion_mnist(subset="test", classes=(0, 6))
        if quick:
            X, y = X[:3000], y[:3000]
        scaler = StandardScaler().fit(X)
        return scaler.transform(X), y, scaler.transform(X_test), y_test
    if name == "sparse":
        n, p = (10000, 5000) if quick else (50000, 20000)
        X, y = make_sparse_classification(n, p, density=0.002, random_state=0)
        X, X_test, y, y_test = train_test_split(X, y, test_size=0.2, stratify=y,
                                                random_state=0)
        return X, y, X_test, y_test
    X, y = (load_breast_cancer if name == "breast_cancer" else load_digits)(return_X_y=True)
    X, X_test, y, y_test = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)
    scaler = StandardScaler().fit(X)
    return scaler.transform(X), y, scaler.transform(X_test), y_test


def cv_log_loss(C, X, y, cv):
    """Mean validation log-loss of scikit-learn's LogisticRegression at ``C``."""
    losses = []
    for train, test in cv.split(X, y):
        model = LogisticRegression(C=C, tol=1e-6, max_iter=10000).fit(X[train], y[train])
        losses.append(log_loss(y[test], model.predict_proba(X[test]), labels=model.classes_))
    return float(np.mean(losses))


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
        rows.append((method, seconds, seconds / picks["HOAGLogisticRegression"], C, loss,
                     100 * (loss / truth - 1), log_loss(y_test, proba, labels=model.classes_),
                     accuracy_score(y_test, model.classes_[np.argmax(proba, axis=1)])))
    print(f"\n## {name}: {X.shape[0]} x {X.shape[1]}"
          f"{' sparse' if hasattr(X, 'toarray') else ''}, {np.unique(y).size} classes; "
          f"fine-grid best C = {fine_C:.4g}, CV log-loss {truth:.5f} "
          f"(21-point grid, {fine_time:.1f} s)")
    print(f"{'method':30s} {'time (s)':>9s} {'x HOAG':>7s} {'C':>9s} {'CV loss':>9s} "
          f"{'gap %':>7s} {'test loss':>9s} {'test acc':>8s}")
    for method, seconds, ratio, C, loss, gap, test_loss, accuracy in rows:
        print(f"{method:30s} {seconds:9.2f} {ratio:7.1f} {C:9.4g} {loss:9.5f} {gap:7.3f} "
              f"{test_loss:9.5f} {accuracy:8.4f}")
    return rows


def run_per_feature(quick):
    X, y, X_test, y_test = load("fashion", quick)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        scalar, t_scalar = _timed(lambda: HOAGLogisticRegression().fit(X, y))
        per_feature, t_feature = _timed(
            lambda: HOAGLogisticRegression(penalty_groups="features", max_iter=50).fit(X, y)
        )
    print("\n## Fashion-MNIST binary: one C per pixel against the best single C")
    print(f"{'model':28s} {'time (s)':>9s} {'CV loss':>9s} {'test loss':>9s} {'test acc':>8s}")
    for label, model, seconds in [("single C", scalar, t_scalar),
                                  ("one C per pixel (784)", per_feature, t_feature)]:
        proba = model.predict_proba(X_test)
        print(f"{label:28s} {seconds:9.2f} {model.cv_loss_:9.5f} "
              f"{log_loss(y_test, proba):9.5f} {model.score(X_test, y_test):8.4f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small problems, minutes")
    parser.add_argument("--datasets", nargs="+",
                        default=["breast_cancer", "digits", "fashion", "sparse"],
                        choices=["breast_cancer", "digits", "fashion", "sparse"])
    parser.add_argument("--no-per-feature", action="store_true")
    args = parser.parse_args()
    for name in args.datasets:
        run_dataset(name, args.quick)
    if not args.no_per_feature:
        run_per_feature(args.quick)


if __name__ == "__main__":
    main()
