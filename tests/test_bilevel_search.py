"""BilevelSearchCV (model_selection/_search.py) against GridSearchCV, scikit-learn's
own fits and fine grids: the chosen value, cv_results_, refit, scoring, weights,
callbacks, verbose output and scikit-learn's estimator checks."""

import io
from contextlib import redirect_stdout

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose
from sklearn import config_context
from sklearn.base import clone
from sklearn.datasets import (
    load_breast_cancer,
    load_diabetes,
    load_digits,
    make_classification,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import get_scorer, log_loss
from sklearn.model_selection import (
    GridSearchCV,
    GroupKFold,
    KFold,
    StratifiedKFold,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from skbilevel import BilevelSearchCV
from skbilevel.model_selection._search import MORE_RESULTS

from ._references import _grid_cv_loss, _relative, _tight, _validation_loss

pytestmark = [
    pytest.mark.usefixtures("one_blas_thread"),
    pytest.mark.filterwarnings(
        "ignore:The search for:sklearn.exceptions.ConvergenceWarning",
        "ignore:lbfgs failed to converge:sklearn.exceptions.ConvergenceWarning",
    ),
]


# -- the three data sets of the issue ---------------------------------------------
def _breast_cancer():
    X, y = load_breast_cancer(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), LogisticRegression())
    return X, y, pipe, {"logisticregression__C": (1e-3, 1e2)}, StratifiedKFold(5)


def _digits():
    X, y = load_digits(return_X_y=True)
    return X / 16.0, y, LogisticRegression(), {"C": (1e-2, 1e2)}, StratifiedKFold(5)


def _digits_small():
    X, y, estimator, *_ = _digits()
    keep = np.isin(y, [1, 7, 8])  # three close classes: multinomial, and quick
    return X[keep], y[keep], estimator, {"C": (1e-2, 2e1)}, StratifiedKFold(3)


def _diabetes():
    X, y = load_diabetes(return_X_y=True)
    return X, y, Ridge(), {"alpha": (1e-4, 1e2)}, KFold(5)


CASES = {
    "breast_cancer": _breast_cancer,
    "digits_small": _digits_small,
    "diabetes": _diabetes,
    "digits": pytest.param(_digits, marks=pytest.mark.slow),
}


@pytest.fixture(scope="module", params=list(CASES.values()), ids=list(CASES))
def searched(request):
    X, y, estimator, space, cv = request.param()
    splits = list(cv.split(X, y))
    scoring = (
        "neg_mean_squared_error" if isinstance(estimator, Ridge) else "neg_log_loss"
    )
    # tol=1e-6 asks for the optimum itself: the default (1e-4) stops once the
    # predicted decrease of the CV loss is below 1e-4 of it (on diabetes, whose
    # CV loss is flat to 1e-5 over a decade of alpha, three grid steps away).
    # polish_tol=1e-10 asks for fold models as exact as the tight reference
    # fits (the default matches the estimator's tol=1e-4: tested below).
    search = BilevelSearchCV(
        estimator, space, cv=splits, scoring=scoring, tol=1e-6, polish_tol=1e-10
    )
    return search.fit(X, y), X, y, splits


def test_chosen_value_agrees_with_a_100_point_grid(searched):
    search, X, y, splits = searched
    name, bounds = next(iter(search.param_space.items()))
    grid = np.geomspace(*bounds, 100)
    grid_loss = _grid_cv_loss(search.estimator, name, grid, X, y, splits)
    chosen = search.best_params_[name]
    chosen_loss = _grid_cv_loss(search.estimator, name, [chosen], X, y, splits)[0]
    # What the search reports at its best point is the loss of tight sklearn fits.
    assert search.cv_results_["outer_loss"][search.best_index_] == pytest.approx(
        chosen_loss, rel=1e-6
    )
    assert -search.best_score_ == pytest.approx(chosen_loss, rel=1e-6)
    steps = abs(np.log(chosen / grid[np.argmin(grid_loss)])) / np.log(grid[1] / grid[0])
    assert steps <= 2 or chosen_loss <= grid_loss.min() * (1 + 1e-7)


def test_fold_models_match_the_users_estimator_fit_on_each_fold(searched):
    search, X, y, splits = searched
    name = next(iter(search.param_space))
    reference = _tight(search.estimator).set_params(**search.best_params_)
    assert len(search.best_fold_estimators_) == len(splits)
    for (train, test), fold_model in zip(splits, search.best_fold_estimators_):
        expected = clone(reference).fit(X[train], y[train])
        ours, theirs = fold_model, expected
        if hasattr(ours, "steps"):
            ours, theirs = ours[-1], theirs[-1]
            assert_allclose(fold_model[0].mean_, expected[0].mean_)
        assert type(ours) is type(theirs)
        assert ours.get_params()[name.split("__")[-1]] == search.best_params_[name]
        assert _relative(ours.coef_, theirs.coef_) < 1e-4
        # The multinomial intercept is defined up to a constant: both are centered.
        assert_allclose(ours.intercept_, theirs.intercept_, atol=1e-4)
        assert _validation_loss(fold_model, X[test], y[test]) == pytest.approx(
            _validation_loss(expected, X[test], y[test]), rel=1e-5
        )


def test_best_estimator_is_the_users_class_and_delegates(searched):
    search, X, y, _ = searched
    name = next(iter(search.param_space))
    best = search.best_estimator_
    assert type(best) is type(search.estimator)
    assert best.get_params()[name] == search.best_params_[name]
    # the refit starts from the engine's solution (polish_tol=1e-10 here):
    # the exact fit's predictions (a fit from scratch at tol=1e-4 gives
    # digits' sample 215 another class)
    expected = _tight(search.estimator).set_params(**search.best_params_).fit(X, y)
    assert_allclose(best.predict(X), expected.predict(X))
    assert_allclose(search.predict(X), best.predict(X))
    methods = ["predict_proba", "predict_log_proba", "decision_function"]
    for method in methods if hasattr(best, "predict_proba") else []:
        assert_allclose(getattr(search, method)(X), getattr(best, method)(X))
    scorer = get_scorer(search.scoring)
    assert search.score(X, y) == pytest.approx(scorer(best, X, y))
    assert search.n_features_in_ == X.shape[1]
    if hasattr(best, "classes_"):
        assert_allclose(search.classes_, np.unique(y))
    assert search.refit_time_ > 0


def test_cv_results_load_in_pandas_with_one_row_per_evaluation(searched):
    search, *_ = searched
    frame = pd.DataFrame(search.cv_results_)
    assert len(frame) == len(search.history_) == search.n_iter_
    assert frame["outer_iteration"].tolist() == list(range(len(frame)))
    assert set(frame["outer_phase"]) <= {"bracket", "start", "gradient", "scan", "root"}
    assert_allclose(frame["outer_loss"], [r["value"] for r in search.history_])
    assert frame["rank_test_score"].min() == 1


# -- cv_results_ and attributes: GridSearchCV's --------------------------------------
@pytest.mark.parametrize("return_train_score", [False, True])
@pytest.mark.parametrize(
    "scoring, refit",
    [
        (None, True),
        ("neg_log_loss", True),
        (["accuracy", "neg_log_loss"], "neg_log_loss"),
        ({"acc": "accuracy", "nll": "neg_log_loss"}, False),
    ],
)
def test_cv_results_keys_and_attributes_match_grid_search(
    small_classification, scoring, refit, return_train_score
):
    X, y = small_classification
    common = dict(
        scoring=scoring, refit=refit, cv=3, return_train_score=return_train_score
    )
    grid = GridSearchCV(LogisticRegression(), {"C": [0.1, 1.0]}, **common).fit(X, y)
    search = BilevelSearchCV(LogisticRegression(), {"C": (0.01, 100)}, **common)
    search.fit(X, y)
    assert set(search.cv_results_) == set(grid.cv_results_) | set(MORE_RESULTS)
    n_points = len(search.cv_results_["params"])
    for key, value in grid.cv_results_.items():
        ours = search.cv_results_[key]
        assert len(ours) == n_points
        assert np.asarray(ours).dtype.kind == np.asarray(value).dtype.kind, key

    def fitted(est):
        return {a for a in vars(est) if a.endswith("_") and not a.startswith("_")}

    extra = {
        "best_fold_estimators_",
        "history_",
        "n_iter_",
        "converged_",
        "penalty_gain_",  # None without penalty_groups
    }
    assert fitted(search) == fitted(grid) | extra
    assert search.multimetric_ == grid.multimetric_
    assert search.n_splits_ == 3


@pytest.mark.parametrize("tol", [1e-4, 1e-3])
def test_default_polish_tol_is_the_estimators_tol(small_classification, tol):
    # polish_tol="auto": the best point's fold models pass LogisticRegression's
    # own gradient test at its tol, and its score is theirs
    X, y = small_classification
    splits = list(StratifiedKFold(3).split(X, y))
    search = BilevelSearchCV(
        LogisticRegression(tol=tol), {"C": (0.01, 100)}, cv=splits, verbose=1
    )
    with redirect_stdout(io.StringIO()) as out:
        search.fit(X, y)
    assert f"to tol {tol:g}:" in out.getvalue()
    C = search.best_params_["C"]
    for (train, test), model, score in zip(
        splits,
        search.best_fold_estimators_,
        [
            search.cv_results_[f"split{k}_test_score"][search.best_index_]
            for k in range(3)
        ],
    ):
        z = X[train] @ model.coef_.ravel() + model.intercept_[0]
        residual = 1 / (1 + np.exp(-z)) - y[train]
        grad = np.concatenate(
            [X[train].T @ residual + model.coef_.ravel() / C, [residual.sum()]]
        )
        assert np.linalg.norm(grad) / len(train) <= tol
        assert score == model.score(X[test], y[test])


def test_scores_are_the_scorers_on_each_fold(small_classification):
    X, y = small_classification
    splits = list(StratifiedKFold(3).split(X, y))
    search = BilevelSearchCV(
        LogisticRegression(),
        {"C": (0.01, 100)},
        cv=splits,
        scoring={"acc": "accuracy", "nll": "neg_log_loss"},
        refit="nll",
        return_train_score=True,
        polish_tol=1e-10,
    ).fit(X, y)
    results, best = search.cv_results_, search.best_index_
    C = search.best_params_["C"]
    for k, (train, test) in enumerate(splits):
        model = LogisticRegression(C=C, tol=1e-10).fit(X[train], y[train])
        assert results[f"split{k}_test_nll"][best] == pytest.approx(
            -log_loss(y[test], model.predict_proba(X[test])), rel=1e-6
        )
        assert results[f"split{k}_train_acc"][best] == model.score(X[train], y[train])
    assert search.best_score_ == results["mean_test_nll"].max()


@pytest.mark.parametrize(
    "scoring",
    [None, "accuracy", "neg_log_loss", ["accuracy", "neg_log_loss"], "roc_auc_ovr"],
    ids=str,
)
@pytest.mark.parametrize("n_classes", [2, 3])
def test_scores_from_decision_values_equal_the_scorers(scoring, n_classes, monkeypatch):
    # accuracy and log-loss are computed from the fold solutions' decision
    # values, for all points at once: the same numbers as scikit-learn's
    # scorers on the fold models (the path every other metric takes).
    X, y = make_classification(
        120, 5, n_informative=3, n_classes=n_classes, random_state=0
    )
    pipe = make_pipeline(StandardScaler(), LogisticRegression())
    splits = list(StratifiedKFold(3, shuffle=True, random_state=0).split(X, y))
    space = {"logisticregression__C": (1e-2, 1e2)}
    refit = "neg_log_loss" if isinstance(scoring, list) else True
    import skbilevel.model_selection._scoring as scoring_module

    calls = []
    scorer_call = scoring_module._score
    monkeypatch.setattr(
        scoring_module, "_score", lambda *a: calls.append(1) or scorer_call(*a)
    )
    fast = BilevelSearchCV(pipe, space, cv=splits, scoring=scoring, refit=refit)
    fast.fit(X, y)
    # the fold models are scored only for the metric without a shortcut
    assert bool(calls) == (scoring == "roc_auc_ovr")
    import skbilevel.model_selection._search as search_module

    monkeypatch.setattr(search_module, "prediction_metrics", lambda *a: None)
    slow = BilevelSearchCV(pipe, space, cv=splits, scoring=scoring, refit=refit)
    slow.fit(X, y)
    score_keys = [k for k in slow.cv_results_ if k.startswith("split")]
    assert score_keys
    for key in score_keys:
        assert_allclose(fast.cv_results_[key], slow.cv_results_[key], rtol=1e-10)
    assert fast.best_index_ == slow.best_index_


def test_a_fold_without_a_class_is_scored_as_scikit_learn_scores_it(monkeypatch):
    # scikit-learn's log-loss errs on a validation fold that lacks a class
    # (error_score=nan, with a warning): the fold models are scored then,
    # exactly as without the shortcut.
    X, y = make_classification(
        150, 5, n_classes=3, n_informative=3, n_redundant=0, random_state=0
    )
    rows = [np.flatnonzero(y == c) for c in range(3)]
    test = np.concatenate([rows[0][:10], rows[1][:10]])  # no class 2
    splits = [(np.setdiff1d(np.arange(150), test), test)]
    splits += list(StratifiedKFold(2, shuffle=True, random_state=0).split(X, y))
    space = {"C": (1e-2, 1e2)}

    def fit():
        with pytest.warns(UserWarning):
            return BilevelSearchCV(
                LogisticRegression(), space, cv=splits, scoring="neg_log_loss"
            ).fit(X, y)

    fast = fit()
    assert np.isnan(fast.cv_results_["split0_test_score"]).all()
    import skbilevel.model_selection._search as search_module

    monkeypatch.setattr(search_module, "prediction_metrics", lambda *a: None)
    slow = fit()
    for key in ("split1_test_score", "split2_test_score"):
        assert_allclose(fast.cv_results_[key], slow.cv_results_[key], rtol=1e-12)


def test_best_index_follows_refit_metric_and_breaks_ties_by_outer_loss(
    small_classification,
):
    X, y = small_classification
    search = BilevelSearchCV(LogisticRegression(), {"C": (0.01, 100)}, cv=3).fit(X, y)
    results = search.cv_results_
    accuracy = results["mean_test_score"]
    tied = np.flatnonzero(accuracy == accuracy.max())
    assert search.best_index_ == tied[np.argmin(results["outer_loss"][tied])]
    assert search.best_score_ == accuracy.max()

    def refit(results):
        return int(np.argmax(results["outer_iteration"]))

    search = clone(search).set_params(refit=refit).fit(X, y)
    assert search.best_index_ == len(search.cv_results_["params"]) - 1
    assert not hasattr(search, "best_score_")


# -- weights, groups, sparse, parallel ---------------------------------------------------
@pytest.fixture(scope="module")
def weighted_problem():
    rng = np.random.default_rng(0)
    X, y = make_classification(n_samples=90, n_features=5, random_state=1)
    return X, y, rng.integers(1, 4, size=y.size)


def test_integer_weights_equal_duplicated_samples(weighted_problem):
    X, y, weight = weighted_problem
    splits = list(KFold(3, shuffle=True, random_state=0).split(X))
    owner = np.repeat(np.arange(y.size), weight)
    dup_splits = [
        (np.flatnonzero(np.isin(owner, tr)), np.flatnonzero(np.isin(owner, te)))
        for tr, te in splits
    ]
    kwargs = dict(scoring="neg_log_loss", tol=1e-6, polish_tol=1e-10)
    weighted = BilevelSearchCV(
        LogisticRegression(), {"C": (1e-2, 1e2)}, cv=splits, **kwargs
    )
    weighted.fit(X, y, sample_weight=weight)
    duplicated = BilevelSearchCV(
        LogisticRegression(), {"C": (1e-2, 1e2)}, cv=dup_splits, **kwargs
    ).fit(X[owner], y[owner])
    assert weighted.best_params_["C"] == pytest.approx(
        duplicated.best_params_["C"], rel=1e-3
    )
    # The scorer received the weights too: weighted means of the log-loss.
    assert weighted.best_score_ == pytest.approx(duplicated.best_score_, rel=1e-6)
    C = weighted.best_params_["C"]
    for (train, _), model in zip(splits, weighted.best_fold_estimators_):
        expected = LogisticRegression(C=C, tol=1e-10).fit(
            X[train], y[train], sample_weight=weight[train]
        )
        assert _relative(model.coef_, expected.coef_) < 1e-4


@pytest.mark.parametrize("routing", [False, True])
def test_sample_weight_reaches_the_pipeline_step(weighted_problem, routing):
    X, y, weight = weighted_problem
    splits = list(StratifiedKFold(3).split(X, y))
    with config_context(enable_metadata_routing=routing):
        scaler, clf = StandardScaler(), LogisticRegression(class_weight="balanced")
        if routing:
            scaler.set_fit_request(sample_weight=False)
            clf.set_fit_request(sample_weight=True)
            scoring = get_scorer("neg_log_loss").set_score_request(sample_weight=True)
            params = {"sample_weight": weight}
        else:
            scoring, params = (
                "neg_log_loss",
                {"logisticregression__sample_weight": weight},
            )
        pipe = make_pipeline(scaler, clf)
        search = BilevelSearchCV(
            pipe,
            {"logisticregression__C": (1e-2, 1e2)},
            cv=splits,
            scoring=scoring,
            polish_tol=1e-10,
        ).fit(X, y, **params)
        C = search.best_params_["logisticregression__C"]
        for (train, _), model in zip(splits, search.best_fold_estimators_):
            expected = _tight(pipe).set_params(logisticregression__C=C)
            fit_params = {k: v[train] for k, v in params.items()}
            expected.fit(X[train], y[train], **fit_params)
            assert _relative(model[-1].coef_, expected[-1].coef_) < 1e-4


def test_groups_are_routed_to_the_splitter(small_classification):
    X, y = small_classification
    groups = np.arange(y.size) % 7
    space = {"C": (0.01, 100)}
    search = BilevelSearchCV(LogisticRegression(), space, cv=GroupKFold(3))
    search.fit(X, y, groups=groups)
    splits = list(GroupKFold(3).split(X, y, groups))
    reference = BilevelSearchCV(LogisticRegression(), space, cv=splits).fit(X, y)
    assert_allclose(
        search.cv_results_["outer_loss"], reference.cv_results_["outer_loss"]
    )


def test_random_state_shuffles_the_folds(small_classification):
    X, y = small_classification
    space = {"C": (0.01, 100)}
    search = BilevelSearchCV(LogisticRegression(), space, cv=3, random_state=0)
    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    reference = BilevelSearchCV(LogisticRegression(), space, cv=cv)
    assert_allclose(
        search.fit(X, y).cv_results_["outer_loss"],
        reference.fit(X, y).cv_results_["outer_loss"],
    )


def test_sparse_input_and_threads_give_the_same_search(small_classification):
    X, y = small_classification
    X = np.where(np.abs(X) < 0.7, 0.0, X)
    space = {"C": (0.01, 100)}
    dense = BilevelSearchCV(LogisticRegression(), space, cv=3).fit(X, y)
    sparse = BilevelSearchCV(LogisticRegression(), space, cv=3, n_jobs=2)
    sparse.fit(sp.csr_matrix(X), y)
    assert_allclose(
        sparse.cv_results_["outer_loss"], dense.cv_results_["outer_loss"], rtol=1e-8
    )
    assert sp.issparse(sparse.best_fold_estimators_[0].coef_) is False


# -- the refit, warm-started from the engine's solution --------------------------------
@pytest.fixture(scope="module")
def three_classes():
    X, y = make_classification(
        n_samples=240, n_features=8, n_informative=5, n_classes=3, random_state=0
    )
    return StandardScaler().fit_transform(X), y


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("solver", ["lbfgs", "newton-cg", "newton-cholesky", "saga"])
def test_warm_refit_is_the_estimators_fit_nearer_the_solution(
    three_classes, solver, n_classes
):
    X, y = three_classes
    if n_classes == 2:
        X, y = X[y < 2], y[y < 2]
    weight = np.random.default_rng(0).integers(1, 4, y.size).astype(float)
    estimator = LogisticRegression(
        solver=solver, class_weight="balanced", max_iter=10_000, random_state=0
    )
    search = BilevelSearchCV(estimator, {"C": (1e-2, 1e2)}, cv=3)
    search.fit(X, y, sample_weight=weight)
    C = search.best_params_["C"]
    best = search.best_estimator_
    # warm_start given back: the estimator's parameters, at C_
    assert best.get_params() == clone(estimator).set_params(C=C).get_params()
    exact = _tight(estimator).set_params(C=C).fit(X, y, sample_weight=weight)
    cold = clone(estimator).set_params(C=C).fit(X, y, sample_weight=weight)
    # saga's own stopping rule (the change of the coefficients) ends about
    # 1e-3 from the solution from any start
    slack = 1e-3 if solver == "saga" else 1e-9
    assert _relative(best.coef_, exact.coef_) <= max(
        _relative(cold.coef_, exact.coef_), slack
    )

    # with the intercepts (a multinomial model's are free up to a constant
    # the probabilities do not see; their own error stays below 2e-3)
    def params(model):
        return np.hstack([model.coef_, model.intercept_[:, None]])

    assert _relative(params(best), params(exact)) <= max(
        _relative(params(cold), params(exact)), slack
    )
    assert _relative(best.intercept_, exact.intercept_) < 2e-3
    assert_allclose(best.predict_proba(X), exact.predict_proba(X), atol=1e-3)
    # the start is the engine's solution: nothing left for lbfgs and newton-cg
    # to do, one step for newton-cholesky; saga's epochs stop on a relative
    # change of the coefficients, from any start
    if solver in ("lbfgs", "newton-cg"):
        assert best.n_iter_.max() == 0 < cold.n_iter_.max()
    elif solver == "newton-cholesky":
        assert best.n_iter_.max() == 1 < cold.n_iter_.max()
    else:  # saga: no more epochs than from zero
        assert best.n_iter_.max() <= cold.n_iter_.max()


def test_warm_refit_keeps_the_users_warm_start_and_can_be_turned_off(
    three_classes, capsys
):
    X, y = three_classes
    estimator = LogisticRegression(warm_start=True)
    search = BilevelSearchCV(estimator, {"C": (1e-2, 1e2)}, cv=3, verbose=1)
    search.fit(X, y)
    assert "warm-started from the engine's solution" in capsys.readouterr().out
    assert search.best_estimator_.warm_start is True
    assert search.best_estimator_.n_iter_[0] == 0
    cold = clone(search).set_params(refit_warm_start=False, verbose=0).fit(X, y)
    expected = LogisticRegression(C=cold.best_params_["C"]).fit(X, y)
    assert_allclose(cold.best_estimator_.coef_, expected.coef_)
    assert_allclose(cold.best_estimator_.n_iter_, expected.n_iter_)


def test_warm_refit_gives_warm_start_back_when_the_fit_raises(
    three_classes, monkeypatch
):
    X, y = three_classes

    seen = []

    def failing_fit(self, X, y, sample_weight=None):
        seen.append((self.warm_start, self.coef_.copy(), self.intercept_.copy()))
        raise RuntimeError("the estimator's fit failed")

    # (the search scores its fold models without fitting any: the refit is
    # the one call)
    monkeypatch.setattr(LogisticRegression, "fit", failing_fit)
    search = BilevelSearchCV(LogisticRegression(), {"C": (1e-2, 1e2)}, cv=3)
    with pytest.raises(RuntimeError, match="the estimator's fit failed"):
        search.fit(X, y)
    # the fit saw the start and warm_start=True; the user's is back
    ((warm_start, coef, intercept),) = seen
    assert warm_start is True and search.best_estimator_.warm_start is False
    monkeypatch.undo()
    C = search.best_params_["C"]
    exact = _tight(LogisticRegression(C=C)).fit(X, y)
    assert _relative(coef, exact.coef_) < 1e-3
    assert _relative(intercept, exact.intercept_) < 1e-2


def test_warm_refit_with_other_features_on_all_data_starts_from_scratch():
    # one category seen in one row only: the encoder fitted on the folds that
    # lack it gives one feature fewer than on all the data
    rng = np.random.default_rng(0)
    X = rng.integers(0, 4, size=(90, 3))
    X[7, 0] = 9
    y = (X[:, 1] + rng.integers(0, 2, 90) > 2).astype(int)
    pipe = make_pipeline(
        OneHotEncoder(handle_unknown="ignore"), LogisticRegression(max_iter=1)
    )
    space = {"logisticregression__C": (1e-2, 1e2)}
    with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge"):
        search = BilevelSearchCV(pipe, space, cv=3).fit(X, y)
    # the fit from scratch, with its one iteration
    assert search.best_estimator_[-1].n_iter_[0] == 1
    expected = clone(pipe).set_params(**search.best_params_)
    with pytest.warns(ConvergenceWarning):
        expected.fit(X, y)
    assert_allclose(search.predict_proba(X), expected.predict_proba(X))


# -- the search itself -------------------------------------------------------------
def test_callback_stops_and_verbose_prints(small_classification, capsys):
    X, y = small_classification
    seen = []

    def callback(record):
        seen.append(record["C"][0])
        return len(seen) == 2

    search = BilevelSearchCV(
        LogisticRegression(), {"C": (0.01, 100)}, callback=callback, verbose=1
    ).fit(X, y)
    assert len(search.cv_results_["params"]) == 2
    assert_allclose(search.cv_results_["param_C"].astype(float), seen)
    out = capsys.readouterr().out
    assert "gradient search of C in [0.01, 100]" in out and "bracket" in out


def test_start_value_and_convergence_warning(small_classification):
    X, y = small_classification
    search = BilevelSearchCV(LogisticRegression(), {"C": (0.01, 100, 3.0)}, max_iter=0)
    with pytest.warns(ConvergenceWarning, match="max_iter"):
        search.fit(X, y)
    assert search.cv_results_["param_C"][0] == pytest.approx(3.0)
    assert list(search.cv_results_["outer_phase"]) == ["start"]


@pytest.mark.filterwarnings("ignore:One or more of the test scores are non-finite")
def test_error_score_applies_to_failing_scorers(small_classification):
    X, y = small_classification

    def failing(estimator, X, y):
        raise RuntimeError("scorer failed")

    search = BilevelSearchCV(LogisticRegression(), {"C": (0.01, 100)}, scoring=failing)
    with pytest.warns(UserWarning, match="Scoring failed"):
        search.fit(X, y)
    assert np.all(np.isnan(search.cv_results_["mean_test_score"]))
    with pytest.raises(RuntimeError, match="scorer failed"):
        search.set_params(error_score="raise").fit(X, y)


def test_bad_data_raises(small_classification):
    X, y = small_classification
    X = X.copy()
    X[3, 2] = np.nan
    search = BilevelSearchCV(LogisticRegression(), {"C": (0.1, 10)}, cv=3)
    with pytest.raises(ValueError, match="NaN"):
        search.fit(X, y)
    with pytest.raises(ValueError, match="requires y"):
        search.fit(X)
    with pytest.raises(TypeError, match="unexpected"):
        search.fit(np.nan_to_num(X), y, check_input=True)


# -- scikit-learn's estimator checks (dask and ray: test_distributed.py) ------------
@parametrize_with_checks(
    [
        BilevelSearchCV(LogisticRegression(), {"C": (1e-3, 1e3)}),
        BilevelSearchCV(Ridge(), {"alpha": (1e-3, 1e3)}),
    ]
)
def test_sklearn_compatible_search(estimator, check):
    check(estimator)
