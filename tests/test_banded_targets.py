"""One ridge alpha per target and per feature band (skbilevel/search/_banded*.py)."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_selection import SelectKBest
from sklearn.linear_model import LogisticRegression, Ridge, RidgeClassifier
from sklearn.model_selection import KFold
from sklearn.pipeline import make_pipeline

from skbilevel import BilevelSearchCV
from skbilevel.model_selection import RidgeAdapter
from skbilevel.objectives import L2Penalty
from skbilevel.search import engine_folds, fold_weights, materialize_folds
from skbilevel.search._banded_fold import BandedFold

BANDS = np.array([0, 0, 0, 1, 1, 2, 2, 2])


def _data(seed=0, n=60, n_targets=3):
    """Targets that each live in their own bands (and an offset)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, BANDS.size))
    band_weights = np.array([[1.0, 0.0, 0.1], [0.0, 1.0, 0.0], [0.3, 0.3, 1.0]])
    coef = rng.standard_normal((BANDS.size, n_targets))
    coef *= band_weights[:n_targets].T[BANDS]
    Y = X @ coef + 0.7 * rng.standard_normal((n, n_targets)) + 5.0
    return X, Y


def _bounds(n_targets, low=1e-3, high=1e4):
    shape = (n_targets, np.unique(BANDS).size)
    return {"alpha": (np.full(shape, low), np.full(shape, high))}


def _ridge_on_rescaled(X, y, band_alpha, weight=None, fit_intercept=True, bands=BANDS):
    """scikit-learn's Ridge with penalty ``band_alpha[b]`` on band ``b`` (each
    feature's band in ``bands``): Ridge at alpha=1 on columns divided by
    ``sqrt(alpha_b)``, its coefficients divided back."""
    scale = 1.0 / np.sqrt(band_alpha[bands])
    model = Ridge(alpha=1.0, solver="cholesky", fit_intercept=fit_intercept)
    model.fit(X * scale, y, sample_weight=weight)
    return model.coef_ * scale, model.intercept_


def _direct_cv_losses(X, Y, splits, lam, weight=None, fit_intercept=True):
    """Each fold's half weighted mean squared validation error of each target
    (the search's fold loss), from Ridge fits at ``exp(lam[t])``."""
    out = np.zeros((len(splits), Y.shape[1]))
    for k, (train, test) in enumerate(splits):
        s_train = None if weight is None else weight[train]
        s_test = np.ones(len(test)) if weight is None else weight[test]
        for t in range(Y.shape[1]):
            coef, intercept = _ridge_on_rescaled(
                X[train], Y[train, t], np.exp(lam[t]), s_train, fit_intercept
            )
            residual = X[test] @ coef + intercept - Y[test, t]
            # the engine's outer scale for Ridge: 2 / n_targets
            out[k, t] = np.sum(s_test * residual**2) / s_test.sum() / Y.shape[1]
    return out


def _fold(X, Y, splits, weight, fit_intercept, k=0):
    encoding = RidgeAdapter().encode_targets(Ridge(fit_intercept=fit_intercept), Y)
    data = materialize_folds(X, Y, splits)
    folds = engine_folds(
        data,
        encoding,
        fold_weights(data, Y, weight, lambda y_train, w: w),
        penalty=lambda p: L2Penalty.per_output(p, Y.shape[1]),
        fit_intercept=fit_intercept,
    )
    return BandedFold(folds[k], BANDS)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_fold_curve_and_band_derivatives(weighted, fit_intercept):
    """A candidate's CV loss equals scikit-learn's Ridge on rescaled columns;
    its gradient and Hessian in log alpha_tb equal finite differences."""
    X, Y = _data()
    weight = np.random.default_rng(1).uniform(0.5, 2.0, len(X)) if weighted else None
    splits = list(KFold(3, shuffle=True, random_state=0).split(X))
    fold = _fold(X, Y, splits, weight, fit_intercept)
    log_weights = np.array([0.4, -1.5, 0.8])
    alpha = np.array([3.0, 0.4, 12.0])
    lam = np.log(alpha)[:, None] - log_weights[None, :]  # log alpha_tb
    candidate = fold.candidate(log_weights)

    def direct(lam):
        return _direct_cv_losses(X, Y, splits[:1], lam, weight, fit_intercept)[0]

    values = candidate.curve(alpha[None, :])[0][0]
    assert_allclose(values, direct(lam), rtol=1e-9)
    targets = np.arange(Y.shape[1])
    grad, hess = candidate.band_derivatives(alpha, targets)
    eps = 1e-5
    for b in range(3):
        step = np.zeros(3)
        step[b] = eps
        # against the direct computation
        numeric = (direct(lam + step) - direct(lam - step)) / (2 * eps)
        assert_allclose(grad[:, b], numeric, rtol=1e-5, atol=1e-9)
        # the Hessian against differences of the exact gradient (raising
        # lambda_b by eps lowers the band's log-weight by eps)
        up = fold.candidate(log_weights - step).band_derivatives(alpha, targets)[0]
        down = fold.candidate(log_weights + step).band_derivatives(alpha, targets)[0]
        assert_allclose(hess[:, :, b], (up - down) / (2 * eps), rtol=1e-5, atol=1e-9)


def _search(**params):
    return BilevelSearchCV(
        Ridge(),
        params.pop("param_space", _bounds(3)),
        penalty_groups=params.pop("penalty_groups", BANDS),
        cv=params.pop("cv", KFold(3, shuffle=True, random_state=0)),
        **params,
    )


def test_each_target_is_at_least_as_good_as_a_grid_of_band_weights():
    """Each target's chosen band alphas reach, on its CV loss, the best of a
    brute-force grid over its band weights (9 x 9 relative weights, 25
    alphas each), within 1% (the search stops after 10 band weightings)."""
    X, Y = _data(seed=2)
    cv = KFold(3, shuffle=True, random_state=0)
    splits = list(cv.split(X))
    search = _search(cv=splits).fit(X, Y)
    lam = np.log(search.best_params_["alpha"])
    chosen = _direct_cv_losses(X, Y, splits, lam).mean(axis=0)
    # the brute-force grid, by the normal equations of every fold
    grid = np.linspace(-6.0, 6.0, 9)
    alphas = np.log(np.logspace(-3, 4, 25))
    best = np.full(Y.shape[1], np.inf)
    for c1 in grid:
        for c2 in grid:
            log_weights = np.array([0.0, c1, c2])
            for a in alphas:
                lam_grid = np.tile(a - log_weights, (Y.shape[1], 1))
                if np.any(lam_grid > np.log(1e4)) or np.any(lam_grid < np.log(1e-3)):
                    continue
                value = _normal_equations_cv(X, Y, splits, np.exp(lam_grid[0]))
                best = np.minimum(best, value)
    assert np.all(chosen <= best * 1.01), (chosen, best)


def _normal_equations_cv(X, Y, splits, band_alpha):
    """The mean over folds of each target's loss at the same band alphas."""
    total = np.zeros(Y.shape[1])
    for train, test in splits:
        x_mean, y_mean = X[train].mean(axis=0), Y[train].mean(axis=0)
        A, B = X[train] - x_mean, Y[train] - y_mean
        coef = np.linalg.solve(A.T @ A + np.diag(band_alpha[BANDS]), A.T @ B)
        residual = (X[test] - x_mean) @ coef + y_mean - Y[test]
        total += np.mean(residual**2, axis=0) / Y.shape[1]
    return total / len(splits)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_refit_and_fold_models_equal_ridge_on_rescaled_columns(weighted, fit_intercept):
    X, Y = _data(seed=3)
    weight = np.random.default_rng(4).uniform(0.5, 2.0, len(X)) if weighted else None
    cv = KFold(3, shuffle=True, random_state=0)
    splits = list(cv.split(X))
    search = BilevelSearchCV(
        Ridge(fit_intercept=fit_intercept),
        _bounds(3),
        penalty_groups=BANDS,
        cv=splits,
    ).fit(X, Y, sample_weight=weight)
    alpha = search.best_params_["alpha"]
    assert alpha.shape == (3, 3)
    # not one alpha per target: the estimator keeps its own
    assert search.best_estimator_.alpha == 1.0
    for t in range(3):
        coef, intercept = _ridge_on_rescaled(
            X, Y[:, t], alpha[t], weight, fit_intercept
        )
        assert_allclose(search.best_estimator_.coef_[t], coef, rtol=1e-7, atol=1e-10)
        fitted_intercept = np.broadcast_to(search.best_estimator_.intercept_, (3,))
        assert_allclose(fitted_intercept[t], intercept, atol=1e-8)
    # the fold models too, at the best point
    for (train, _), model in zip(splits, search.best_fold_estimators_):
        s_train = None if weight is None else weight[train]
        for t in (0, 2):
            coef, intercept = _ridge_on_rescaled(
                X[train], Y[train, t], alpha[t], s_train, fit_intercept
            )
            assert_allclose(model.coef_[t], coef, rtol=1e-7, atol=1e-10)
    # the history's CV loss is the direct one
    lam = np.log(alpha)
    direct = _direct_cv_losses(X, Y, splits, lam, weight, fit_intercept)
    assert_allclose(search.history_[-1]["fold_values"], direct.sum(axis=1), rtol=1e-8)


def test_search_improves_on_one_alpha_per_target_and_reports():
    X, Y = _data(seed=5)
    cv = KFold(3, shuffle=True, random_state=0)
    per_target = BilevelSearchCV(
        Ridge(), {"alpha": (np.full(3, 1e-3), np.full(3, 1e4))}, cv=cv
    ).fit(X, Y)
    search = _search(cv=cv, scoring="neg_mean_squared_error", verbose=1)
    search.fit(X, Y)
    results = search.cv_results_
    n_rows = len(search.history_)
    assert len(results["params"]) == n_rows == search.n_iter_
    assert search.best_index_ == n_rows - 1
    assert results["outer_phase"][0] == "scan"
    # the first row is one alpha per target: the per-target search's optimum
    first = results["params"][0]["alpha"]
    assert np.all(first == first[:, :1])
    assert_allclose(first[:, 0], per_target.best_params_["alpha"], rtol=1e-4)
    losses = results["outer_loss"]
    assert np.all(np.diff(losses) <= 1e-12)
    assert losses[-1] < losses[0]
    assert search.penalty_gain_ == pytest.approx((losses[0] - losses[-1]) / losses[0])
    # the scores are the fold models' (scikit-learn's metric on each fold)
    best = search.best_index_
    for k, ((_, test), model) in enumerate(
        zip(cv.split(X), search.best_fold_estimators_)
    ):
        mse = np.mean((model.predict(X[test]) - Y[test]) ** 2)
        assert results[f"split{k}_test_score"][best] == pytest.approx(-mse)


@pytest.mark.parametrize("n_targets", [1, 3])
def test_every_row_scored_from_predictions_as_by_the_fold_models(
    n_targets, monkeypatch
):
    # The squared-error metrics read the search's validation predictions of
    # every row at once; scikit-learn's scorers on the fold models give the
    # same split scores, row by row.
    X, Y = _data(seed=7, n_targets=n_targets)
    Y = Y[:, 0] if n_targets == 1 else Y
    params = {
        "param_space": _bounds(n_targets),
        "scoring": ["r2", "neg_mean_squared_error"],
    }
    fast = _search(refit=False, **params).fit(X, Y)
    import skbilevel.model_selection._search as search_module

    monkeypatch.setattr(search_module, "prediction_metrics", lambda *a: None)
    slow = _search(refit=False, **params).fit(X, Y)
    keys = [k for k in fast.cv_results_ if k.startswith("split")]
    assert len(keys) == 6 and len(fast.cv_results_["params"]) > 1
    for key in keys:
        assert_allclose(fast.cv_results_[key], slow.cv_results_[key], rtol=1e-10)


def test_verbose_output(capsys):
    X, Y = _data(seed=6)
    _search(verbose=1).fit(X, Y)
    out = capsys.readouterr().out
    assert "closed-form search of alpha per target and band (3 x 3" in out
    assert "Refit of Ridge" in out


def test_one_target_and_scalar_per_band_bounds():
    """A 1-d y with bounds of shape (1, n_groups); 1-d bounds still mean one
    value per group shared by the targets."""
    X, Y = _data(seed=7)
    search = _search(param_space=_bounds(1)).fit(X, Y[:, 0])
    assert search.best_params_["alpha"].shape == (1, 3)
    coef, intercept = _ridge_on_rescaled(X, Y[:, 0], search.best_params_["alpha"][0])
    assert_allclose(search.best_estimator_.coef_, coef, rtol=1e-7, atol=1e-10)
    assert_allclose(search.best_estimator_.intercept_, intercept, atol=1e-8)
    # 2 targets, 3 groups: bounds of shape (3,) can only mean one per group
    shared = _search(param_space={"alpha": (np.full(3, 1e-3), 1e4)}, max_iter=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # 3 steps only
        shared.fit(X, Y[:, :2])
    assert shared.best_params_["alpha"].shape in ((), (3,))
    assert {len(record["lam"]) for record in shared.history_} <= {1, 3}
    assert any(len(record["lam"]) == 3 for record in shared.history_)
    # the refit: Ridge at those alphas per group, for both targets
    band_alpha = np.broadcast_to(shared.best_params_["alpha"], (3,))
    coef, intercept = _ridge_on_rescaled(X, Y[:, :2], band_alpha)
    assert_allclose(shared.best_estimator_.coef_, coef, rtol=1e-7, atol=1e-9)
    assert_allclose(shared.best_estimator_.intercept_, intercept, rtol=1e-7)


@pytest.mark.parametrize(
    "change, match",
    [
        ({"penalty_groups": None}, "needs penalty_groups as an array"),
        ({"penalty_groups": "features"}, "needs penalty_groups as an array"),
        ({"param_space": _bounds(2)}, r"shape \(2, 3\), but y has 3 targets"),
        (
            {"param_space": {"alpha": (np.full((3, 3), 1e-3), 1e4, np.ones((3, 3)))}},
            "a start is not supported",
        ),
        ({"path": "gradient"}, "closed form only"),
        ({"estimator": RidgeClassifier()}, "takes one value for all outputs"),
        ({"estimator": LogisticRegression()}, "takes one value for all outputs"),
    ],
)
def test_bad_input(change, match):
    X, Y = _data(seed=8)
    params = {
        "estimator": Ridge(),
        "param_space": _bounds(3),
        "penalty_groups": BANDS,
        "cv": 3,
    }
    params.update(change)
    y = Y
    if isinstance(params["estimator"], (RidgeClassifier, LogisticRegression)):
        y = (Y[:, 0] > np.median(Y[:, 0])).astype(int)
        params["param_space"] = {
            ("alpha" if isinstance(params["estimator"], RidgeClassifier) else "C"): (
                np.full((2, 3), 1e-3),
                np.full((2, 3), 1e3),
            )
        }
    estimator = params.pop("estimator")
    param_space = params.pop("param_space")
    with pytest.raises(ValueError, match=match):
        BilevelSearchCV(estimator, param_space, **params).fit(X, y)


def test_sparse_data_and_per_fold_features_raise():
    X, Y = _data(seed=9)
    with pytest.raises(ValueError, match="the data are sparse"):
        _search().fit(sp.csr_matrix(X), Y)
    # a selector that keeps other columns in each fold (its scores are the
    # fold's first row)
    selector = make_pipeline(SelectKBest(_first_row, k=5), Ridge())
    search = BilevelSearchCV(
        selector, {"ridge__alpha": _bounds(3)["alpha"]}, penalty_groups=BANDS[:5], cv=3
    )
    with pytest.raises(ValueError, match="same features in every fold"):
        search.fit(X, Y)


def _first_row(X, y):
    return X[0]


def test_banded_coefficients_of_shared_and_own_band_weights():
    """Targets sharing band weights (one eigendecomposition) and others (one
    Cholesky factorization each) get the normal equations' solutions."""
    from skbilevel.objectives.quadratic import quadratic_moments
    from skbilevel.search._banded import _EIGEN_TARGETS, banded_coefficients

    rng = np.random.default_rng(10)
    n_targets = _EIGEN_TARGETS + 3
    X = rng.standard_normal((40, BANDS.size))
    Y = rng.standard_normal((40, n_targets))
    shared = np.array([0.0, -2.0, 1.5])
    lam = rng.uniform(-2, 2, n_targets)[:, None] + shared[None, :]
    lam[-3:] = rng.uniform(-3, 3, (3, 3))  # weightings of their own
    moments = quadratic_moments(X, Y)
    coef = banded_coefficients(moments, BANDS, lam)
    A, B = X - X.mean(axis=0), Y - Y.mean(axis=0)
    for t in range(n_targets):
        expected = np.linalg.solve(
            A.T @ A + np.diag(np.exp(lam[t, BANDS])), A.T @ B[:, t]
        )
        assert_allclose(coef[:, t], expected, rtol=1e-8, atol=1e-12)


def test_pipeline_with_a_scaler():
    """The final step's columns after the scaler carry the bands; the refit
    is Ridge on the scaled, rescaled columns."""
    from sklearn.preprocessing import StandardScaler

    X, Y = _data(seed=11)
    X = X * np.arange(1, BANDS.size + 1)
    pipe = make_pipeline(StandardScaler(), Ridge())
    search = BilevelSearchCV(
        pipe, {"ridge__alpha": _bounds(3)["alpha"]}, penalty_groups=BANDS, cv=3
    ).fit(X, Y)
    alpha = search.best_params_["ridge__alpha"]
    scaled = StandardScaler().fit_transform(X)
    for t in range(3):
        coef, _ = _ridge_on_rescaled(scaled, Y[:, t], alpha[t])
        assert_allclose(search.best_estimator_[-1].coef_[t], coef, rtol=1e-7)
    assert_allclose(
        search.predict(X[:5]), search.best_estimator_.predict(X[:5]), rtol=1e-12
    )


def test_targets_whose_band_boxes_share_no_alpha():
    # Target 0 must penalize band 1 more than bands 0 and 2 (its boxes do not
    # overlap): g = 1 leaves its box, and it starts from its boxes' centres.
    # Every target ends inside its boxes, with a finite CV loss, and the refit
    # is Ridge on rescaled columns at those alphas.
    X, Y = _data()
    low, high = (bound.copy() for bound in _bounds(3)["alpha"])
    low[0], high[0] = [1e-3, 1e2, 1e-3], [1e-1, 1e4, 1e4]
    splits = list(KFold(3).split(X))
    search = BilevelSearchCV(
        Ridge(), {"alpha": (low, high)}, cv=splits, penalty_groups=BANDS
    ).fit(X, Y)
    alpha = search.best_params_["alpha"]
    assert np.all(alpha >= low * (1 - 1e-9)) and np.all(alpha <= high * (1 + 1e-9))
    assert alpha[0, 1] > alpha[0, 0] and alpha[0, 1] > alpha[0, 2]
    assert np.all(np.isfinite(search.cv_results_["outer_loss"]))
    assert np.isfinite(search.penalty_gain_)
    for t in range(3):
        coef, intercept = _ridge_on_rescaled(X, Y[:, t], alpha[t])
        assert_allclose(search.best_estimator_.coef_[t], coef, rtol=1e-8, atol=1e-10)
        assert_allclose(search.best_estimator_.intercept_[t], intercept, rtol=1e-8)
    # every target's boxes apart: one candidate of box centres each
    low[:, 1], high[:, 1] = 1e2, 1e4
    low[:, [0, 2]], high[:, [0, 2]] = 1e-3, 1e-1
    apart = BilevelSearchCV(
        Ridge(), {"alpha": (low, high)}, cv=splits, penalty_groups=BANDS
    ).fit(X, Y)
    assert np.all(apart.best_params_["alpha"][:, 1] >= 1e2)
    assert np.all(np.isfinite(apart.cv_results_["outer_loss"]))
    for t in range(3):
        coef, intercept = _ridge_on_rescaled(X, Y[:, t], apart.best_params_["alpha"][t])
        assert_allclose(apart.best_estimator_.coef_[t], coef, rtol=1e-8, atol=1e-10)
        assert_allclose(apart.best_estimator_.intercept_[t], intercept, rtol=1e-8)


def test_more_features_than_rows_computes_no_kernel_of_all_rows(monkeypatch):
    # the banded folds factor Gram matrices: with fewer training rows than
    # features they compute their own, and the kernel of all the rows (which
    # the scalar path shares) is never formed
    import skbilevel.search._ridge_rows as ridge_rows

    kernels = []
    products = ridge_rows.SharedRows.products

    def spy(self, index, gram_only=False):
        result = products(self, index, gram_only)
        kernels.append(self._kernel is not None)
        return result

    monkeypatch.setattr(ridge_rows.SharedRows, "products", spy)
    X, Y = _data(n=10)  # 8 training rows, 8 features
    X = np.hstack([X, X[:, :2]])
    bands = np.r_[BANDS, [2, 2]]
    search = BilevelSearchCV(
        Ridge(),
        {"alpha": (np.full((3, 3), 1e-3), np.full((3, 3), 1e4))},
        penalty_groups=bands,
        cv=KFold(5),
    ).fit(X, Y)
    assert kernels and not any(kernels)
    # the folds' own Gram matrices give the same models: the refit is Ridge
    # on columns rescaled by each band's alpha
    alpha = search.best_params_["alpha"]
    for t in range(3):
        coef, intercept = _ridge_on_rescaled(X, Y[:, t], alpha[t], bands=bands)
        assert_allclose(search.best_estimator_.coef_[t], coef, rtol=1e-7)
        assert_allclose(search.best_estimator_.intercept_[t], intercept, rtol=1e-7)


def test_model_gain_is_the_models_best_decrease_on_each_candidates_ray():
    # the decrease a target's quadratic model expects along the ray
    # lambda = a - c of candidate c, at its best a: against a fine 1-D grid
    from skbilevel.search._banded import BandedRidgeSearch

    rng = np.random.default_rng(0)
    n_targets, n_bands, n_candidates = 4, 3, 5
    search = BandedRidgeSearch.__new__(BandedRidgeSearch)
    search.n_bands = n_bands
    search.grad = rng.standard_normal((n_targets, n_bands))
    search.lam = rng.standard_normal((n_targets, n_bands))
    search.radius = np.full(n_targets, 100.0)
    factors = rng.standard_normal((n_targets, n_bands, n_bands))
    hessians = factors @ factors.transpose(0, 2, 1) + np.eye(n_bands)
    candidates = rng.standard_normal((n_candidates, n_bands))
    targets = np.arange(n_targets)
    gain = search._model_gain(targets, candidates, hessians)
    a = np.linspace(-30, 30, 600001)
    for t in targets:
        for m, c in enumerate(candidates):
            step = a[:, None] - c - search.lam[t]  # (n_a, B)
            model = step @ search.grad[t] + 0.5 * np.einsum(
                "ib,bc,ic->i", step, hessians[t], step
            )
            assert gain[t, m] == pytest.approx(-model.min(), rel=1e-6, abs=1e-9)
