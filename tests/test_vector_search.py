"""The vector search: scalar start, held-out stopping and selection, gain."""

import warnings
from functools import partial

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedKFold

from skbilevel import HOAGLogisticRegression
from skbilevel.model_selection._adapters import LogisticRegressionAdapter
from skbilevel.objectives import L2Penalty
from skbilevel.search import (
    GradientSearch,
    HyperSpace,
    SearchOptions,
    engine_folds,
    fold_weights,
    make_search,
    materialize_folds,
)
from skbilevel.search._vector import (
    PATIENCE,
    SIGNIFICANCE,
    VectorSearch,
    split_validation,
)

SPACE = HyperSpace.from_values("C", 1e-4, 1e4, log_sign=-1)


def _few_informative(seed=0, n_train=300):
    """3 informative features out of 40; a large test set."""
    X, y = make_classification(
        3000,
        40,
        n_informative=3,
        n_redundant=0,
        n_clusters_per_class=1,
        flip_y=0.02,
        random_state=seed,
    )
    return X[:n_train], y[:n_train], X[n_train:], y[n_train:]


def _folds(X, y, splits, penalty):
    adapter, clf = LogisticRegressionAdapter(), LogisticRegression()
    encoding = adapter.encode_targets(clf, y)
    folds = materialize_folds(X, y, splits)
    weights = fold_weights(folds, y, None, partial(adapter.training_weights, clf))
    return engine_folds(folds, encoding, weights, penalty=penalty, fit_intercept=True)


@pytest.fixture(scope="module")
def searched():
    X, y, _, _ = _few_informative()
    splits = list(StratifiedKFold(5).split(X, y))
    space = SPACE._replace(structure="features").resize(X.shape[1])
    folds = _folds(X, y, splits, lambda n: L2Penalty.per_feature(n))
    seen = {}  # each record's values as evaluated, before any re-solve

    def record(r):
        seen[r["iteration"]] = (r["value"], r.get("heldout_value"))

    search = make_search(folds, space, SearchOptions(callback=record))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        result = search.run()
    search.seen = seen
    return X, y, splits, search, result


def test_features_structure_takes_the_vector_search(searched):
    assert isinstance(searched[3], VectorSearch)


def test_vector_search_starts_at_the_scalar_optimum(searched):
    X, y, splits, search, _ = searched
    independent = GradientSearch(
        _folds(X, y, splits, lambda n: L2Penalty.scalar()), SPACE, SearchOptions()
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        scalar = independent.run()
    vector = [r for r in search.history if r["stage"] == "vector"]
    assert vector[0]["phase"] == "start"
    assert_allclose(vector[0]["lam"], np.repeat(scalar.lam, X.shape[1]), rtol=1e-10)


def test_selection_and_stopping_use_the_heldout_halves(searched):
    _, _, _, search, result = searched
    vector = [r for r in search.history if r["stage"] == "vector"]
    first = vector[0]["iteration"]
    heldout = [r["heldout_value"] for r in vector]
    # the descent's own criterion, as the search saw it (polish rewrites it)
    descent = [search.seen[r["iteration"]][0] for r in vector]
    best_heldout = int(np.argmin(heldout))
    # on these data the descent criterion keeps decreasing past the held-out
    # optimum: a selection on it would pick a later point
    assert len(descent) >= 2 and min(descent) < descent[best_heldout]
    # stopped PATIENCE evaluations after the held-out optimum, and kept it
    # (significantly better than the start on the held-out halves)
    assert len(vector) - 1 - best_heldout == PATIENCE
    assert search.significance > SIGNIFICANCE
    assert result.best_index == first + best_heldout
    assert result.best_index != first + int(np.argmin(descent))


def test_split_validation_halves_are_stratified_and_disjoint():
    y = np.array([0] * 11 + [1] * 7)
    a, b = split_validation(y)
    assert np.intersect1d(a, b).size == 0 and a.size + b.size == y.size
    assert abs(np.sum(y[a]) - np.sum(y[b])) <= 1


@pytest.fixture(scope="module")
def fitted():
    X, y, X_test, y_test = _few_informative()
    cv = StratifiedKFold(5)
    scalar = HOAGLogisticRegression(cv=cv).fit(X, y)
    vector = HOAGLogisticRegression(cv=cv, penalty_groups="features").fit(X, y)
    return X, y, X_test, y_test, scalar, vector


def test_penalty_gain_matches_an_independent_recomputation(fitted):
    # One C_j per feature is C=1 on the features scaled by sqrt(C_j).
    X, y, _, _, scalar, vector = fitted
    assert vector.penalty_gain_ > 0 and scalar.penalty_gain_ is None
    losses = {"scalar": [], "vector": []}
    for train, test in StratifiedKFold(5).split(X, y):
        _, heldout = split_validation(y[test])
        rows = test[heldout]
        for name, C in (("scalar", scalar.C_), ("vector", vector.C_)):
            scale = np.sqrt(np.broadcast_to(C, X.shape[1]))
            clf = LogisticRegression(C=1.0, tol=1e-10, max_iter=10000)
            clf.fit(X[train] * scale, y[train])
            losses[name].append(log_loss(y[rows], clf.predict_proba(X[rows] * scale)))
    b_scalar, b_vector = np.mean(losses["scalar"]), np.mean(losses["vector"])
    assert_allclose(vector.penalty_gain_, (b_scalar - b_vector) / b_scalar, rtol=1e-4)


def test_per_feature_wins_on_heldout_data_with_few_informative_features(fitted):
    _, _, X_test, y_test, scalar, vector = fitted
    loss_scalar = log_loss(y_test, scalar.predict_proba(X_test))
    loss_vector = log_loss(y_test, vector.predict_proba(X_test))
    # measured 0.157 -> 0.138 (-12%) on this seed; the test set has 2700 rows
    assert loss_vector < 0.95 * loss_scalar
