"""The refit of a closed-form ridge search from the products its folds shared
(skbilevel/model_selection/_ridge_refit.py, SharedRows.solution)."""

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose
from sklearn.base import clone
from sklearn.datasets import make_regression
from sklearn.linear_model import Ridge
from sklearn.model_selection import KFold, ShuffleSplit
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError

from skbilevel import BilevelSearchCV
from skbilevel.model_selection import RidgeAdapter, _adapters
from skbilevel.search import _ridge_rows


@pytest.fixture
def ridge_fits(monkeypatch):
    """Counts the calls of ``Ridge.fit`` (the refit's fallback)."""
    calls = []
    fit = Ridge.fit

    def counted(self, *args, **kwargs):
        calls.append(type(self))
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(Ridge, "fit", counted)
    return calls


def _data(shape, n_targets, offset=3.0, seed=0):
    X, y = make_regression(
        *shape, n_targets=max(n_targets, 1), noise=5.0, random_state=seed
    )
    X = X + offset  # an intercept to fit
    if n_targets == 0:
        y = y.ravel()
    elif n_targets == 1:
        y = y.reshape(-1, 1)
    return X, y + 10.0


def _fitted_attributes(estimator):
    return sorted(k for k in vars(estimator) if k.endswith("_"))


@pytest.fixture(params=["shared", "own"])
def sharing(request, monkeypatch):
    """The folds take their products from those of all rows ("shared": as
    on large data) or compute their own ("own": small data, the refit's
    products one pass over all rows)."""
    floor = 0 if request.param == "shared" else 2**62
    monkeypatch.setattr(_ridge_rows, "_SHARE_WORK", floor)
    return request.param


@pytest.mark.parametrize("n_targets", [0, 1, 3], ids=["1-D y", "(n, 1)", "3 targets"])
@pytest.mark.parametrize("weighted", [False, True], ids=["", "weights"])
@pytest.mark.parametrize("fit_intercept", [True, False], ids=["intercept", "none"])
@pytest.mark.parametrize("shape", [(120, 9), (40, 70)], ids=["gram", "kernel"])
def test_refit_from_the_shared_products_is_ridges_fit(
    shape, fit_intercept, weighted, n_targets, ridge_fits, sharing
):
    # The refit takes no pass over the data when the folds shared the
    # products of all rows, one when they had their own (small data), and
    # never calls Ridge.fit; best_estimator_ is what Ridge(alpha=best).fit
    # gives: the same values, shapes, types and fitted attributes.
    X, y = _data(shape, n_targets)
    weights = np.random.default_rng(1).uniform(0.2, 3.0, len(X)) if weighted else None
    search = BilevelSearchCV(
        Ridge(fit_intercept=fit_intercept),
        {"alpha": (1e-3, 1e3)},
        cv=KFold(5, shuffle=True, random_state=0),
    ).fit(X, y, sample_weight=weights)
    assert ridge_fits == []
    ours = search.best_estimator_
    reference = Ridge(alpha=search.best_params_["alpha"], fit_intercept=fit_intercept)
    reference.fit(X, y, sample_weight=weights)
    assert _fitted_attributes(ours) == _fitted_attributes(reference)
    assert ours.coef_.shape == reference.coef_.shape
    assert ours.coef_.dtype == reference.coef_.dtype
    assert type(ours.intercept_) is type(reference.intercept_)
    assert np.shape(ours.intercept_) == np.shape(reference.intercept_)
    assert (ours.solver_, ours.n_iter_) == (reference.solver_, reference.n_iter_)
    assert_allclose(ours.coef_, reference.coef_, rtol=1e-8, atol=1e-10)
    assert_allclose(ours.intercept_, reference.intercept_, rtol=1e-10, atol=1e-9)
    assert_allclose(ours.predict(X), reference.predict(X), rtol=1e-9)


@pytest.mark.parametrize("shape", [(120, 9), (40, 70)], ids=["gram", "kernel"])
def test_refit_of_one_alpha_per_target(shape, ridge_fits, sharing):
    rng = np.random.default_rng(0)
    X = rng.normal(size=shape) + 3.0
    # targets of very different noise levels: alphas of their own
    noise = np.array([0.1, 10.0, 1.0]) * np.sqrt(shape[1])
    Y = X @ rng.normal(size=(shape[1], 3)) + noise * rng.normal(size=(shape[0], 3))
    bounds = (np.full(3, 1e-3), np.full(3, 1e4))
    search = BilevelSearchCV(Ridge(), {"alpha": bounds}, cv=5).fit(X, Y)
    assert ridge_fits == []
    alphas = search.best_params_["alpha"]
    assert np.ptp(np.log(alphas)) > 1.0  # targets of their own alphas
    reference = Ridge(alpha=alphas).fit(X, Y)
    assert_allclose(search.best_estimator_.coef_, reference.coef_, rtol=1e-8)
    assert_allclose(search.best_estimator_.intercept_, reference.intercept_, rtol=1e-9)


def test_float32_data_refit_in_float32(ridge_fits):
    X, y = _data((150, 6), 0)
    X = X.astype(np.float32)
    search = BilevelSearchCV(Ridge(), {"alpha": (1e-3, 1e3)}, cv=5).fit(X, y)
    assert ridge_fits == []
    reference = Ridge(alpha=search.best_params_["alpha"]).fit(X, y)
    ours = search.best_estimator_
    assert ours.coef_.dtype == reference.coef_.dtype == np.float32
    assert type(ours.intercept_) is type(reference.intercept_)
    # float32 round-off of scikit-learn's solve; ours is the float64 solution
    assert_allclose(ours.coef_, reference.coef_, rtol=1e-4)


def test_feature_names_and_verbose_report(capsys, ridge_fits):
    pd = pytest.importorskip("pandas")
    X, y = _data((100, 4), 0)
    frame = pd.DataFrame(X, columns=list("abcd"))
    search = BilevelSearchCV(Ridge(), {"alpha": (1e-3, 1e3)}, cv=5, verbose=1)
    search.fit(frame, y)
    assert ridge_fits == []
    assert list(search.best_estimator_.feature_names_in_) == list("abcd")
    assert search.best_estimator_.n_features_in_ == 4
    assert "Refit from the products the folds shared" in capsys.readouterr().out


class _OwnRidge(Ridge):
    pass


@pytest.mark.parametrize(
    "estimator",
    [
        _OwnRidge(),  # a subclass may fit otherwise
        Ridge(solver="svd"),  # solver_ would say "svd"
        Ridge(solver="lsqr", tol=1e-10),  # an iterative solver's own answer
        make_pipeline(StandardScaler(), Ridge()),
    ],
    ids=["subclass", "svd", "lsqr", "pipeline"],
)
def test_other_estimators_are_refit_by_their_fit(estimator, ridge_fits, monkeypatch):
    monkeypatch.setitem(_adapters._REGISTRY, _OwnRidge, RidgeAdapter())
    X, y = _data((120, 9), 0)
    name = "ridge__alpha" if hasattr(estimator, "steps") else "alpha"
    search = BilevelSearchCV(estimator, {name: (1e-3, 1e3)}, cv=5).fit(X, y)
    assert len(ridge_fits) == 1  # the fallback: Ridge.fit, once
    reference = clone(estimator).set_params(**search.best_params_).fit(X, y)
    assert_allclose(search.best_estimator_.predict(X), reference.predict(X))


def test_rows_that_train_no_fold_are_refit_by_fit(ridge_fits):
    # The folds' products leave out the last 30 rows: they are not the data's.
    X, y = _data((150, 6), 0)
    splits = [(train, test) for train, test in KFold(5).split(X[:120])]
    search = BilevelSearchCV(Ridge(), {"alpha": (1e-3, 1e3)}, cv=splits).fit(X, y)
    assert len(ridge_fits) == 1
    reference = Ridge(alpha=search.best_params_["alpha"]).fit(X, y)
    assert_allclose(search.best_estimator_.coef_, reference.coef_, rtol=1e-12)


@pytest.mark.parametrize("shape", [(150, 6), (40, 70)], ids=["gram", "kernel"])
def test_overlapping_validation_folds_refit_exactly(shape, ridge_fits):
    # ShuffleSplit: validation sets overlap, so the Gram of all rows is not
    # the sum of the left-out blocks' (each fold subtracts its own).
    X, y = _data(shape, 0)
    cv = ShuffleSplit(4, test_size=0.3, random_state=0)
    search = BilevelSearchCV(Ridge(), {"alpha": (1e-3, 1e3)}, cv=cv).fit(X, y)
    assert ridge_fits == []
    reference = Ridge(alpha=search.best_params_["alpha"]).fit(X, y)
    assert_allclose(search.best_estimator_.coef_, reference.coef_, rtol=1e-8)


def test_sparse_data_and_invalid_parameters(ridge_fits):
    X, y = _data((120, 9), 0)
    search = BilevelSearchCV(Ridge(), {"alpha": (1e-3, 1e3)}, cv=5)
    search.fit(sp.csr_matrix(X), y)
    assert len(ridge_fits) == 1
    # the refit validates the estimator's parameters as its fit would (the
    # search itself does not read max_iter)
    ridge_fits.clear()
    bad = BilevelSearchCV(Ridge(max_iter=-5), {"alpha": (1e-3, 1e3)}, cv=5)
    with pytest.raises(InvalidParameterError, match="max_iter"):
        bad.fit(X, y)
    assert ridge_fits == []


def test_a_system_singular_to_round_off_is_refit_by_fit(ridge_fits, monkeypatch):
    # Cholesky fails where Ridge.fit would switch to its SVD solver: the
    # refit leaves it to Ridge.fit instead of failing after the search.
    from skbilevel.search import _ridge_rows

    def singular(system, right, alpha):
        raise np.linalg.LinAlgError("not positive definite")

    monkeypatch.setattr(_ridge_rows, "_penalized_solve", singular)
    X, y = _data((120, 9), 0)
    search = BilevelSearchCV(Ridge(), {"alpha": (1e-3, 1e3)}, cv=5).fit(X, y)
    assert len(ridge_fits) == 1
    reference = Ridge(alpha=search.best_params_["alpha"]).fit(X, y)
    assert_allclose(search.best_estimator_.coef_, reference.coef_)


@pytest.mark.parametrize("refit", [True, False])
def test_the_products_of_all_rows_are_released_after_the_search(refit, monkeypatch):
    # the kernel (or Gram totals) of all rows is not held past fit, refit or
    # not: the search's rows are dropped once scoring no longer needs them
    from skbilevel.search._ridge import RidgePathSearch

    searches = []
    run = RidgePathSearch.run

    def spy(self, *args, **kwargs):
        # the search holds the products of all rows when it starts
        assert self.rows is not None
        searches.append(self)
        return run(self, *args, **kwargs)

    monkeypatch.setattr(RidgePathSearch, "run", spy)
    X, y = make_regression(40, 60, noise=1.0, random_state=0)
    BilevelSearchCV(Ridge(), {"alpha": (1e-3, 1e3)}, cv=KFold(4), refit=refit).fit(X, y)
    (search,) = searches
    assert search.rows is None
