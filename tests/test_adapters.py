"""The estimator adapters (model_selection/_adapters.py): searches over Ridge,
RidgeClassifier and a registered custom estimator give scikit-learn's own fits,
and estimators or settings an adapter cannot reproduce are refused."""

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.linear_model import LogisticRegression, Ridge, RidgeClassifier
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from sklearn.utils.validation import validate_data

from skbilevel import BilevelSearchCV

from ._references import _grid_cv_loss, _relative

pytestmark = [
    pytest.mark.usefixtures("one_blas_thread"),
    pytest.mark.filterwarnings(
        "ignore:The search for:sklearn.exceptions.ConvergenceWarning",
        "ignore:lbfgs failed to converge:sklearn.exceptions.ConvergenceWarning",
    ),
]


# -- Ridge and RidgeClassifier -------------------------------------------------------
def test_ridge_one_alpha_per_target_reaches_each_targets_grid_optimum():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(150, 20))
    # Same noise, a strong and a weak signal: the second target needs ~100x alpha.
    Y = X @ np.column_stack([rng.normal(size=20), 0.1 * rng.normal(size=20)])
    Y += rng.normal(size=Y.shape)
    splits = list(KFold(4).split(X))
    low, high = np.full(2, 1e-3), np.full(2, 1e4)
    search = BilevelSearchCV(Ridge(), {"alpha": (low, high)}, cv=splits, tol=1e-6)
    alpha = search.fit(X, Y).best_params_["alpha"]
    assert alpha.shape == (2,) and search.best_estimator_.alpha.shape == (2,)
    assert alpha[1] > 10 * alpha[0]
    # The targets decouple: each alpha must be optimal for its own target.
    grid = np.geomspace(1e-3, 1e4, 100)
    for j in range(2):
        grid_loss = _grid_cv_loss(Ridge(), "alpha", grid, X, Y[:, j], splits)
        loss = _grid_cv_loss(Ridge(), "alpha", [alpha[j]], X, Y[:, j], splits)[0]
        assert loss <= grid_loss.min() * (1 + 1e-5)
    expected = Ridge(alpha=alpha).fit(X[splits[0][0]], Y[splits[0][0]])
    assert _relative(search.best_fold_estimators_[0].coef_, expected.coef_) < 1e-6


@pytest.mark.parametrize("n_classes", [2, 3])
def test_ridge_classifier_folds_and_outer_loss_match_sklearn(n_classes):
    X, y = (
        load_iris(return_X_y=True)
        if n_classes == 3
        else load_breast_cancer(return_X_y=True)
    )
    X = StandardScaler().fit_transform(X)
    splits = list(StratifiedKFold(4).split(X, y))
    search = BilevelSearchCV(RidgeClassifier(), {"alpha": (1e-3, 1e3)}, cv=splits)
    search.fit(X, y)
    alpha = search.best_params_["alpha"]
    losses = []
    for (train, test), model in zip(splits, search.best_fold_estimators_):
        expected = RidgeClassifier(alpha=alpha).fit(X[train], y[train])
        assert model.coef_.shape == expected.coef_.shape
        assert np.shape(model.intercept_) == np.shape(expected.intercept_)
        assert _relative(model.coef_, expected.coef_) < 1e-5
        assert_allclose(model.predict(X[test]), expected.predict(X[test]))
        # Outer loss: MSE of the {-1, 1} targets, averaged over their columns.
        targets = expected._label_binarizer.transform(y[test])
        decision = expected.decision_function(X[test]).reshape(targets.shape)
        losses.append(np.mean((decision - targets) ** 2))
    assert search.cv_results_["outer_loss"][search.best_index_] == pytest.approx(
        np.mean(losses), rel=1e-6
    )


# -- adapters ------------------------------------------------------------------------
class InverseRidge(RegressorMixin, BaseEstimator):
    """Ridge regression parametrized by ``shrinkage = 1 / alpha``: a custom
    estimator minimizing ``||y - X coef - b||^2 + ||coef||^2 / shrinkage``."""

    def __init__(self, shrinkage=1.0):
        self.shrinkage = shrinkage

    def fit(self, X, y, sample_weight=None):
        X, y = validate_data(self, X, y)
        X_mean, y_mean = X.mean(axis=0), y.mean()
        Xc = X - X_mean
        gram = Xc.T @ Xc + np.eye(X.shape[1]) / self.shrinkage
        self.coef_ = np.linalg.solve(gram, Xc.T @ (y - y_mean))
        self.intercept_ = y_mean - X_mean @ self.coef_
        return self

    def predict(self, X):
        return validate_data(self, X, reset=False) @ self.coef_ + self.intercept_


def test_register_adapter_for_a_custom_estimator():
    from skbilevel import register_adapter
    from skbilevel.model_selection import RidgeAdapter

    class InverseRidgeAdapter(RidgeAdapter):
        params = ("shrinkage",)
        log_sign = -1  # lambda = log(alpha) = -log(shrinkage)

    X, y = load_diabetes(return_X_y=True)
    space = {"shrinkage": (1e-2, 1e4)}
    with pytest.raises(TypeError, match="does not support InverseRidge"):
        BilevelSearchCV(InverseRidge(), space).fit(X, y)
    register_adapter(InverseRidge, InverseRidgeAdapter())
    search = BilevelSearchCV(InverseRidge(), space, cv=5).fit(X, y)
    ridge = BilevelSearchCV(Ridge(), {"alpha": (1e-4, 1e2)}, cv=5).fit(X, y)
    # Same problem, lambda = -log(shrinkage) = log(alpha): the searches agree up
    # to their tolerance (diabetes' CV loss is flat to 1e-5 around the optimum).
    assert np.log(search.best_params_["shrinkage"]) == pytest.approx(
        -np.log(ridge.best_params_["alpha"]), abs=0.1
    )
    assert search.best_score_ == pytest.approx(ridge.best_score_, rel=1e-5)
    assert type(search.best_estimator_) is InverseRidge
    alpha = 1 / search.best_params_["shrinkage"]
    assert_allclose(search.predict(X), Ridge(alpha=alpha).fit(X, y).predict(X))
    train = next(KFold(5).split(X))[0]
    expected = Ridge(alpha=alpha).fit(X[train], y[train])
    assert _relative(search.best_fold_estimators_[0].coef_, expected.coef_) < 1e-4
    with pytest.raises(TypeError, match="EstimatorAdapter protocol"):
        register_adapter(InverseRidge, object())


@pytest.mark.parametrize(
    "estimator, space, error, match",
    [
        (LinearSVC(), {"C": (1, 2)}, TypeError, "LogisticRegression \\(C\\), Ridge"),
        (LogisticRegression(), {"tol": (1e-3, 1)}, ValueError, "can search 'C'"),
        (LogisticRegression(l1_ratio=1.0), {"C": (1, 2)}, ValueError, "l1_ratio"),
        (
            LogisticRegression(solver="liblinear"),
            {"C": (1, 2)},
            ValueError,
            "liblinear",
        ),
        (Ridge(positive=True), {"alpha": (1, 2)}, ValueError, "positive"),
    ],
)
def test_unsupported_configurations_raise_clear_errors(
    small_classification, estimator, space, error, match
):
    X, y = small_classification
    with pytest.raises(error, match=match):
        BilevelSearchCV(estimator, space, cv=3).fit(X, y)


class _LogisticRegressionWithMultiClass(LogisticRegression):
    """LogisticRegression as scikit-learn < 1.8 has it: a multi_class parameter."""

    def __init__(self, C=1.0, multi_class="auto"):
        super().__init__(C=C)
        self.multi_class = multi_class


@pytest.mark.parametrize("multi_class", ["ovr", "multinomial"])
def test_multi_class_other_than_auto_is_refused(multi_class):
    # one-vs-rest probabilities (or a multinomial loss on two classes) are not
    # the problem the search solves
    from skbilevel.model_selection import LogisticRegressionAdapter

    adapter = LogisticRegressionAdapter()
    adapter.check_estimator(_LogisticRegressionWithMultiClass(), "C")
    with pytest.raises(ValueError, match="multi_class='auto' only"):
        adapter.check_estimator(
            _LogisticRegressionWithMultiClass(multi_class=multi_class), "C"
        )
