"""
Replacing GridSearchCV in a Pipeline
====================================

A typical regularized model is a Pipeline: preprocessing steps fitted on the
training data, then a linear model whose penalty is tuned by
``GridSearchCV``. :class:`~skbilevel.BilevelSearchCV` takes the same Pipeline,
the same ``step__param`` name, the same ``cv`` and ``scoring``, and replaces
the grid by bounds. This example, on the diabetes data shipped with
scikit-learn, puts the two side by side and then shows what a grid cannot do
cheaply:

- the same ``cv_results_`` (it loads into a pandas DataFrame), with one row per
  point the gradient search evaluated;
- several metrics with ``refit`` naming the one that picks the best point;
- one ``alpha`` per target for ``Ridge`` with a 2-d ``y``.
"""

import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_diabetes, make_regression
from sklearn.linear_model import Ridge
from sklearn.metrics import mean_squared_error
from sklearn.model_selection import GridSearchCV, KFold, cross_val_predict
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, PolynomialFeatures, StandardScaler

from skbilevel import BilevelSearchCV

try:
    import pandas as pd
except ImportError:  # pandas is optional: the tables are then printed by hand
    pd = None

# %%
# The data and the pipeline
# -------------------------
# The raw diabetes measurements (not the pre-scaled version): age, sex (coded
# 1 or 2), body mass index, blood pressure and six blood serum measurements,
# to predict disease progression one year later. The pipeline one-hot encodes
# ``sex``, standardizes the nine numeric columns and adds their squares and
# pairwise products (55 features in all), then fits a ``Ridge``: with that
# many correlated features, ``alpha`` matters.
data = load_diabetes(scaled=False)
X, y = data.data, data.target
sex = [list(data.feature_names).index("sex")]
numeric = [i for i in range(X.shape[1]) if i not in sex]

preprocess = ColumnTransformer(
    [
        ("sex", OneHotEncoder(drop="if_binary"), sex),
        (
            "numeric",
            make_pipeline(
                StandardScaler(), PolynomialFeatures(degree=2, include_bias=False)
            ),
            numeric,
        ),
    ]
)
pipe = Pipeline([("preprocess", preprocess), ("ridge", Ridge())])
cv = KFold(n_splits=5, shuffle=True, random_state=0)

# %%
# Before: GridSearchCV
# --------------------
# 25 values of ``alpha`` over six decades, each fitted on 5 folds: 125 fits of
# the whole pipeline.
alphas = np.logspace(-2, 4, 25)
start = time.perf_counter()
grid = GridSearchCV(
    pipe, {"ridge__alpha": alphas}, cv=cv, scoring="neg_mean_squared_error"
).fit(X, y)
grid_seconds = time.perf_counter() - start

# %%
# After: BilevelSearchCV
# ----------------------
# The same estimator, parameter name, folds and scoring; the grid becomes the
# bounds ``(low, high)`` of a search in ``log alpha``. The preprocessing is
# fitted once per fold for the whole search; then each evaluated ``alpha``
# refits the ridge of every fold warm-started from the previous point, and
# the next point follows the gradient of the mean validation error.
start = time.perf_counter()
search = BilevelSearchCV(
    pipe, {"ridge__alpha": (1e-2, 1e4)}, cv=cv, scoring="neg_mean_squared_error"
).fit(X, y)
search_seconds = time.perf_counter() - start

print(f"{'':16s} {'time (s)':>9s} {'points':>7s} {'alpha':>9s} {'CV MSE':>9s}")
for name, fitted, seconds in [
    ("GridSearchCV", grid, grid_seconds),
    ("BilevelSearchCV", search, search_seconds),
]:
    print(
        f"{name:16s} {seconds:9.2f} {len(fitted.cv_results_['params']):7d} "
        f"{fitted.best_params_['ridge__alpha']:9.4g} {-fitted.best_score_:9.2f}"
    )

# %%
# Both objects are used the same way afterwards: ``best_estimator_`` is the
# Pipeline refit on all the data with ``best_params_`` (a plain scikit-learn
# Pipeline ending in a ``Ridge``), and ``predict`` delegates to it.
print(search.best_estimator_)
print(
    "predictions for the first three patients:",
    np.round(search.predict(X[:3]), 1),
    "true:",
    y[:3],
)

# %%
# ``cv_results_``
# ---------------
# ``cv_results_`` has exactly ``GridSearchCV``'s keys for the same ``scoring``,
# one row per evaluated point, plus five columns about the search itself.
extra = sorted(set(search.cv_results_) - set(grid.cv_results_))
print("keys only in BilevelSearchCV:", extra)
print(
    "keys only in GridSearchCV:",
    sorted(set(grid.cv_results_) - set(search.cv_results_)),
)

columns = [
    "outer_iteration",
    "outer_phase",
    "param_ridge__alpha",
    "mean_test_score",
    "std_test_score",
    "rank_test_score",
    "step_accepted",
]
if pd is not None:
    table = pd.DataFrame(search.cv_results_)[columns]
    print(table.to_string(index=False))
else:
    print("  ".join(columns))
    for row in zip(*(search.cv_results_[column] for column in columns)):
        print("  ".join(str(value) for value in row))

# %%
# The same plotting code serves both searches: the grid's curve of the mean
# CV error, and the points the gradient search evaluated on it, in order. The
# search starts with a coarse bracket from the strongest penalty down and
# stops once the gradient and the local curvature say the minimum is reached.
fig, ax = plt.subplots(figsize=(6.5, 4))
for name, fitted, style in [
    ("GridSearchCV", grid, "-"),
    ("BilevelSearchCV", search, "o:"),
]:
    results = fitted.cv_results_
    ax.plot(
        np.asarray(results["param_ridge__alpha"], dtype=float),
        -results["mean_test_score"],
        style,
        label=name,
    )
for i, (alpha, score) in enumerate(
    zip(search.cv_results_["param_ridge__alpha"], search.cv_results_["mean_test_score"])
):
    ax.annotate(str(i), (alpha, -score), textcoords="offset points", xytext=(4, 4))
ax.set(
    xscale="log",
    xlabel="alpha",
    ylabel="mean CV MSE",
    title="Diabetes: ridge penalty of a pipeline",
)
ax.legend()
fig.tight_layout()

# %%
# Several metrics, and ``refit``
# ------------------------------
# As in ``GridSearchCV``, ``scoring`` may be a dict of metrics and ``refit``
# names the one that picks ``best_index_``, ``best_params_`` and
# ``best_score_``. The metrics are *reported* for every evaluated point; the
# gradient always descends the estimator's own validation loss (the mean
# squared error for ``Ridge``), so the points evaluated are the same whatever
# the metrics.
scoring = {
    "mse": "neg_mean_squared_error",
    "mae": "neg_mean_absolute_error",
    "r2": "r2",
}
multi = BilevelSearchCV(
    pipe, {"ridge__alpha": (1e-2, 1e4)}, cv=cv, scoring=scoring, refit="r2"
).fit(X, y)
best = multi.best_index_
print(
    f"refit='r2': alpha = {multi.best_params_['ridge__alpha']:.4g}, "
    f"best_score_ = {multi.best_score_:.4f} (mean R^2)"
)
for metric in scoring:
    print(
        f"  mean_test_{metric} at the best point: "
        f"{multi.cv_results_[f'mean_test_{metric}'][best]:.4f}"
    )

# %%
# One ``alpha`` per target
# ------------------------
# ``Ridge`` accepts one ``alpha`` per column of a 2-d ``y``. To search them
# all at once, give the bounds as arrays of shape ``(n_targets,)``; the
# gradient search treats them as one hyperparameter per target (a grid would
# need ``25 ** 3 = 15625`` points for three targets). Here three targets share
# the same 50 features but carry increasing noise: the noisier a target, the
# stronger the penalty it needs.
rng = np.random.default_rng(0)
X_multi, Y_multi = make_regression(
    n_samples=200, n_features=50, n_informative=50, n_targets=3, random_state=0
)
noise = np.array([0.5, 1.5, 4.0])
Y_multi = Y_multi / Y_multi.std(axis=0) + noise * rng.standard_normal(Y_multi.shape)

ridge_pipe = make_pipeline(StandardScaler(), Ridge())
searches = {
    "one alpha": BilevelSearchCV(
        ridge_pipe,
        {"ridge__alpha": (1e-3, 1e4)},
        cv=cv,
        scoring="neg_mean_squared_error",
    ),
    "one alpha per target": BilevelSearchCV(
        ridge_pipe,
        {"ridge__alpha": (np.full(3, 1e-3), np.full(3, 1e4))},
        cv=cv,
        scoring="neg_mean_squared_error",
    ),
}
for name, per_target_search in searches.items():
    per_target_search.fit(X_multi, Y_multi)
    alpha = np.atleast_1d(per_target_search.best_params_["ridge__alpha"])
    # CV error of each target at the chosen alpha(s), on the same folds.
    prediction = cross_val_predict(
        per_target_search.best_estimator_, X_multi, Y_multi, cv=cv
    )
    mse = mean_squared_error(Y_multi, prediction, multioutput="raw_values")
    print(
        f"{name:21s} alpha = {np.array2string(alpha, precision=3)}  "
        f"CV MSE per target = {np.array2string(mse, precision=3)}"
    )

# %%
# The search minimizes the MSE *averaged over the targets*. A target that is
# already predicted well contributes little to it, so its ``alpha`` is found
# less precisely than the others; lower ``tol`` when that matters. For a bare
# ``Ridge`` (no Pipeline), scikit-learn's ``RidgeCV(alpha_per_target=True)``
# chooses per-target penalties from a grid by efficient leave-one-out
# cross-validation; the search here works with any ``cv`` and inside any
# Pipeline.

plt.show()
