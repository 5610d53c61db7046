"""BilevelSearchCV with one penalty per feature or per group (penalty_groups).

The vector search is the one HOAGLogisticRegression runs; what is checked here
is BilevelSearchCV's side: rows of cv_results_, the choice of the best point,
the refit (scikit-learn cannot fit one C per feature, so the final step is
solved by the engine), and the errors. The references use the identity

    sum_j w_j^2 / (2 C_j)  with X      ==  C = 1 on  X_j * sqrt(C_j)
    sum_j alpha_j w_j^2    with X      ==  alpha = 1 on  X_j / sqrt(alpha_j)

(coefficients ``w_j = sqrt(C_j) v_j``, resp. ``v_j / sqrt(alpha_j)``): one
scikit-learn fit at a scalar penalty on rescaled features.
"""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.base import clone
from sklearn.datasets import load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_selection import SelectKBest
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import PolynomialFeatures, StandardScaler

from skbilevel import BilevelSearchCV, HOAGLogisticRegression
from skbilevel.model_selection import LogisticRegressionAdapter, register_adapter

from ._problems import few_informative

pytestmark = pytest.mark.usefixtures("one_blas_thread")


def _few_informative(scales=False):
    """3 informative features out of 40 (200 rows), where one C per feature
    passes the held-out check (penalty_gain 0.34 on this seed, 0.40 after a
    StandardScaler; it is 0 on many other seeds)."""
    X, y = few_informative(seed=2)
    X, y = X[:200], y[:200]
    if scales:  # features of very different units, for a Pipeline's scaler
        X = X * 10 ** np.random.default_rng(0).uniform(-1, 1, X.shape[1])
    return X, y


def _bands(seed):
    """Ridge data in 3 bands of 10 features: large, small and zero weights."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((150, 30))
    w = np.concatenate([rng.normal(0, 2, 10), rng.normal(0, 0.2, 10), np.zeros(10)])
    y = X @ w + 2 * rng.standard_normal(150) + 5
    return X, y, np.repeat(np.array(["strong", "weak", "null"]), 10)


def _fit(search, X, y, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return search.fit(X, y, **params)


def _logistic_reference(Z, y, C):
    """LogisticRegression at one C_j per feature, fit by scikit-learn."""
    scale = np.sqrt(C)
    clf = LogisticRegression(C=1.0, solver="newton-cholesky", tol=1e-12)
    clf.fit(Z * scale, y)
    return lambda Z_new: clf.predict_proba(Z_new * scale), clf.coef_[0] * scale


@pytest.fixture(scope="module")
def per_feature():
    """BilevelSearchCV and HOAGLogisticRegression, same folds, per feature."""
    X, y = _few_informative()
    cv = StratifiedKFold(5)
    seen = {"hoag": [], "bilevel": []}

    def recorder(name):
        # each record as the search evaluated it, before any re-solve (the
        # scalar stage's records have one lambda)
        return lambda record: seen[name].append((record["lam"].copy(), record["value"]))

    search = BilevelSearchCV(
        LogisticRegression(),
        {"C": (1e-4, 1e4)},
        penalty_groups="features",
        scoring="neg_log_loss",
        cv=cv,
        callback=recorder("bilevel"),
        polish_tol=1e-10,  # refits as tight as the references
    )
    hoag = HOAGLogisticRegression(
        penalty_groups="features", cv=cv, callback=recorder("hoag"), polish_tol=1e-10
    )
    _fit(search, X, y)
    _fit(hoag, X, y)
    return X, y, search, hoag, seen


def test_per_feature_search_takes_the_vector_stage(per_feature):
    _, _, search, _, _ = per_feature
    stages = [record["stage"] for record in search.history_]
    assert stages[0] == "scalar" and "vector" in stages
    assert list(search.cv_results_["outer_stage"]) == stages
    assert len(search.cv_results_["params"]) == search.n_iter_ == len(stages)
    for params in search.cv_results_["params"]:
        assert params["C"].shape == (40,)
    # the held-out halves kept a vector point: it is best, not the metric's pick
    assert search.penalty_gain_ > 0.1
    assert search.cv_results_["outer_stage"][search.best_index_] == "vector"
    C = search.best_params_["C"]
    assert np.ptp(np.log(C)) > 1
    assert C is search.cv_results_["params"][search.best_index_]["C"]


def test_per_feature_refit_equals_scikit_learn_on_rescaled_features(per_feature):
    X, y, search, _, _ = per_feature
    C = search.best_params_["C"]
    predict_proba, coef = _logistic_reference(X, y, C)
    best = search.best_estimator_
    assert type(best) is LogisticRegression and best.C == 1.0  # as given
    assert_allclose(best.coef_[0], coef, atol=2e-6)
    assert_allclose(search.predict_proba(X), predict_proba(X), atol=1e-6)
    assert search.n_features_in_ == 40 and list(search.classes_) == [0, 1]
    # the fold models: the engine's tight solutions at the same point
    for model, (train, _) in zip(
        search.best_fold_estimators_, StratifiedKFold(5).split(X, y)
    ):
        assert model.C == 1.0
        assert_allclose(model.coef_[0], _logistic_reference(X[train], y[train], C)[1],
                        atol=2e-6)  # fmt: skip
        clone(model).fit(X[train], y[train])  # a plain LogisticRegression


def test_both_estimators_run_the_same_vector_search(per_feature):
    _, _, search, hoag, seen = per_feature
    ours, theirs = seen["hoag"], seen["bilevel"]
    assert len(ours) == len(theirs) == hoag.n_iter_ == search.n_iter_
    assert [r[0].size for r in ours] == [r[0].size for r in theirs]
    assert {r[0].size for r in ours} == {1, 40}
    for (lam, value), (lam_bilevel, value_bilevel) in zip(ours, theirs):
        assert_allclose(lam, lam_bilevel, rtol=1e-10)
        assert value == pytest.approx(value_bilevel, rel=1e-9)
    assert search.penalty_gain_ == pytest.approx(hoag.penalty_gain_, rel=1e-10)
    assert_allclose(search.best_params_["C"], hoag.C_, rtol=1e-10)
    assert_allclose(search.best_estimator_.coef_, hoag.coef_, atol=1e-9)
    assert_allclose(search.best_estimator_.intercept_, hoag.intercept_, atol=1e-9)


def test_groups_of_ridge_refit_equals_scikit_learn_on_rescaled_features():
    X, y, labels = _bands(seed=0)
    search = _fit(
        BilevelSearchCV(Ridge(), {"alpha": (1e-3, 1e5)}, penalty_groups=labels),
        X,
        y,
    )
    assert search.penalty_gain_ > 0.1
    alpha = search.best_params_["alpha"]
    assert alpha.shape == (3,)  # sorted labels: null, strong, weak
    assert alpha[1] < alpha[2] and alpha[1] < alpha[0]
    per_feature = alpha[np.unique(labels, return_inverse=True)[1]]
    scale = 1 / np.sqrt(per_feature)
    reference = Ridge(alpha=1.0, solver="cholesky").fit(X * scale, y)
    assert search.best_estimator_.alpha == 1.0
    assert_allclose(search.best_estimator_.coef_, reference.coef_ * scale, atol=1e-6)
    assert_allclose(search.predict(X), reference.predict(X * scale), atol=1e-6)


def test_single_value_kept_is_refit_by_scikit_learn():
    X, y, labels = _bands(seed=1)  # the held-out halves keep one alpha here
    search = _fit(
        BilevelSearchCV(
            Ridge(), {"alpha": (1e-3, 1e5)}, penalty_groups=labels, cv=KFold(5)
        ),
        X,
        y,
    )
    assert search.penalty_gain_ == 0.0
    assert search.cv_results_["outer_stage"][search.best_index_] == "scalar"
    alpha = search.best_params_["alpha"]
    assert alpha.shape == (3,) and np.all(alpha == alpha[0])
    best = search.best_estimator_
    assert isinstance(best.alpha, float) and best.alpha == alpha[0]
    assert_allclose(best.coef_, Ridge(alpha=alpha[0]).fit(X, y).coef_, rtol=1e-10)


def test_a_callable_refit_chooses_among_all_rows_and_is_resolved():
    # The callable picks the first bracket point, which the search never
    # re-solved: its folds are re-solved before it is declared best.
    X, y, labels = _bands(seed=1)
    search = _fit(
        BilevelSearchCV(
            Ridge(),
            {"alpha": (1e-3, 1e5)},
            penalty_groups=labels,
            cv=KFold(5),
            refit=lambda results: 0,
        ),
        X,
        y,
    )
    assert search.best_index_ == 0
    alpha = float(search.best_params_["alpha"][0])
    assert search.best_estimator_.alpha == alpha
    for model, (train, _) in zip(search.best_fold_estimators_, KFold(5).split(X)):
        reference = Ridge(alpha=alpha).fit(X[train], y[train])
        assert_allclose(model.coef_, reference.coef_, rtol=1e-6, atol=1e-8)


def _last_row(results):
    return len(results["params"]) - 1


@pytest.mark.parametrize("case", ["ridge-sample-weight", "logistic-multinomial"])
def test_refit_of_any_vector_point_solves_the_estimators_problem(case):
    # A callable refit picks the last point of the descent, kept or not: the
    # engine refit must be the estimator's own problem at those penalties
    # (sample weights, class weights, the multinomial parametrization).
    rng = np.random.default_rng(0)
    if case == "ridge-sample-weight":
        X, y, labels = _bands(seed=1)
        estimator, name, groups = Ridge(), "alpha", labels
        fit_params = {"sample_weight": rng.uniform(0.2, 3, y.size)}
    else:
        X, y = load_iris(return_X_y=True)
        estimator, name, groups = LogisticRegression(class_weight={0: 2}), "C", None
        fit_params = {}
    search = _fit(
        BilevelSearchCV(
            estimator,
            {name: (1e-2, 1e2)},
            penalty_groups="features" if groups is None else groups,
            refit=_last_row,
            polish_tol=1e-10,
        ),
        X,
        y,
        **fit_params,
    )
    assert search.cv_results_["outer_stage"][search.best_index_] == "vector"
    value = search.best_params_[name]
    assert np.ptp(value) > 0
    if groups is not None:
        value = value[np.unique(groups, return_inverse=True)[1]]
    scale = np.sqrt(value) if name == "C" else 1 / np.sqrt(value)
    reference = clone(estimator).set_params(**{name: 1.0})
    if name == "C":
        reference.set_params(solver="newton-cholesky", tol=1e-12)
    reference.fit(X * scale, y, **fit_params)
    best = search.best_estimator_
    assert getattr(best, name) == 1.0
    # iris is nearly separable: its largest weights are loosely determined
    assert_allclose(best.coef_, reference.coef_ * scale, rtol=1e-5, atol=1e-5)
    assert_allclose(best.intercept_, reference.intercept_, rtol=1e-5, atol=1e-5)
    assert_allclose(search.predict(X), reference.predict(X * scale), atol=1e-6)


def test_pipeline_penalties_apply_to_the_scaled_features():
    # The last point of the descent (a callable refit: kept or not by the
    # held-out check) is refit on the scaler's output, as in each fold.
    X, y = _few_informative(scales=True)
    pipe = make_pipeline(StandardScaler(), LogisticRegression())
    search = _fit(
        BilevelSearchCV(
            pipe,
            {"logisticregression__C": (1e-4, 1e4)},
            penalty_groups="features",
            cv=StratifiedKFold(5),
            refit=_last_row,
            polish_tol=1e-10,
        ),
        X,
        y,
    )
    C = search.best_params_["logisticregression__C"]
    assert np.ptp(np.log(C)) > 0.1  # a many-penalty point
    assert C.shape == (40,)
    Z = StandardScaler().fit_transform(X)
    predict_proba, coef = _logistic_reference(Z, y, C)
    final = search.best_estimator_[-1]
    assert final.C == 1.0 and search.best_estimator_[0].n_features_in_ == 40
    assert_allclose(final.coef_[0], coef, atol=2e-6)
    assert_allclose(search.predict_proba(X), predict_proba(Z), atol=1e-6)


def test_refit_false_keeps_the_search_and_its_gain():
    X, y, labels = _bands(seed=0)
    search = _fit(
        BilevelSearchCV(
            Ridge(), {"alpha": (1e-3, 1e5)}, penalty_groups=labels, refit=False
        ),
        X,
        y,
    )
    assert not hasattr(search, "best_estimator_")
    assert search.penalty_gain_ > 0.1
    assert search.best_params_["alpha"].shape == (3,)
    assert len(search.best_fold_estimators_) == 5
    assert search.best_fold_estimators_[0].alpha == 1.0


def test_penalty_gain_is_none_without_penalty_groups(small_classification):
    X, y = small_classification
    search = _fit(BilevelSearchCV(LogisticRegression(), {"C": (1e-2, 1e2)}), X, y)
    assert search.penalty_gain_ is None


def test_vector_bounds_give_one_box_per_group():
    X, y, labels = _bands(seed=0)
    low = np.array([1e-3, 1e-3, 1.0])  # sorted labels: null, strong, weak
    search = _fit(
        BilevelSearchCV(Ridge(), {"alpha": (low, 1e5)}, penalty_groups=labels),
        X,
        y,
    )
    for params in search.cv_results_["params"]:
        assert params["alpha"][2] >= 1.0 * (1 - 1e-12)


class _NoVectorAdapter(LogisticRegressionAdapter):
    per_feature = False


class _NoVectorLogistic(LogisticRegression):
    pass


register_adapter(_NoVectorLogistic, _NoVectorAdapter())


@pytest.mark.parametrize(
    "estimator, param_space, penalty_groups, options, match",
    [
        (
            make_pipeline(PolynomialFeatures(2), LogisticRegression()),
            {"logisticregression__C": (1e-2, 1e2)},
            np.arange(6),  # the data have 6 features, the final step 28
            {},
            "6 group labels, but LogisticRegression sees 28 features",
        ),
        (
            LogisticRegression(),
            {"C": (1e-2, 1e2)},
            [0.0, 1.0, np.nan, 1.0, 0.0, 1.0],
            {},
            "NaN or infinite labels",
        ),
        (
            LogisticRegression(),
            {"C": (1e-2, 1e2)},
            ["a"] * 6,
            {},
            "single group",
        ),
        (
            LogisticRegression(),
            {"C": (1e-2, 1e2)},
            [[0, 1, 2, 0, 1, 2]],
            {},
            "1-d array of group labels",
        ),
        (
            _NoVectorLogistic(),
            {"C": (1e-2, 1e2)},
            "features",
            {},
            "_NoVectorAdapter",
        ),
        (
            Ridge(),
            {"alpha": (1e-2, 1e2)},
            [0, 0, 1, 1, 2, 2],
            {"path": "closed-form"},
            "penalty_groups needs the iterative search",
        ),
        (
            LogisticRegression(),
            {"C": ([1e-2, 1e-2], 1e2)},
            [0, 0, 1, 1, 2, 2],
            {},
            r"bounds of 2 values, but penalty_groups gives 3 groups",
        ),
        (
            make_pipeline(SelectKBest(k=3), LogisticRegression()),
            {"logisticregression__C": (1e-2, 1e2)},
            "features",
            {"X": "noise"},  # the 3 best noise features differ between folds
            "same features in every fold",
        ),
        (
            make_pipeline(SelectKBest(k=1), LogisticRegression()),
            {"logisticregression__C": (1e-2, 1e2)},
            "features",
            {"X": "y"},  # the feature close to y is selected in every fold
            "single feature",
        ),
    ],
)
def test_unsupported_penalty_groups_raise_clear_errors(
    small_classification, estimator, param_space, penalty_groups, options, match
):
    X, y = small_classification
    options = dict(options)
    data = options.pop("X", None)
    if data == "noise":
        X = np.random.default_rng(0).standard_normal((y.size, 20))
    elif data == "y":
        X = np.column_stack([y + 0.1 * X[:, 0], X[:, 1:]])
    search = BilevelSearchCV(
        estimator, param_space, penalty_groups=penalty_groups, **options
    )
    with pytest.raises(ValueError, match=match):
        search.fit(X, y)


def test_per_output_bounds_cannot_be_combined_with_groups():
    X, y, labels = _bands(seed=0)
    Y = np.column_stack([y, -y])
    search = BilevelSearchCV(
        Ridge(), {"alpha": ([1e-3, 1e-2], 1e5)}, penalty_groups=labels
    )
    with pytest.raises(ValueError, match="One value per output .2. and per group"):
        search.fit(X, Y)
