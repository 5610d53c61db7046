"""KFoldRidgeCV: RidgeCV's interface, exact K-fold cross-validation.

Checked against independent computations: scikit-learn's cross-validated
MSE of ``Ridge`` on a 201-point grid, ``Ridge.fit`` at the chosen alpha, and
``BilevelSearchCV(Ridge())`` (the same search under the other estimator).
"""

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose
from sklearn.datasets import load_diabetes, make_regression
from sklearn.linear_model import Ridge
from sklearn.model_selection import KFold, cross_val_score
from sklearn.utils._param_validation import InvalidParameterError

from skbilevel import BilevelSearchCV, KFoldRidgeCV
from skbilevel.search import _ridge_rows

GRID = np.logspace(-4, 4, 201)
STEP = np.log(GRID[1] / GRID[0])


def _cv_mse(X, y, alpha, splits, sample_weight=None, fit_intercept=True):
    """scikit-learn's K-fold MSE of Ridge(alpha) (weighted by the validation
    rows' weights when given), per target."""
    errors = []
    for train, test in splits:
        weight = None if sample_weight is None else sample_weight[train]
        model = Ridge(alpha=alpha, fit_intercept=fit_intercept)
        model.fit(X[train], y[train], sample_weight=weight)
        squared = (y[test] - model.predict(X[test])) ** 2
        weight = None if sample_weight is None else sample_weight[test]
        errors.append(np.average(squared, axis=0, weights=weight))
    return np.mean(errors, axis=0)


@pytest.fixture(params=["shared", "own"])
def sharing(request, monkeypatch):
    """Products of all rows shared by the folds (large data) or each fold's
    own (small data)."""
    floor = 0 if request.param == "shared" else 2**62
    monkeypatch.setattr(_ridge_rows, "_SHARE_WORK", floor)
    return request.param


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_alpha_is_the_fine_grids_argmin_and_the_refit_ridges(fit_intercept, sharing):
    X, y = load_diabetes(return_X_y=True)
    splits = list(KFold(5).split(X))
    model = KFoldRidgeCV(cv=splits, fit_intercept=fit_intercept).fit(X, y)
    curve = [
        cross_val_score(
            Ridge(alpha=a, fit_intercept=fit_intercept),
            X,
            y,
            cv=splits,
            scoring="neg_mean_squared_error",
        ).mean()
        for a in GRID
    ]
    best = GRID[int(np.argmax(curve))]
    assert abs(np.log(model.alpha_ / best)) <= STEP
    # at least as good as the grid's best, and best_score_ is that CV MSE
    assert model.best_score_ >= max(curve) - 1e-9 * abs(max(curve))
    assert_allclose(
        -model.best_score_,
        _cv_mse(X, y, model.alpha_, splits, fit_intercept=fit_intercept),
        rtol=1e-10,
    )
    reference = Ridge(alpha=model.alpha_, fit_intercept=fit_intercept).fit(X, y)
    assert_allclose(model.coef_, reference.coef_, rtol=1e-8)
    assert_allclose(model.intercept_, reference.intercept_, rtol=1e-10, atol=1e-9)
    assert type(model.alpha_) is float
    assert np.shape(model.intercept_) == np.shape(reference.intercept_)


@pytest.mark.parametrize("shape", [(150, 8), (60, 90)], ids=["gram", "kernel"])
def test_each_target_gets_its_own_optimum(shape, sharing):
    rng = np.random.default_rng(0)
    X = rng.normal(size=shape) + 2.0
    noise = np.array([0.1, 3.0, 30.0])
    Y = X @ rng.normal(size=(shape[1], 3)) + noise * rng.normal(size=(shape[0], 3))
    splits = list(KFold(5, shuffle=True, random_state=0).split(X))
    model = KFoldRidgeCV(cv=splits, alpha_per_target=True).fit(X, Y)
    assert model.alpha_.shape == (3,)
    curves = np.array([_cv_mse(X, Y, a, splits) for a in GRID])  # (201, 3)
    best = GRID[np.argmin(curves, axis=0)]
    assert np.all(np.abs(np.log(model.alpha_ / best)) <= STEP)
    assert np.ptp(np.log(model.alpha_)) > 1.0  # targets of their own alphas
    assert_allclose(-model.best_score_, _cv_mse(X, Y, model.alpha_, splits), rtol=1e-9)
    reference = Ridge(alpha=model.alpha_).fit(X, Y)
    assert_allclose(model.coef_, reference.coef_, rtol=1e-7, atol=1e-10)
    assert_allclose(model.intercept_, reference.intercept_, rtol=1e-9)
    # one alpha for all: the mean over targets, a float best_score_
    shared = KFoldRidgeCV(cv=splits).fit(X, Y)
    assert type(shared.alpha_) is float
    assert_allclose(
        -shared.best_score_, _cv_mse(X, Y, shared.alpha_, splits).mean(), rtol=1e-9
    )


def test_sample_weights_enter_the_fit_and_the_validation_error(sharing):
    X, y = make_regression(120, 6, noise=10.0, random_state=0)
    weights = np.random.default_rng(1).uniform(0.2, 3.0, len(X))
    splits = list(KFold(4, shuffle=True, random_state=1).split(X))
    model = KFoldRidgeCV(cv=splits).fit(X, y, sample_weight=weights)
    curve = [_cv_mse(X, y, a, splits, weights) for a in GRID]
    assert abs(np.log(model.alpha_ / GRID[int(np.argmin(curve))])) <= STEP
    assert_allclose(
        -model.best_score_, _cv_mse(X, y, model.alpha_, splits, weights), rtol=1e-10
    )
    reference = Ridge(alpha=model.alpha_).fit(X, y, sample_weight=weights)
    assert_allclose(model.coef_, reference.coef_, rtol=1e-8)
    # a scalar weight is every sample's: the unweighted problem
    scalar = KFoldRidgeCV(cv=splits).fit(X, y, sample_weight=2.0)
    plain = KFoldRidgeCV(cv=splits).fit(X, y)
    assert scalar.alpha_ == pytest.approx(plain.alpha_, rel=1e-9)


def test_same_search_as_bilevel_search_cv():
    X, y = make_regression(200, 12, noise=20.0, random_state=3)
    splits = list(KFold(5, shuffle=True, random_state=0).split(X))
    ours = KFoldRidgeCV(cv=splits).fit(X, y)
    search = BilevelSearchCV(Ridge(), {"alpha": (1e-4, 1e4)}, cv=splits).fit(X, y)
    assert ours.alpha_ == search.best_params_["alpha"]
    assert len(ours.history_) == len(search.history_)
    assert_allclose(ours.coef_, search.best_estimator_.coef_, rtol=1e-12)
    assert ours.n_splits_ == 5


def test_dtypes_shapes_and_feature_names():
    pd = pytest.importorskip("pandas")
    X, y = make_regression(80, 5, noise=1.0, random_state=0)
    model = KFoldRidgeCV().fit(X.astype(np.float32), y)
    assert model.coef_.dtype == np.float32
    column = KFoldRidgeCV().fit(X, y.reshape(-1, 1))
    assert column.coef_.shape == (1, 5) and column.intercept_.shape == (1,)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(5)])
    named = KFoldRidgeCV().fit(frame, y)
    assert list(named.feature_names_in_) == list(frame.columns)
    assert_allclose(
        named.predict(frame), Ridge(alpha=named.alpha_).fit(X, y).predict(X)
    )


def test_sparse_data(capsys):
    # More samples than features per fold: the closed form on the sparse
    # matrix, the dense data's result.
    X, y = make_regression(150, 8, noise=5.0, random_state=0)
    X[X < 0.3] = 0.0
    dense = KFoldRidgeCV().fit(X, y)
    sparse = KFoldRidgeCV().fit(sp.csr_matrix(X), y)
    assert sparse.alpha_ == pytest.approx(dense.alpha_, rel=1e-8)
    assert_allclose(sparse.coef_, dense.coef_, rtol=1e-7)
    # More features than a fold's samples: the gradient search, which says so.
    X, y = make_regression(40, 60, noise=5.0, random_state=0)
    X[X < 0.5] = 0.0
    model = KFoldRidgeCV(verbose=1).fit(sp.csr_matrix(X), y)
    assert "Gradient search: sparse data with more features" in capsys.readouterr().out
    splits = list(KFold(5).split(X))
    curve = [_cv_mse(X, y, a, splits) for a in GRID]
    # the iterative search is exact to its tolerance: within 1% of the
    # grid's best CV error
    assert -model.best_score_ <= 1.01 * min(curve)
    assert_allclose(-model.best_score_, _cv_mse(X, y, model.alpha_, splits), rtol=1e-6)
    reference = Ridge(alpha=model.alpha_).fit(sp.csr_matrix(X), y)
    assert_allclose(model.coef_, reference.coef_, rtol=1e-6, atol=1e-10)


def test_callback_stops_the_search():
    X, y = load_diabetes(return_X_y=True)
    seen = []

    def stop_after_three(record):
        seen.append(record["alpha"][0])
        return len(seen) == 3

    model = KFoldRidgeCV(callback=stop_after_three).fit(X, y)
    assert len(model.history_) == 3
    # the best of the points seen, refit
    assert model.alpha_ in seen
    reference = Ridge(alpha=model.alpha_).fit(X, y)
    assert_allclose(model.coef_, reference.coef_, rtol=1e-8)


@pytest.mark.parametrize(
    "bounds, error, match",
    [
        ((1.0,), ValueError, "pair of positive numbers"),
        ((10.0, 1.0), ValueError, "0 < low < high"),
        ((0.0, 1.0), ValueError, "0 < low < high"),
        ((1e-3, np.inf), ValueError, "finite"),
        (("a", 1.0), TypeError, "with a str"),
        ((None, 1.0), TypeError, "with a NoneType"),
    ],
)
def test_bad_alpha_bounds(bounds, error, match):
    X, y = load_diabetes(return_X_y=True)
    with pytest.raises(error, match=match):
        KFoldRidgeCV(alpha_bounds=bounds).fit(X, y)


def test_bad_input():
    X, y = load_diabetes(return_X_y=True)
    with pytest.raises(ValueError, match="requires y to be passed"):
        KFoldRidgeCV().fit(X, None)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        KFoldRidgeCV().fit(X, y[:-1])
    with pytest.raises(ValueError, match="Negative values in data passed"):
        KFoldRidgeCV().fit(X, y, sample_weight=-np.ones(len(y)))
    with pytest.raises(ValueError, match="y contains NaN|Input y contains NaN"):
        KFoldRidgeCV().fit(X, np.where(y > 100, np.nan, y))
    with pytest.raises(InvalidParameterError, match="cv"):
        KFoldRidgeCV(cv="five").fit(X, y)
    X_before, y_before = X.copy(), y.copy()
    KFoldRidgeCV().fit(X, y, sample_weight=np.ones(len(y)))
    assert_allclose(X, X_before)
    assert_allclose(y, y_before)
