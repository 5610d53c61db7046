"""
skbilevel in one minute: gradient search for C against scikit-learn's grids
===========================================================================

Run it with ``python examples/demo.py``. On the digits data shipped with
scikit-learn (10 classes, multinomial logistic regression) it fits, side by
side and on the same 5 folds:

- ``HOAGLogisticRegression``, which follows the gradient of the CV log-loss,
- ``GridSearchCV(LogisticRegression(), {"C": np.logspace(-4, 4, 20)})``,
- ``LogisticRegressionCV`` with the same 20 values of C,

prints wall time, chosen C, CV log-loss and test accuracy of each, and saves
``demo_search_path.png``: the CV-loss curve on a grid with the path the gradient
search took on it.
"""

import sys
import time
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.metrics import accuracy_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split
from sklearn.preprocessing import StandardScaler

from skbilevel import HOAGLogisticRegression


def main(plot_path="demo_search_path.png"):
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=0
    )
    scaler = StandardScaler().fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    cv = StratifiedKFold(5)
    Cs = np.logspace(-4, 4, 20)

    rows = []

    start = time.perf_counter()
    hoag = HOAGLogisticRegression(cv=cv).fit(X_train, y_train)
    rows.append(("HOAGLogisticRegression", time.perf_counter() - start, hoag.C_,
                 hoag.cv_loss_, hoag.score(X_test, y_test)))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", FutureWarning)  # LogisticRegressionCV attributes
        start = time.perf_counter()
        grid = GridSearchCV(
            LogisticRegression(max_iter=1000), {"C": Cs}, cv=cv, scoring="neg_log_loss"
        ).fit(X_train, y_train)
        rows.append(("GridSearchCV (20 C)", time.perf_counter() - start,
                     grid.best_params_["C"], -grid.best_score_,
                     grid.best_estimator_.score(X_test, y_test)))

        start = time.perf_counter()
        lrcv = LogisticRegressionCV(
            Cs=Cs, cv=cv, scoring="neg_log_loss", max_iter=1000
        ).fit(X_train, y_train)
        scores = lrcv.scores_
        scores = next(iter(scores.values())) if isinstance(scores, dict) else scores
        lrcv_loss = -np.max(np.mean(np.reshape(scores, (len(scores), -1)), axis=0))
        rows.append(("LogisticRegressionCV (20 C)", time.perf_counter() - start,
                     float(np.ravel(lrcv.C_)[0]), lrcv_loss,
                     accuracy_score(y_test, lrcv.predict(X_test))))

    reference = rows[0][1]
    print("\nDigits (1347 train / 450 test, 10 classes), 5-fold CV\n")
    print(f"{'method':30s} {'time (s)':>9s} {'x HOAG':>7s} {'C':>9s} "
          f"{'CV log-loss':>12s} {'test acc.':>9s}")
    for name, seconds, C, loss, accuracy in rows:
        print(f"{name:30s} {seconds:9.2f} {seconds / reference:7.1f} {C:9.4g} "
              f"{loss:12.5f} {accuracy:9.4f}")

    grid_losses = -grid.cv_results_["mean_test_score"]
    _plot(Cs, grid_losses, hoag, plot_path)


def _plot(Cs, grid_losses, hoag, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
    except ImportError:
        print("\n(matplotlib is not installed: no plot saved)")
        return
    from skbilevel.inspection import SearchPathDisplay

    display = SearchPathDisplay.from_estimator(
        hoag, grid_values=Cs, grid_losses=grid_losses
    ).plot()
    display.ax_.set(ylim=(0, min(3, max(grid_losses) * 1.05)),
                    title="Digits: gradient search on the CV-loss curve")
    display.figure_.tight_layout()
    display.figure_.savefig(path, dpi=120)
    print(f"\nSaved the search path on the CV-loss curve to {path}")


if __name__ == "__main__":
    main(*sys.argv[1:])
