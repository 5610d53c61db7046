"""What a GridSearchCV / LogisticRegressionCV user expects, checked as they would.

Each test ports a behaviour of scikit-learn's own searches to ours: the same
input is accepted (and gives the same result as its plain equivalent), the same
mistake raises the same exception type.
"""

import warnings

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose
from sklearn.datasets import load_breast_cancer, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.preprocessing import scale

from skbilevel import BilevelSearchCV, HOAGLogisticRegression


@pytest.fixture(scope="module")
def classification():
    X, y = load_breast_cancer(return_X_y=True)
    return scale(X[:200]), y[:200]


@pytest.fixture(scope="module")
def regression():
    return make_regression(80, 5, n_targets=4, noise=10.0, random_state=0)


def _masks(splits, n_samples):
    masks = []
    for train, test in splits:
        train_mask, test_mask = np.zeros(n_samples, bool), np.zeros(n_samples, bool)
        train_mask[train], test_mask[test] = True, True
        masks.append((train_mask, test_mask))
    return masks


@pytest.mark.parametrize("kind", ["logistic", "ridge"])
def test_boolean_masks_as_cv_give_the_same_search_as_indices(
    kind, classification, regression
):
    X, y = classification if kind == "logistic" else regression
    estimator, space = (
        (LogisticRegression(), {"C": (1e-3, 1e3)})
        if kind == "logistic"
        else (Ridge(), {"alpha": (1e-3, 1e3)})
    )
    splits = list(KFold(4, shuffle=True, random_state=0).split(X))
    by_index = BilevelSearchCV(estimator, space, cv=splits).fit(X, y)
    by_mask = BilevelSearchCV(estimator, space, cv=_masks(splits, len(y))).fit(X, y)
    assert by_mask.n_splits_ == 4
    assert_allclose(
        by_mask.cv_results_["outer_loss"], by_index.cv_results_["outer_loss"]
    )
    assert by_mask.best_params_ == by_index.best_params_


def test_hoag_accepts_boolean_masks(classification):
    X, y = classification
    splits = list(KFold(3, shuffle=True, random_state=0).split(X))
    by_index = HOAGLogisticRegression(cv=splits).fit(X, y)
    by_mask = HOAGLogisticRegression(cv=_masks(splits, len(y))).fit(X, y)
    assert by_mask.C_ == by_index.C_


class _LyingSplitter(KFold):
    """Says 5 splits, yields 3 (as scikit-learn's own test splitter does)."""

    def get_n_splits(self, X=None, y=None, groups=None):
        return 5

    def split(self, X, y=None, groups=None):
        yield from list(KFold(3).split(X))


@pytest.mark.parametrize("which", ["bilevel", "hoag", "grid"])
def test_splitter_with_inconsistent_get_n_splits_raises(classification, which):
    X, y = classification
    model = {
        "bilevel": BilevelSearchCV(
            LogisticRegression(), {"C": (1e-2, 1e2)}, cv=_LyingSplitter()
        ),
        "hoag": HOAGLogisticRegression(cv=_LyingSplitter()),
        "grid": GridSearchCV(LogisticRegression(), {"C": [1.0]}, cv=_LyingSplitter()),
    }[which]
    with pytest.raises(ValueError, match="inconsistent results"):
        model.fit(X, y)


@pytest.mark.parametrize(
    "param_space, error",
    [
        ({"C": 1}, TypeError),
        ({"C": 0}, TypeError),
        ({"C": "1,2"}, TypeError),
        ({"C": (1, "10")}, TypeError),
        ({"C": (1, None)}, TypeError),
        ({"C": (True, 10)}, TypeError),
        ("1,2,3", TypeError),
        ({"C": (10, 1)}, ValueError),
        ({"C": (0, 1)}, ValueError),
        ({"C": (1, np.inf)}, ValueError),
        ({"C": (1, 2, 3, 4)}, ValueError),
        ({"C": ([1, 2], [3, 4, 5])}, ValueError),
    ],
)
def test_param_space_errors_have_gridsearch_types(classification, param_space, error):
    X, y = classification
    with pytest.raises(error):
        BilevelSearchCV(LogisticRegression(), param_space).fit(X, y)


@pytest.mark.parametrize(
    "bounds", [np.array([1e-2, 1e2]), [1e-2, 1e2], (np.float32(1e-2), 100)]
)
def test_any_array_like_pair_of_bounds_is_accepted(classification, bounds):
    X, y = classification
    reference = BilevelSearchCV(LogisticRegression(), {"C": (1e-2, 1e2)}).fit(X, y)
    search = BilevelSearchCV(LogisticRegression(), {"C": bounds}).fit(X, y)
    assert search.best_params_["C"] == pytest.approx(
        reference.best_params_["C"], rel=1e-6
    )


def test_non_finite_scores_warn_once(classification):
    X, y = classification

    def sometimes_nan(estimator, X, y):
        # best at the smallest C (not the point of lowest log-loss, which the
        # search re-solves first): the best point is re-solved and rescored
        return np.nan if estimator.C > 0.3 else -estimator.C

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        BilevelSearchCV(
            LogisticRegression(), {"C": (1e-2, 1e2)}, scoring=sometimes_nan
        ).fit(X, y)
    messages = [str(w.message) for w in caught if "non-finite" in str(w.message)]
    assert len(messages) == 1


def test_dataframe_feature_names(classification):
    X, y = classification
    columns = [f"f{j}" for j in range(X.shape[1])]
    frame = pd.DataFrame(X, columns=columns)
    model = HOAGLogisticRegression(max_iter=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(frame, y)
    assert list(model.feature_names_in_) == columns
    # as LogisticRegression: other names are an error, no names a warning
    reference = LogisticRegression().fit(frame, y)
    renamed = frame.rename(columns={"f0": "other"})
    for fitted in (reference, model):
        with pytest.raises(ValueError, match="feature names should match"):
            fitted.predict(renamed)
        with pytest.warns(UserWarning, match="does not have valid feature names"):
            fitted.predict(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        proba = model.predict_proba(frame)
    assert_allclose(proba, model.predict_proba(X.copy()))


def test_warm_start_across_penalty_structures(classification):
    X, y = classification
    model = HOAGLogisticRegression(
        penalty_groups="features", warm_start=True, max_iter=3
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
        per_feature = model.C_.copy()
        model.set_params(penalty_groups=None).fit(X, y)
    assert isinstance(model.C_, float)
    # a previous per-feature C cannot start a scalar search: it starts afresh
    assert model.history_[0]["phase"] == "bracket"
    single = model.C_
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.set_params(penalty_groups="features").fit(X, y)
    # a single C starts every per-feature C
    assert_allclose(model.history_[0]["C"], np.full(X.shape[1], single))
    assert per_feature.shape == model.C_.shape
