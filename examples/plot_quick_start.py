"""
Quick start: a two-minute tour
==============================

skbilevel chooses the L2 penalty of a linear model by following the gradient of
the cross-validated loss instead of refitting on a grid. This tour, on the
breast cancer data shipped with scikit-learn, shows:

- :class:`~skbilevel.HOAGLogisticRegression` in a ``StandardScaler`` pipeline,
  and what its fitted ``C_``, ``cv_loss_`` and ``history_`` mean;
- the path the search took, drawn on the CV-loss curve of a ``GridSearchCV``
  with :class:`~skbilevel.inspection.SearchPathDisplay`;
- :class:`~skbilevel.BilevelSearchCV`, the drop-in replacement for
  ``GridSearchCV``;
- one ``C`` per feature (``penalty_groups="features"``), which no grid can do.
"""

import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skbilevel import BilevelSearchCV, HOAGLogisticRegression
from skbilevel.inspection import SearchPathDisplay

data = load_breast_cancer()
X_train, X_test, y_train, y_test = train_test_split(
    data.data, data.target, test_size=0.25, stratify=data.target, random_state=0
)
print(
    f"{X_train.shape[0]} training and {X_test.shape[0]} test samples, "
    f"{X_train.shape[1]} features"
)

# %%
# A classifier that tunes its own ``C``
# -------------------------------------
# :class:`~skbilevel.HOAGLogisticRegression` is a logistic regression whose
# ``fit`` first chooses ``C`` by minimizing the mean log-loss over ``cv``
# folds, then refits on all the data it was given. Scale the features first,
# as for any L2 penalty.
start = time.perf_counter()
model = make_pipeline(StandardScaler(), HOAGLogisticRegression(cv=5))
model.fit(X_train, y_train)
hoag_seconds = time.perf_counter() - start
clf = model[-1]
print(
    f"fit in {hoag_seconds:.2f} s: C_ = {clf.C_:.4g}, "
    f"cv_loss_ = {clf.cv_loss_:.4f}, test accuracy {model.score(X_test, y_test):.3f}"
)

# %%
# The fitted attributes:
#
# - ``C_``: the chosen penalty, meaning what ``C`` means in scikit-learn's
#   ``LogisticRegression`` (``coef_`` and ``intercept_`` are those of the refit
#   at ``C_``);
# - ``cv_loss_``: the mean cross-validated log-loss at ``C_``, the quantity the
#   search minimized;
# - ``history_``: one record per evaluation of the CV loss. The search starts
#   with a coarse *bracket* (a few warm-started fits from the strongest penalty
#   down, stopping once past the minimum), then takes *gradient* steps in
#   ``log C``, keeping a step only if it lowers the CV loss. A record holds
#   the penalty (``C``, an array of one value per hyperparameter), the CV loss
#   (``value``), the hypergradient norm, whether the point was kept, the inner
#   iterations and the elapsed time, among others.
print(f"{'eval':>4s} {'phase':>9s} {'C':>10s} {'CV loss':>9s} {'|grad|':>9s}  kept")
for i, record in enumerate(clf.history_):
    print(
        f"{i:4d} {record['phase']:>9s} {record['C'][0]:10.4g} {record['value']:9.5f} "
        f"{record['grad_norm']:9.2e}  {record['accepted']}"
    )

# %%
# The search path on the CV-loss curve
# ------------------------------------
# For reference, ``GridSearchCV`` evaluates the same CV loss on 20 values of
# ``C``, on the same (unshuffled, stratified) folds and the same scaled data.
# :class:`~skbilevel.inspection.SearchPathDisplay` draws the points the
# gradient search evaluated, numbered in order, over that curve.
scaler = StandardScaler().fit(X_train)
Cs = np.logspace(-4, 4, 20)
start = time.perf_counter()
grid = GridSearchCV(
    LogisticRegression(max_iter=1000), {"C": Cs}, cv=5, scoring="neg_log_loss"
).fit(scaler.transform(X_train), y_train)
grid_seconds = time.perf_counter() - start
print(
    f"GridSearchCV: {grid_seconds:.2f} s, C = {grid.best_params_['C']:.4g}, "
    f"CV log-loss {-grid.best_score_:.4f}"
)
print(
    f"HOAG:         {hoag_seconds:.2f} s, C = {clf.C_:.4g}, "
    f"CV log-loss {clf.cv_loss_:.4f}"
)

grid_losses = -grid.cv_results_["mean_test_score"]
display = SearchPathDisplay.from_estimator(
    clf, grid_values=Cs, grid_losses=grid_losses
).plot()
display.ax_.set(ylim=(0, 0.8), title="Breast cancer: gradient search for C")
plt.tight_layout()

# %%
# BilevelSearchCV: the GridSearchCV replacement
# ---------------------------------------------
# To tune scikit-learn's own ``LogisticRegression`` (or ``Ridge``,
# ``RidgeClassifier``, a Pipeline ending in one), keep the ``GridSearchCV``
# code and replace the grid by bounds. The result is the same kind of object:
# ``best_params_``, ``best_score_``, ``cv_results_`` (one row per evaluated
# point) and a ``best_estimator_`` that is your own pipeline, refit.
#
# Unlike ``HOAGLogisticRegression`` placed after a scaler fitted on all the
# training data, the search fits the ``StandardScaler`` inside each training
# fold, as ``GridSearchCV`` on the pipeline would: the two chosen ``C`` differ
# slightly.
pipe = make_pipeline(StandardScaler(), LogisticRegression())
start = time.perf_counter()
search = BilevelSearchCV(
    pipe, {"logisticregression__C": (1e-4, 1e4)}, cv=5, scoring="neg_log_loss"
).fit(X_train, y_train)
print(
    f"BilevelSearchCV: {time.perf_counter() - start:.2f} s, "
    f"{len(search.cv_results_['params'])} points evaluated"
)
print("best_params_:", search.best_params_)
print(f"best_score_: {search.best_score_:.4f} (neg_log_loss)")
print("best_estimator_:", search.best_estimator_)

# %%
# One ``C`` per feature
# ---------------------
# A gradient does not care how many hyperparameters there are. With
# ``penalty_groups="features"`` each of the 30 features gets its own ``C``,
# searched together (``C_`` has shape ``(30,)``). Features with a large ``C``
# are left free, those with a small one are shrunk.
start = time.perf_counter()
per_feature = make_pipeline(
    StandardScaler(), HOAGLogisticRegression(penalty_groups="features", max_iter=100)
).fit(X_train, y_train)
per_feature_seconds = time.perf_counter() - start
C_per_feature = per_feature[-1].C_

for name, fitted, seconds in [
    ("one C", model, hoag_seconds),
    ("one C per feature", per_feature, per_feature_seconds),
]:
    test_loss = log_loss(y_test, fitted.predict_proba(X_test))
    print(
        f"{name:18s} fit {seconds:5.2f} s  CV log-loss {fitted[-1].cv_loss_:.4f}  "
        f"test log-loss {test_loss:.4f}"
    )

order = np.argsort(C_per_feature)
fig, ax = plt.subplots(figsize=(6.5, 6))
ax.barh(np.asarray(data.feature_names)[order], C_per_feature[order], color="C0")
ax.axvline(clf.C_, color="C3", ls="--", label=f"single C = {clf.C_:.3g}")
ax.set(xscale="log", xlabel="C (log scale)", title="One C per feature")
ax.legend()
fig.tight_layout()

# %%
# ``plot(kind="trajectory")`` follows a search with many
# hyperparameters: the geometric mean and the range of the 30 values of ``C``,
# and the CV loss, at each evaluation.
SearchPathDisplay.from_estimator(per_feature[-1]).plot(kind="trajectory")
plt.tight_layout()

# %%
# With 30 hyperparameters the search fits the validation folds more closely
# (a lower CV loss) than a single ``C`` does; on 426 training samples that
# need not generalize better, and here the held-out log-loss says it does not.
# Always compare on held-out data: the Fashion-MNIST example (one ``C`` per
# pixel) shows the same effect at a larger scale.

plt.show()
