"""GridSearchCV's contract, checked on BilevelSearchCV.

Our versions of the tests of scikit-learn's
``sklearn/model_selection/tests/test_search.py`` that apply to a continuous
search: the layout of ``cv_results_``, ``refit`` (False, a metric name, a
callable), multi-metric scoring, ``error_score``, routing of ``groups`` and
``sample_weight``, pickling and cloning, the fitted attributes and the methods
delegated to ``best_estimator_``. Where a number can be compared, it is
compared with ``GridSearchCV`` run on the same folds at the point the search
chose: a grid of one value is the search's own fold fits done by
scikit-learn. The documented differences (doc/supported_estimators.rst) are
checked as such.
"""

import pickle
import re
import warnings

import numpy as np
import pandas as pd
import pytest
import sklearn
from numpy.testing import assert_allclose, assert_array_equal
from scipy.stats import rankdata
from sklearn.base import clone
from sklearn.datasets import make_classification, make_regression
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import accuracy_score, get_scorer, log_loss, make_scorer
from sklearn.model_selection import (
    GridSearchCV,
    GroupKFold,
    KFold,
    LeaveOneGroupOut,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skbilevel import BilevelSearchCV
from skbilevel.model_selection._search import MORE_RESULTS

pytestmark = [
    pytest.mark.usefixtures("one_blas_thread"),
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
]

# A start value: the search evaluates a "start" point then gradient steps.
SPACE = {"C": (1e-3, 1e3, 1e-2)}
# Tight enough that a score at the chosen point matches scikit-learn's fit.
SCORE_TOL = 1e-4


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(
        n_samples=90,
        n_features=4,
        n_informative=3,
        n_redundant=0,
        flip_y=0.1,
        random_state=0,
    )
    return X, y


def _search(**params):
    params = {"cv": 3, "max_iter": 6, **params}
    return BilevelSearchCV(LogisticRegression(), SPACE, **params)


def _grid_at(search, estimator=None, **params):
    """GridSearchCV on the same folds, over the point the search chose."""
    (name,) = search.best_params_
    return GridSearchCV(
        estimator if estimator is not None else LogisticRegression(),
        {name: [search.best_params_[name]]},
        cv=search.cv,
        **params,
    )


def _flat(model):
    final = model[-1] if hasattr(model, "steps") else model
    return np.concatenate([final.coef_.ravel(), final.intercept_])


def _assert_refit_nearer_the_solution(search, grid, X, y, **fit_params):
    """The warm-started refit (the default) against GridSearchCV's refit from
    scratch at the same point: the warm one is nearer the exact solution
    (within 0.1%: 1e-4 and 5e-6 on the weighted cases here)."""
    exact = clone(grid.best_estimator_)
    prefix = "" if not hasattr(exact, "steps") else f"{exact.steps[-1][0]}__"
    exact.set_params(**{f"{prefix}tol": 1e-12, f"{prefix}max_iter": 10_000})
    exact = _flat(exact.fit(X, y, **fit_params))
    ours = np.linalg.norm(_flat(search.best_estimator_) - exact)
    theirs = np.linalg.norm(_flat(grid.best_estimator_) - exact)
    assert ours <= theirs + 1e-12 * np.linalg.norm(exact)
    assert ours <= 1e-3 * np.linalg.norm(exact)


@pytest.fixture(scope="module")
def searched(data):
    X, y = data
    return _search(scoring="neg_log_loss", return_train_score=True).fit(X, y)


# -- cv_results_ --------------------------------------------------------------------
def test_cv_results_keys_and_dtypes_are_gridsearchs(data, searched):
    X, y = data
    results = searched.cv_results_
    candidates = [p["C"] for p in results["params"]]
    grid = GridSearchCV(
        LogisticRegression(),
        {"C": candidates},
        cv=3,
        scoring="neg_log_loss",
        return_train_score=True,
    ).fit(X, y)
    assert set(results) == set(grid.cv_results_) | set(MORE_RESULTS)
    for key, expected in grid.cv_results_.items():
        assert type(results[key]) is type(expected), key
        if isinstance(expected, np.ndarray):
            assert results[key].dtype == expected.dtype, key
            assert results[key].shape == expected.shape, key
    # one row per evaluated point, in order, with the parameter unmasked
    n_points = searched.n_iter_
    assert len(results["params"]) == n_points == len(searched.history_)
    assert_array_equal(results["outer_iteration"], np.arange(n_points))
    assert not np.ma.getmaskarray(results["param_C"]).any()
    assert_array_equal(results["param_C"].data, candidates)
    assert {"start", "gradient"} <= set(results["outer_phase"])
    # the extra columns are the search's history, point by point
    history = searched.history_
    assert list(results["outer_phase"]) == [r["phase"] for r in history]
    assert_allclose(results["hypergradient_norm"], [r["grad_norm"] for r in history])
    assert list(results["step_accepted"]) == [bool(r["accepted"]) for r in history]
    assert_allclose(results["outer_loss"], [r["value"] for r in history])
    # every row is scored as GridSearchCV scores that value (up to the
    # inexactness of the search's fold fits away from the re-solved points:
    # a few 1e-6 here)
    for key in ("mean_test_score", "mean_train_score"):
        assert_allclose(results[key], grid.cv_results_[key], atol=SCORE_TOL)


def test_cv_results_means_stds_and_ranks_are_consistent(searched):
    results = searched.cv_results_
    for kind in ("test", "train"):
        splits = np.column_stack(
            [results[f"split{k}_{kind}_score"] for k in range(searched.n_splits_)]
        )
        assert_allclose(results[f"mean_{kind}_score"], splits.mean(axis=1))
        assert_allclose(results[f"std_{kind}_score"], splits.std(axis=1))
    expected = rankdata(-results["mean_test_score"], method="min")
    assert_array_equal(results["rank_test_score"], expected)
    for key in ("mean_fit_time", "mean_score_time", "std_score_time"):
        assert np.all(results[key] >= 0)


def test_fit_time_is_the_evaluation_time_shared_among_folds(searched):
    # documented difference: no per-fold fit, one evaluation of all folds
    results = searched.cv_results_
    assert_array_equal(results["std_fit_time"], 0.0)
    times = [record["time"] for record in searched.history_]
    assert_allclose(results["mean_fit_time"] * searched.n_splits_, times)
    assert isinstance(searched.refit_time_, float) and searched.refit_time_ >= 0


def test_scores_at_the_chosen_point_are_gridsearchs(data, searched):
    X, y = data
    grid = _grid_at(searched, scoring="neg_log_loss", return_train_score=True)
    grid.fit(X, y)
    best = searched.best_index_
    for key in grid.cv_results_:
        if re.fullmatch(r"(split\d+_|mean_)(test|train)_score", key):
            assert searched.cv_results_[key][best] == pytest.approx(
                grid.cv_results_[key][0], abs=SCORE_TOL
            ), key
    assert searched.best_score_ == pytest.approx(grid.best_score_, abs=SCORE_TOL)
    # the refit is the user's estimator fitted by scikit-learn: GridSearchCV's
    # own without the warm start, nearer the solution with it
    assert type(searched.best_estimator_) is LogisticRegression
    _assert_refit_nearer_the_solution(searched, grid, X, y)
    cold = clone(searched).set_params(refit_warm_start=False).fit(X, y)
    assert cold.best_params_ == searched.best_params_
    assert_allclose(cold.best_estimator_.coef_, grid.best_estimator_.coef_)
    assert_allclose(cold.best_estimator_.n_iter_, grid.best_estimator_.n_iter_)


def test_best_attributes_index_cv_results(searched):
    results = searched.cv_results_
    best = searched.best_index_
    assert searched.best_score_ == results["mean_test_score"][best]
    assert searched.best_params_ == results["params"][best]
    assert searched.best_estimator_.C == searched.best_params_["C"]
    assert results["rank_test_score"][best] == 1
    assert searched.n_splits_ == 3 and searched.multimetric_ is False


def test_ties_go_to_the_lower_outer_loss(data):
    # documented difference: GridSearchCV takes the first of the tied points
    X, y = data
    search = _search(scoring="accuracy").fit(X, y)
    results = search.cv_results_
    tied = np.flatnonzero(results["rank_test_score"] == 1)
    expected = tied[np.argmin(results["outer_loss"][tied])]
    assert search.best_index_ == expected


def test_return_train_score_false_has_no_train_columns(data):
    X, y = data
    search = _search().fit(X, y)
    assert not [key for key in search.cv_results_ if "train" in key]


# -- refit ------------------------------------------------------------------------
DELEGATED = (
    "predict",
    "predict_proba",
    "predict_log_proba",
    "decision_function",
    "transform",
    "inverse_transform",
    "score_samples",
)


def test_refit_false_keeps_best_index_but_no_estimator(data):
    X, y = data
    search = _search(refit=False).fit(X, y)
    grid = GridSearchCV(LogisticRegression(), {"C": [1.0]}, cv=3, refit=False)
    grid.fit(X, y)
    for attribute in ("best_index_", "best_params_", "best_score_"):
        assert hasattr(search, attribute) == hasattr(grid, attribute) is True
    for attribute in ("best_estimator_", "classes_", "n_features_in_", "refit_time_"):
        assert not hasattr(search, attribute) and not hasattr(grid, attribute)
    for method in DELEGATED:
        with pytest.raises(
            AttributeError, match=f"has no attribute '{method}'"
        ) as ours:
            getattr(search, method)(X)
        with pytest.raises(AttributeError) as theirs:
            getattr(grid, method)(X)
        assert str(ours.value.__cause__) == str(theirs.value.__cause__).replace(
            "GridSearchCV", "BilevelSearchCV"
        )
    with pytest.raises(AttributeError, match="refit=False"):
        search.score(X, y)
    # our extension: the fold models of the best point, even without refit
    assert len(search.best_fold_estimators_) == 3


def test_refit_false_multimetric_has_no_best_index(data):
    X, y = data
    scoring = {"acc": "accuracy", "nll": "neg_log_loss"}
    search = _search(refit=False, scoring=scoring).fit(X, y)
    grid = GridSearchCV(
        LogisticRegression(), {"C": [1.0]}, cv=3, refit=False, scoring=scoring
    ).fit(X, y)
    for attribute in ("best_index_", "best_params_", "best_score_"):
        assert not hasattr(search, attribute) and not hasattr(grid, attribute)
    assert search.multimetric_ and set(search.scorer_) == set(scoring)
    # the fold models then are those of the lowest outer loss
    lowest = np.argmin(search.cv_results_["outer_loss"])
    C = search.cv_results_["params"][lowest]["C"]
    assert all(model.C == C for model in search.best_fold_estimators_)


@pytest.mark.parametrize("refit", [True, "recall"])
def test_multimetric_refit_must_name_a_metric(data, refit):
    X, y = data
    scoring = {"acc": "accuracy", "nll": "neg_log_loss"}
    with pytest.raises(ValueError) as theirs:
        GridSearchCV(
            LogisticRegression(), {"C": [1.0]}, refit=refit, scoring=scoring
        ).fit(X, y)
    with pytest.raises(ValueError) as ours:
        _search(refit=refit, scoring=scoring).fit(X, y)
    assert str(ours.value) == str(theirs.value)


def test_refit_callable_chooses_the_index(data):
    X, y = data

    def worst(results):
        assert set(MORE_RESULTS) <= set(results)
        return int(np.argmin(results["mean_test_score"]))

    search = _search(scoring="neg_log_loss", refit=worst).fit(X, y)
    expected = np.argmin(search.cv_results_["mean_test_score"])
    assert search.best_index_ == expected
    assert search.best_params_ == search.cv_results_["params"][expected]
    assert search.best_estimator_.C == search.best_params_["C"]
    assert not hasattr(search, "best_score_")  # as GridSearchCV


@pytest.mark.parametrize("returned", [None, -1, 10_000])
def test_refit_callable_returning_a_bad_index_raises_as_gridsearch(data, returned):
    X, y = data
    with pytest.raises((TypeError, IndexError)) as theirs:
        GridSearchCV(
            LogisticRegression(), {"C": [0.1, 1.0]}, refit=lambda r: returned
        ).fit(X, y)
    with pytest.raises(type(theirs.value), match=re.escape(str(theirs.value))):
        _search(refit=lambda r: returned).fit(X, y)


def test_multimetric_refit_by_name(data):
    X, y = data
    scoring = {"acc": "accuracy", "nll": "neg_log_loss"}
    search = _search(scoring=scoring, refit="nll").fit(X, y)
    results = search.cv_results_
    for name in scoring:
        for prefix in ("mean_test_", "std_test_", "rank_test_", "split0_test_"):
            assert prefix + name in results
    assert "mean_test_score" not in results
    best = search.best_index_
    assert results["rank_test_nll"][best] == 1
    assert search.best_score_ == results["mean_test_nll"][best]
    assert search.multimetric_ and set(search.scorer_) == set(scoring)
    # score() uses the refit metric, as GridSearchCV's
    assert search.score(X, y) == pytest.approx(
        -log_loss(y, search.best_estimator_.predict_proba(X))
    )
    grid = _grid_at(search, scoring=scoring, refit="nll").fit(X, y)
    for name in scoring:
        assert results[f"mean_test_{name}"][best] == pytest.approx(
            grid.cv_results_[f"mean_test_{name}"][0], abs=SCORE_TOL
        )


def test_scoring_does_not_steer_the_search(data):
    # each metric's columns are those of a search scored by that metric alone
    X, y = data
    multi = _search(scoring=["accuracy", "neg_log_loss"], refit="accuracy").fit(X, y)
    for name in ("accuracy", "neg_log_loss"):
        single = _search(scoring=name).fit(X, y)
        assert single.cv_results_["params"] == multi.cv_results_["params"]
        # the point re-solved before being declared best differs between the
        # two (only its scores move, by the inexactness of the search's fits)
        assert_allclose(
            single.cv_results_["mean_test_score"],
            multi.cv_results_[f"mean_test_{name}"],
            atol=1e-3,
        )


def test_callable_multimetric_scoring_matches_a_list_of_strings(data):
    X, y = data

    def scores(estimator, X, y):
        return {
            "accuracy": accuracy_score(y, estimator.predict(X)),
            "neg_log_loss": -log_loss(y, estimator.predict_proba(X)),
        }

    by_callable = _search(scoring=scores, refit="neg_log_loss").fit(X, y)
    by_names = _search(scoring=["accuracy", "neg_log_loss"], refit="neg_log_loss").fit(
        X, y
    )
    assert by_callable.best_index_ == by_names.best_index_
    assert by_callable.best_score_ == pytest.approx(by_names.best_score_)
    for key in ("mean_test_accuracy", "mean_test_neg_log_loss"):
        assert_allclose(by_callable.cv_results_[key], by_names.cv_results_[key])
    with pytest.raises(ValueError, match="refit must be set to a scorer key"):
        _search(scoring=scores, refit="auc").fit(X, y)


# -- error_score ------------------------------------------------------------------
class _FailingScorer:
    """Accuracy, but fails on the fold models of C above ``threshold``."""

    def __init__(self, threshold):
        self.threshold = threshold

    def __call__(self, estimator, X, y):
        if estimator.C > self.threshold:
            raise ZeroDivisionError("failing scorer")
        return accuracy_score(y, estimator.predict(X))


def _median_C(search):
    """A threshold with evaluated points on both sides."""
    return float(np.median(search.cv_results_["param_C"].data))


def test_error_score_raise_raises_the_scorers_error(data, searched):
    X, y = data
    scorer = _FailingScorer(_median_C(searched))
    with pytest.raises(ZeroDivisionError, match="failing scorer"):
        GridSearchCV(
            LogisticRegression(), {"C": [1.0]}, scoring=scorer, error_score="raise"
        ).fit(X, y)
    with pytest.raises(ZeroDivisionError, match="failing scorer"):
        _search(scoring=scorer, error_score="raise").fit(X, y)


@pytest.mark.parametrize("error_score", [np.nan, -1.0])
def test_error_score_replaces_failed_scores(data, searched, error_score):
    X, y = data
    threshold = _median_C(searched)
    scorer = _FailingScorer(threshold)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        search = _search(scoring=scorer, error_score=error_score).fit(X, y)
    messages = [str(w.message) for w in caught if w.category is UserWarning]
    assert any("Scoring failed" in message for message in messages)
    # as GridSearchCV: one warning about non-finite scores, for NaN only
    n_non_finite = sum("scores are non-finite" in message for message in messages)
    assert n_non_finite == int(np.isnan(error_score))
    results = search.cv_results_
    failed = np.array([p["C"] > threshold for p in results["params"]])
    assert failed.any() and (~failed).any()
    splits = np.column_stack([results[f"split{k}_test_score"] for k in range(3)])
    assert_array_equal(splits[failed], error_score)
    assert np.all(np.isfinite(splits[~failed]))
    # failed points rank last, as in GridSearchCV
    assert np.all(
        results["rank_test_score"][failed] > results["rank_test_score"][~failed].max()
    )
    assert not failed[search.best_index_]


# -- routing ------------------------------------------------------------------------
def test_groups_are_routed_to_a_group_splitter(data):
    X, y = data
    groups = np.arange(len(y)) % 4
    with pytest.raises(ValueError) as theirs:
        GridSearchCV(LogisticRegression(), {"C": [1.0]}, cv=GroupKFold(3)).fit(X, y)
    with pytest.raises(ValueError, match=re.escape(str(theirs.value))):
        _search(cv=GroupKFold(3)).fit(X, y)
    search = _search(cv=GroupKFold(3), scoring="neg_log_loss").fit(X, y, groups=groups)
    assert search.n_splits_ == 3
    grid = _grid_at(search, scoring="neg_log_loss").fit(X, y, groups=groups)
    assert search.best_score_ == pytest.approx(grid.best_score_, abs=SCORE_TOL)
    search = _search(cv=LeaveOneGroupOut()).fit(X, y, groups=groups)
    assert search.n_splits_ == 4


def _weighted_accuracy():
    return make_scorer(accuracy_score).set_score_request(sample_weight=True)


def test_sample_weight_with_metadata_routing(data):
    X, y = data
    sample_weight = np.random.default_rng(0).integers(1, 4, len(y)).astype(float)
    with sklearn.config_context(enable_metadata_routing=True):
        estimator = LogisticRegression().set_fit_request(sample_weight=True)
        search = _search(scoring=_weighted_accuracy())
        search.set_params(estimator=estimator).fit(X, y, sample_weight=sample_weight)
        grid = _grid_at(search, estimator=estimator, scoring=_weighted_accuracy())
        grid.fit(X, y, sample_weight=sample_weight)
        # from scratch, the refit is GridSearchCV's own
        cold = _search(scoring=_weighted_accuracy(), refit_warm_start=False)
        cold.set_params(estimator=estimator).fit(X, y, sample_weight=sample_weight)
        assert_allclose(cold.best_estimator_.coef_, grid.best_estimator_.coef_)
        # a consumer that did not say whether it wants the weights: an error
        with pytest.raises(Exception) as theirs:
            GridSearchCV(LogisticRegression(), {"C": [1.0]}).fit(
                X, y, sample_weight=sample_weight
            )
        with pytest.raises(type(theirs.value), match="sample_weight"):
            _search().fit(X, y, sample_weight=sample_weight)
    assert search.best_score_ == pytest.approx(grid.best_score_, abs=SCORE_TOL)
    # the weights reach the refit (without them, it is 44% from the solution)
    _assert_refit_nearer_the_solution(search, grid, X, y, sample_weight=sample_weight)


def test_sample_weight_without_routing_reaches_the_fits_and_scorers(data):
    X, y = data
    sample_weight = np.random.default_rng(0).integers(1, 4, len(y)).astype(float)
    search = _search().fit(X, y, sample_weight=sample_weight)
    grid = _grid_at(search).fit(X, y, sample_weight=sample_weight)
    assert search.best_score_ == pytest.approx(grid.best_score_, abs=SCORE_TOL)
    _assert_refit_nearer_the_solution(search, grid, X, y, sample_weight=sample_weight)
    cold = _search(refit_warm_start=False).fit(X, y, sample_weight=sample_weight)
    assert_allclose(cold.best_estimator_.coef_, grid.best_estimator_.coef_)


def test_score_rejects_params_without_routing(data, searched):
    X, y = data
    with pytest.raises(ValueError, match="is only supported if"):
        searched.score(X, y, sample_weight=np.ones(len(y)))


def test_a_one_time_iterable_cv_gives_the_splitters_search(data):
    X, y = data
    splitter = KFold(3, shuffle=True, random_state=0)
    by_splitter = _search(cv=splitter).fit(X, y)
    by_generator = _search(cv=splitter.split(X, y)).fit(X, y)
    for key, value in by_splitter.cv_results_.items():
        if not key.endswith("_time"):
            np.testing.assert_equal(by_generator.cv_results_[key], value)
    exhausted = splitter.split(X, y)
    list(exhausted)
    with pytest.raises(ValueError, match="no split"):
        _search(cv=exhausted).fit(X, y)


# -- the fitted search as an estimator -------------------------------------------
def test_pickle_and_clone(data, searched):
    X, y = data
    restored = pickle.loads(pickle.dumps(searched))
    assert_array_equal(restored.predict(X), searched.predict(X))
    assert_allclose(restored.predict_proba(X), searched.predict_proba(X))
    for key, value in searched.cv_results_.items():
        np.testing.assert_equal(restored.cv_results_[key], value)
    fresh = clone(searched)
    assert fresh.get_params(deep=False).keys() == searched.get_params(deep=False).keys()
    assert not hasattr(fresh, "cv_results_") and not hasattr(fresh, "best_estimator_")
    fresh.set_params(estimator__C=5.0, max_iter=2)
    assert fresh.estimator.C == 5.0 and searched.estimator.C == 1.0


def test_fitted_attributes_delegate_as_gridsearchs(data, searched):
    X, y = data
    assert_array_equal(searched.classes_, searched.best_estimator_.classes_)
    assert searched.n_features_in_ == X.shape[1]
    assert not hasattr(searched, "feature_names_in_")
    unfitted = _search()
    assert not hasattr(unfitted, "classes_")
    assert not hasattr(unfitted, "n_features_in_")
    columns = [f"x{j}" for j in range(X.shape[1])]
    frame = pd.DataFrame(X, columns=columns)
    search = _search().fit(frame, pd.Series(y))
    assert_array_equal(search.feature_names_in_, columns)
    assert_array_equal(search.predict(frame), search.best_estimator_.predict(frame))
    regression = BilevelSearchCV(Ridge(), {"alpha": (1e-3, 1e3)}, cv=3, max_iter=4)
    regression.fit(*make_regression(60, 4, noise=5.0, random_state=0))
    assert not hasattr(regression, "classes_")


def test_methods_delegate_to_best_estimator(data, searched):
    X, y = data
    best = searched.best_estimator_
    for method in (
        "predict",
        "predict_proba",
        "predict_log_proba",
        "decision_function",
    ):
        assert_allclose(getattr(searched, method)(X), getattr(best, method)(X))
    assert searched.score(X, y) == get_scorer("neg_log_loss")(best, X, y)
    for method in ("transform", "inverse_transform", "score_samples"):
        # as GridSearchCV(LogisticRegression()): absent, the cause named
        assert not hasattr(searched, method)
        with pytest.raises(AttributeError) as caught:
            getattr(searched, method)(X)
        assert "'LogisticRegression' object has no attribute" in str(
            caught.value.__cause__
        )


def test_ridge_search_scores_are_gridsearchs(data):
    X, y = make_regression(80, 5, noise=10.0, random_state=0)
    cv = KFold(4, shuffle=True, random_state=0)
    search = BilevelSearchCV(Ridge(), {"alpha": (1e-3, 1e3)}, cv=cv).fit(X, y)
    grid = GridSearchCV(Ridge(), {"alpha": [search.best_params_["alpha"]]}, cv=cv)
    grid.fit(X, y)
    best = search.best_index_
    for k in range(4):
        assert search.cv_results_[f"split{k}_test_score"][best] == pytest.approx(
            grid.cv_results_[f"split{k}_test_score"][0], abs=SCORE_TOL
        )
    assert_allclose(search.predict(X), grid.predict(X))
    assert not hasattr(search, "predict_proba")
    assert search.score(X, y) == pytest.approx(grid.score(X, y))


def test_pipeline_step_parameter(data):
    X, y = data
    pipe = make_pipeline(StandardScaler(), LogisticRegression())
    search = BilevelSearchCV(
        pipe, {"logisticregression__C": (1e-3, 1e3)}, cv=3, scoring="neg_log_loss"
    ).fit(X, y)
    assert set(search.best_params_) == {"logisticregression__C"}
    assert "param_logisticregression__C" in search.cv_results_
    best = search.best_estimator_
    assert best[-1].C == search.best_params_["logisticregression__C"]
    grid = _grid_at(search, estimator=pipe, scoring="neg_log_loss").fit(X, y)
    assert search.best_score_ == pytest.approx(grid.best_score_, abs=SCORE_TOL)
    # the same scaler (fitted by Pipeline.fit), the final step warm-started
    assert_allclose(best[0].scale_, grid.best_estimator_[0].scale_)
    _assert_refit_nearer_the_solution(search, grid, X, y)
    assert best[-1].warm_start is False
    assert best[-1].n_iter_[0] == 0  # started from the engine's solution
    cold = clone(search).set_params(refit_warm_start=False).fit(X, y)
    assert_allclose(cold.predict_proba(X), grid.predict_proba(X))


def test_n_jobs_gives_the_same_search(data, searched):
    X, y = data
    parallel = clone(searched).set_params(n_jobs=2).fit(X, y)
    assert parallel.best_params_ == searched.best_params_
    for key, value in searched.cv_results_.items():
        if not key.endswith("_time"):
            np.testing.assert_equal(parallel.cv_results_[key], value)


# -- verbose ------------------------------------------------------------------------
_ROW = re.compile(r"^\s*\d+\s+(bracket|start|gradient)\s", re.MULTILINE)


def test_verbose_prints_one_row_per_evaluated_point(data, capsys):
    X, y = data
    _search(verbose=0).fit(X, y)
    assert capsys.readouterr().out == ""
    search = _search(verbose=1).fit(X, y)
    out = capsys.readouterr().out
    # documented difference: GridSearchCV prints "Fitting 3 folds for each of
    # n candidates", then one line per fit with verbose > 1
    assert out.startswith("Fitting 3 folds")
    assert len(_ROW.findall(out)) == search.n_iter_
    detailed = _search(verbose=2).fit(X, y)
    out_2 = capsys.readouterr().out
    assert len(_ROW.findall(out_2)) == detailed.n_iter_
    headers = [
        next(line for line in text.splitlines() if "CV loss" in line)
        for text in (out, out_2)
    ]
    assert "HVP" not in headers[0] and "HVP" in headers[1]


def test_no_pre_dispatch(data):
    # documented difference: the folds run in threads, nothing is dispatched
    assert "pre_dispatch" not in _search().get_params()
    assert "pre_dispatch" in GridSearchCV(LogisticRegression(), {}).get_params()


def test_the_estimators_solver_settings_act_in_the_refit_only(data):
    # documented difference: the search solves the fold problems itself
    X, y = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loose = BilevelSearchCV(
            LogisticRegression(max_iter=1), SPACE, cv=3, refit_warm_start=False
        ).fit(X, y)
        warm = BilevelSearchCV(LogisticRegression(max_iter=1), SPACE, cv=3).fit(X, y)
    tight = BilevelSearchCV(LogisticRegression(), SPACE, cv=3).fit(X, y)
    assert_allclose(loose.cv_results_["outer_loss"], tight.cv_results_["outer_loss"])
    assert loose.best_params_ == tight.best_params_
    assert loose.best_estimator_.n_iter_[0] == 1
    # started from the engine's solution, the one iteration allowed is not needed
    assert warm.best_estimator_.n_iter_[0] == 0
    exact = LogisticRegression(C=tight.best_params_["C"], tol=1e-12, max_iter=10_000)
    assert_allclose(warm.best_estimator_.coef_, exact.fit(X, y).coef_, rtol=1e-3)
    # (nor by the default max_iter: both keep the engine's solution itself)
    assert tight.best_estimator_.n_iter_[0] == 0
    assert_array_equal(warm.best_estimator_.coef_, tight.best_estimator_.coef_)
