import warnings

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import scale

from skbilevel import HOAGLogisticRegression
from skbilevel.inspection import SearchPathDisplay

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")


@pytest.fixture(scope="module")
def fitted():
    X, y = load_breast_cancer(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return HOAGLogisticRegression(max_iter=4).fit(scale(X), y)


def test_path_display_draws_every_evaluation(fitted):
    grid = np.logspace(-4, 4, 5)
    display = SearchPathDisplay.from_estimator(
        fitted, grid_values=grid, grid_losses=np.linspace(0.1, 0.5, 5)
    ).plot()
    n = len(fitted.history_)
    offsets = sum(len(c.get_offsets()) for c in display.ax_.collections)
    assert offsets == n + 1  # every evaluation, plus the best-point star
    star = display.ax_.collections[-1].get_offsets()[0]
    assert np.isclose(star[0], fitted.C_) and np.isclose(star[1], fitted.cv_loss_)
    assert display.ax_.get_xscale() == "log"
    assert len(display.ax_.texts) == n


def test_trajectory_display_for_per_feature_search():
    X, y = load_breast_cancer(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = HOAGLogisticRegression(penalty_groups="features", max_iter=2).fit(
            scale(X), y
        )
    display = SearchPathDisplay.from_estimator(model).plot(kind="trajectory")
    assert display.ax_.shape == (2,)
    line = display.ax_[1].get_lines()[0]
    np.testing.assert_allclose(line.get_ydata(), [r["value"] for r in model.history_])
    with pytest.raises(ValueError, match="one hyperparameter"):
        display.plot(kind="path")


def test_unfitted_estimator_is_a_clear_error():
    with pytest.raises(ValueError, match="fit it first"):
        SearchPathDisplay.from_estimator(HOAGLogisticRegression())


@pytest.mark.parametrize("kind", ["pipeline-classifier", "ridge"])
def test_display_of_a_bilevel_search(kind):
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from skbilevel import BilevelSearchCV

    if kind == "ridge":
        X, y = load_diabetes(return_X_y=True)
        search = BilevelSearchCV(Ridge(), {"alpha": (1e-4, 1e4)}, cv=3).fit(X, y)
        name = "alpha"
    else:
        X, y = load_breast_cancer(return_X_y=True)
        name = "logisticregression__C"
        pipe = make_pipeline(StandardScaler(), LogisticRegression())
        # a refit rule that picks another point than the lowest log-loss:
        # the display marks the search's choice, not the loss's minimum
        search = BilevelSearchCV(
            pipe, {name: (1e-4, 1e4)}, cv=5, refit=lambda results: 1
        ).fit(X, y)
        assert search.best_index_ == 1
        assert search.best_index_ != np.argmin(search.cv_results_["outer_loss"])
    display = SearchPathDisplay.from_estimator(search).plot()
    results = search.cv_results_
    assert display.param_name == name
    assert display.best_index == search.best_index_
    values = results[f"param_{name}"].astype(float)
    np.testing.assert_allclose(display.values[:, 0], values)
    np.testing.assert_allclose(display.losses, results["outer_loss"])
    star = display.ax_.collections[-1].get_offsets()[0]
    assert np.isclose(star[0], search.best_params_[name])
    assert display.ax_.get_xlabel() == name
