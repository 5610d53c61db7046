"""Both estimators run one search: same folds, same points, same C, same losses.

``HOAGLogisticRegression`` and ``BilevelSearchCV(LogisticRegression())`` share
the search service, so on the same splits they must evaluate the same points
with the same fold losses and pick the same ``C`` (to round-off: the two build
their folds through the same code).
"""

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler

from skbilevel import BilevelSearchCV, HOAGLogisticRegression


def _binary():
    X, y = load_breast_cancer(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def _multinomial():
    X, y = load_digits(return_X_y=True)
    X, y = X[:300], y[:300]
    return StandardScaler().fit_transform(X), y


def _imbalanced():
    X, y = _binary()
    keep = np.flatnonzero(y == 1)[:250].tolist() + np.flatnonzero(y == 0)[:60].tolist()
    return X[keep], y[keep]


CASES = {
    "binary": (_binary, {}, {}),
    "multinomial": (_multinomial, {}, {}),
    "class_weight": (_imbalanced, {"class_weight": "balanced"}, {}),
    "sample_weight": (_binary, {}, {"sample_weight": True}),
    "sparse": (_binary, {}, {"sparse": True}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_both_estimators_run_the_same_search(case):
    make, params, options = CASES[case]
    X, y = make()
    if options.get("sparse"):
        X = sp.csr_matrix(np.where(np.abs(X) < 0.5, 0.0, X))
    fit_params = {}
    if options.get("sample_weight"):
        fit_params["sample_weight"] = np.random.default_rng(0).uniform(0.2, 3, y.size)
    splits = list(StratifiedKFold(4, shuffle=True, random_state=1).split(X, y))

    seen = {"hoag": [], "bilevel": []}

    def recorder(name):
        # each record as the search evaluated it, before any re-solve
        return lambda record: seen[name].append(
            (record["phase"], record["lam"].copy(), record["fold_values"].copy())
        )

    hoag = HOAGLogisticRegression(cv=splits, callback=recorder("hoag"), **params)
    hoag.fit(X, y, **fit_params)
    search = BilevelSearchCV(
        LogisticRegression(**params),
        {"C": (1e-4, 1e4)},
        cv=splits,
        scoring="neg_log_loss",
        callback=recorder("bilevel"),
    ).fit(X, y, **fit_params)

    ours, theirs = seen["hoag"], seen["bilevel"]
    assert len(ours) == len(theirs) == hoag.n_iter_ == search.n_iter_ >= 3
    assert [r[0] for r in ours] == [r[0] for r in theirs]
    assert_allclose([r[1] for r in ours], [r[1] for r in theirs], rtol=1e-10)
    assert_allclose([r[2] for r in ours], [r[2] for r in theirs], rtol=1e-9)
    # the same best point, re-solved the same way by both
    best = int(np.argmin([r["value"] for r in hoag.history_]))
    assert hoag.C_ == pytest.approx(search.cv_results_["param_C"][best], rel=1e-10)
    assert hoag.cv_loss_ == pytest.approx(
        search.cv_results_["outer_loss"][best], rel=1e-12
    )
    assert hoag.converged_ == search.converged_
    # scored by the log-loss, the search declares the same C best; with
    # sample weights the scorer's weighted log-loss per fold and the search's
    # weighted loss are other criteria: it may prefer a neighbouring point
    if options.get("sample_weight"):
        scores = search.cv_results_["mean_test_score"]
        assert search.best_index_ == int(np.argmax(scores))
        assert search.best_params_["C"] == pytest.approx(hoag.C_, rel=0.1)
        # that row's score is scikit-learn's: weighted fits, the folds'
        # weighted log-loss (the fold models solved to the estimator's tol)
        C, weight = search.best_params_["C"], fit_params["sample_weight"]
        exact = [
            -log_loss(
                y[test],
                LogisticRegression(C=C, tol=1e-10, max_iter=10_000)
                .fit(X[train], y[train], sample_weight=weight[train])
                .predict_proba(X[test]),
                sample_weight=weight[test],
            )
            for train, test in splits
        ]
        assert scores[search.best_index_] == pytest.approx(np.mean(exact), rel=1e-3)
    else:
        assert search.best_params_["C"] == pytest.approx(hoag.C_, rel=1e-10)
