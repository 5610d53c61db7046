"""
One penalty per pixel on Fashion-MNIST
======================================

A grid search cannot tune 784 hyperparameters; a gradient can. Here
:class:`~skbilevel.HOAGLogisticRegression` with ``penalty_groups="features"``
learns one ``C`` per pixel on Fashion-MNIST "T-shirt/top" against "Shirt" (the
hardest pair), starting from the best single ``C``. The learned penalty map shows
where the classifier may look: pixels with a large ``C`` (weak penalty) carry
the difference between the two classes (sleeves, collar), those with a small
``C`` are shrunk to zero. The last section compares both models on the test
file: with 784 hyperparameters tuned on 12000 images, a lower CV loss is not a
lower test loss.

The data come from ``/usr/share/datasets/fashion-mnist`` (Debian package
``dataset-fashion-mnist``) or, failing that, from OpenML.
"""

import sys
import time
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import log_loss
from sklearn.preprocessing import StandardScaler

from skbilevel import HOAGLogisticRegression
from skbilevel.datasets import load_fashion_mnist

X, y = load_fashion_mnist(subset="train", classes=(0, 6))
X_test, y_test = load_fashion_mnist(subset="test", classes=(0, 6))
scaler = StandardScaler().fit(X)
X, X_test = scaler.transform(X), scaler.transform(X_test)

results = {}
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    for name, params in [
        ("single C", {}),
        ("one C per pixel", {"penalty_groups": "features", "max_iter": 50}),
    ]:
        if name == "one C per pixel":
            # every pixel starts at the best single C: no bracket needed
            params["C_init"] = results["single C"].C_
        start = time.perf_counter()
        model = HOAGLogisticRegression(**params).fit(X, y)
        seconds = time.perf_counter() - start
        test_loss = log_loss(y_test, model.predict_proba(X_test))
        results[name] = model
        print(
            f"{name:16s} fit {seconds:6.1f} s  CV log-loss {model.cv_loss_:.4f}  "
            f"test log-loss {test_loss:.4f}  test accuracy {model.score(X_test, y_test):.4f}"
        )

# %%
# The learned penalty map
# -----------------------
per_pixel = results["one C per pixel"]
fig, axes = plt.subplots(1, 2, figsize=(8, 3.6))
image = axes[0].imshow(np.log10(per_pixel.C_).reshape(28, 28), cmap="viridis")
axes[0].set_title("log10 C per pixel")
fig.colorbar(image, ax=axes[0], shrink=0.8)
coef = per_pixel.coef_.reshape(28, 28)
limit = np.abs(coef).max()
image = axes[1].imshow(coef, cmap="RdBu_r", vmin=-limit, vmax=limit)
axes[1].set_title("coefficients (Shirt > 0)")
fig.colorbar(image, ax=axes[1], shrink=0.8)
for ax in axes:
    ax.set_xticks([])
    ax.set_yticks([])
fig.tight_layout()
path = sys.argv[1] if len(sys.argv) > 1 else "per_feature_penalty_map.png"
fig.savefig(path, dpi=120)
print(f"saved {path}")

# %%
# Does it generalize?
# -------------------
# Compare the two lines printed at the top. In our runs (12000 training
# images, 5 folds) one ``C`` per pixel lowered the CV log-loss by about 7%
# (0.330 to 0.306) while the test log-loss *rose* by about 4% (0.351 to 0.366):
# 784 hyperparameters chosen on the CV loss of 12000 images fit the validation
# folds themselves. The map above is still a faithful picture of what the CV
# loss rewards, but it is not a better classifier. Coarser groups of pixels
# (``penalty_groups`` as an array of group labels, e.g. 16 blocks of 7 x 7)
# overfit less: in our runs CV 0.3275, test 0.3528, about the single ``C``'s test
# loss. Judge any per-feature search on held-out data.
