"""
skbilevel in one minute: gradient search for C against scikit-learn's grids
===========================================================================

Run it with ``python examples/demo.py``. On the digits data shipped with
scikit-learn (10 classes, multinomial logistic regression in a
``StandardScaler`` pipeline) it searches ``C``, side by side and on the same 5
folds, with:

- ``BilevelSearchCV``, the drop-in replacement for ``GridSearchCV``: same
  pipeline, same scoring, a range ``(1e-4, 1e4)`` instead of a list of values;
  it follows the gradient of the CV log-loss;
- ``GridSearchCV`` over ``np.logspace(-4, 4, 20)``;
- ``LogisticRegressionCV`` with the same 20 values (scikit-learn's warm-started
  path);
- ``HOAGLogisticRegression``, the estimator that tunes its own ``C``.

It prints wall time, the ratio to ``BilevelSearchCV``, chosen ``C``, CV
log-loss and test accuracy of each, and saves ``demo_search_path.png``: the
CV-loss curve of the grid with the path the gradient search took on it.
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
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skbilevel import BilevelSearchCV, HOAGLogisticRegression

CS = np.logspace(-4, 4, 20)


def _timed(fit):
    start = time.perf_counter()
    model = fit()
    return model, time.perf_counter() - start


def main(plot_path="demo_search_path.png"):
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=0
    )
    cv = StratifiedKFold(5)
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    rows = []

    # The one-line change: a range instead of a list of values.
    search, seconds = _timed(
        lambda: BilevelSearchCV(
            pipe, {"logisticregression__C": (1e-4, 1e4)}, cv=cv, scoring="neg_log_loss"
        ).fit(X_train, y_train)
    )
    rows.append(
        ("BilevelSearchCV", seconds, search.best_params_["logisticregression__C"],
         -search.best_score_, accuracy_score(y_test, search.predict(X_test)))
    )  # fmt: skip

    with warnings.catch_warnings():
        # scikit-learn's lbfgs warns at the weakest penalties of the grid, and
        # LogisticRegressionCV about attributes changing in a future release.
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", FutureWarning)
        grid, seconds = _timed(
            lambda: GridSearchCV(
                pipe, {"logisticregression__C": CS}, cv=cv, scoring="neg_log_loss"
            ).fit(X_train, y_train)
        )
        rows.append(
            ("GridSearchCV (20 C)", seconds, grid.best_params_["logisticregression__C"],
             -grid.best_score_, accuracy_score(y_test, grid.predict(X_test)))
        )  # fmt: skip

        lrcv, seconds = _timed(
            lambda: make_pipeline(
                StandardScaler(),
                LogisticRegressionCV(
                    Cs=CS, cv=cv, scoring="neg_log_loss", max_iter=1000
                ),
            ).fit(X_train, y_train)
        )
        scores = lrcv[-1].scores_
        scores = next(iter(scores.values())) if isinstance(scores, dict) else scores
        lrcv_loss = -np.max(np.mean(np.reshape(scores, (len(scores), -1)), axis=0))
        rows.append(
            ("LogisticRegressionCV (20 C)", seconds, float(np.ravel(lrcv[-1].C_)[0]),
             lrcv_loss, accuracy_score(y_test, lrcv.predict(X_test)))
        )  # fmt: skip

    hoag, seconds = _timed(
        lambda: make_pipeline(StandardScaler(), HOAGLogisticRegression(cv=cv)).fit(
            X_train, y_train
        )
    )
    rows.append(
        ("HOAGLogisticRegression", seconds, hoag[-1].C_, hoag[-1].cv_loss_,
         accuracy_score(y_test, hoag.predict(X_test)))
    )  # fmt: skip

    reference = rows[0][1]
    print(
        f"\nDigits ({X_train.shape[0]} train / {X_test.shape[0]} test, 10 classes), "
        "5-fold CV, StandardScaler + multinomial logistic regression\n"
    )
    print(
        f"{'method':28s} {'time (s)':>9s} {'x Bilevel':>9s} {'C':>9s} "
        f"{'CV log-loss':>12s} {'test acc.':>9s}"
    )
    for name, seconds, C, loss, accuracy in rows:
        print(
            f"{name:28s} {seconds:9.2f} {seconds / reference:9.1f} {C:9.4g} "
            f"{loss:12.5f} {accuracy:9.4f}"
        )
    print(
        f"\nBilevelSearchCV evaluated {len(search.history_)} values of C (the grid: "
        f"{CS.size}); its CV log-loss is {_relative(rows[0][3], rows[1][3])} the "
        "grid's best."
    )
    _plot(search, -grid.cv_results_["mean_test_score"], plot_path)


def _relative(ours, theirs):
    change = 100 * (ours - theirs) / theirs
    if abs(change) < 0.005:
        return "equal to"
    return f"{abs(change):.2f}% {'below' if change < 0 else 'above'}"


def _plot(search, grid_losses, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
    except ImportError:
        print("\n(matplotlib is not installed: no plot saved)")
        return
    import matplotlib.pyplot as plt

    from skbilevel.inspection import SearchPathDisplay

    display = SearchPathDisplay.from_estimator(
        search, grid_values=CS, grid_losses=grid_losses
    )
    figure, (full, zoom) = plt.subplots(1, 2, figsize=(11, 4))
    display.plot(ax=full)
    full.set(
        ylim=(0, min(3, max(grid_losses) * 1.05)),
        xlabel="C",
        title="BilevelSearchCV's path on the grid's CV-loss curve",
    )
    # The same path around the minimum, where the grid's spacing shows.
    best = display.values[display.best_index, 0]
    display.plot(ax=zoom)
    near = (display.values[:, 0] > best / 30) & (display.values[:, 0] < best * 30)
    low = min(display.losses[near].min(), grid_losses.min())
    zoom.set(
        xlim=(best / 30, best * 30),
        ylim=(low * 0.98, low * 1.25),
        xlabel="C",
        title="around the minimum",
    )
    zoom.get_legend().remove()
    figure.suptitle("Digits, 5-fold CV log-loss")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    print(f"\nSaved the search path on the CV-loss curve to {path}")


if __name__ == "__main__":
    main(*sys.argv[1:])
