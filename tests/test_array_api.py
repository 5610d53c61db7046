"""The engine on a strict array-API namespace gives the NumPy results.

CI has no GPU: ``array_api_strict`` stands in for CuPy. It rejects everything
outside the standard (NumPy-only functions, implicit conversions, Python
scalars where arrays are required), so a pass here means the engine's code path
is namespace-generic.
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose

from skbilevel.hypergrad import get_linear_solver
from skbilevel.objectives import InnerObjective, ValidationLoss
from skbilevel.outer import CrossValidatedProblem, Fold, hoag
from skbilevel.solvers import minimize_lbfgs

from ._problems import make_fold

xps = pytest.importorskip("array_api_strict")


def _to_strict(fold_objectives):
    inner, outer = fold_objectives

    def strict(a):
        return None if a is None else xps.asarray(a)

    inner_s = InnerObjective(
        strict(inner.model.X),
        strict(inner.y),
        inner.loss,
        inner.penalty,
        inner.model.n_outputs,
        inner.model.fit_intercept,
        strict(inner.sample_weight),
    )
    outer_s = ValidationLoss(
        strict(outer.model.X),
        strict(outer.y),
        outer.loss,
        outer.model.n_outputs,
        outer.model.fit_intercept,
        strict(outer.sample_weight),
        scale=outer.scale,
    )
    return inner_s, outer_s


def _folds(loss_name, structure, n_folds=3):
    folds = []
    for seed in range(n_folds):
        inner, outer, n_hyper = make_fold(
            loss_name, structure, weighted=True, n_samples=90, seed=seed
        )
        folds.append((inner, outer))
    return folds, n_hyper


@pytest.mark.parametrize("loss_name", ["binary", "multinomial", "squared"])
def test_lbfgs_on_strict_arrays_matches_numpy(loss_name):
    ((inner, outer),) = _folds(loss_name, "per_feature", n_folds=1)[0]
    inner_s, _ = _to_strict((inner, outer))
    lam = np.linspace(-1, 1, inner.n_hyper)
    numpy_result = minimize_lbfgs(
        lambda w: inner.value_and_grad(w, lam), np.zeros(inner.n_params), tol=1e-10
    )
    lam_s = xps.asarray(lam)
    strict_result = minimize_lbfgs(
        lambda w: inner_s.value_and_grad(w, lam_s),
        xps.zeros(inner.n_params, dtype=xps.float64),
        tol=1e-10,
    )
    assert strict_result.converged
    assert_allclose(np.asarray(strict_result.x), numpy_result.x, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("method", ["shine", "shine-refine", "cg", "neumann", "exact"])
@pytest.mark.parametrize(
    "loss_name, structure",
    [("binary", "scalar"), ("multinomial", "groups"), ("squared", "per_feature")],
)
def test_full_hoag_run_on_strict_arrays_matches_numpy(loss_name, structure, method):
    folds, n_hyper = _folds(loss_name, structure)
    results = []
    for convert in (False, True):
        pairs = [_to_strict(f) if convert else f for f in folds]
        problem = CrossValidatedProblem(
            [Fold(*p) for p in pairs], get_linear_solver(method)
        )
        results.append(
            hoag(problem, np.zeros(n_hyper), bounds=(-5.0, 5.0), max_iter=4, bracket=3)
        )
    numpy_run, strict_run = results
    assert len(numpy_run.history) == len(strict_run.history)
    for a, b in zip(numpy_run.history, strict_run.history):
        assert_allclose(b["lam"], a["lam"], rtol=1e-6, atol=1e-8)
        assert_allclose(b["value"], a["value"], rtol=1e-7)
        assert_allclose(b["grad"], a["grad"], rtol=1e-5, atol=1e-9)


def test_estimator_follows_array_api_input():
    """A non-NumPy input stays in its namespace: fit, attributes and predictions."""
    from sklearn.datasets import load_iris
    from sklearn.preprocessing import StandardScaler

    from skbilevel import HOAGLogisticRegression

    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    params = dict(C_init=1.0, max_iter=3, tol=1e-12)
    with pytest.warns(Warning):
        reference = HOAGLogisticRegression(**params).fit(X, y)
    with pytest.warns(Warning):
        model = HOAGLogisticRegression(**params).fit(xps.asarray(X), xps.asarray(y))
    assert isinstance(model.coef_, type(xps.asarray([1.0])))
    assert_allclose(model.C_, reference.C_, rtol=1e-6)
    assert_allclose(np.asarray(model.coef_), reference.coef_, rtol=1e-5, atol=1e-7)
    proba = model.predict_proba(xps.asarray(X))
    assert_allclose(np.asarray(proba), reference.predict_proba(X), rtol=1e-5, atol=1e-8)
    assert_allclose(
        np.asarray(model.predict_log_proba(xps.asarray(X))),
        reference.predict_log_proba(X),
        rtol=1e-5,
        atol=1e-7,
    )
    assert np.array_equal(model.predict(xps.asarray(X)), reference.predict(X))
    with pytest.raises(ValueError, match="NaN or infinity"):
        X_bad = X.copy()
        X_bad[0, 0] = np.nan
        HOAGLogisticRegression(**params).fit(xps.asarray(X_bad), y)


def test_device_cpu_brings_input_to_numpy():
    from sklearn.datasets import load_iris

    from skbilevel import HOAGLogisticRegression

    X, y = load_iris(return_X_y=True)
    with pytest.warns(Warning):
        model = HOAGLogisticRegression(C_init=1.0, max_iter=1, device="cpu").fit(
            xps.asarray(X), y
        )
    assert isinstance(model.coef_, np.ndarray)


def test_device_cuda_without_gpu_is_a_clear_error(monkeypatch):
    import sys

    from sklearn.datasets import load_iris

    from skbilevel import HOAGLogisticRegression

    X, y = load_iris(return_X_y=True)
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() > 0:
            pytest.skip("a CUDA device is present")
    except Exception:
        pass
    monkeypatch.setitem(sys.modules, "cupy", None)  # as if CuPy were not installed
    with pytest.raises(ValueError, match="needs CuPy"):
        HOAGLogisticRegression(device="cuda").fit(X, y)


def test_bilevel_search_device_cuda_without_gpu_is_a_clear_error(monkeypatch):
    import sys

    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from skbilevel import BilevelSearchCV

    X, y = load_iris(return_X_y=True)
    monkeypatch.setitem(sys.modules, "cupy", None)  # as if CuPy were not installed
    search = BilevelSearchCV(LogisticRegression(), {"C": (1e-2, 1e2)}, device="cuda")
    with pytest.raises(ValueError, match="needs CuPy"):
        search.fit(X, y)


@pytest.mark.parametrize("kind", ["multinomial-pipeline", "ridge-two-targets"])
def test_bilevel_search_on_a_device_matches_numpy(kind, monkeypatch):
    # The "cuda" path with array_api_strict standing in for CuPy: the folds'
    # data go to the stand-in namespace, the search runs there, and the fold
    # solutions come back to NumPy for scikit-learn's scorers and models.
    from sklearn.datasets import load_iris, make_regression
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import skbilevel.model_selection._search as search_module
    import skbilevel.search._folds as folds_module
    from skbilevel import BilevelSearchCV

    moved = []

    def to_stand_in(X):
        moved.append(X.shape)
        return xps.asarray(np.asarray(X, dtype=np.float64))

    monkeypatch.setattr(folds_module, "to_cuda", to_stand_in)
    monkeypatch.setattr(search_module, "check_device_available", lambda: None)
    if kind == "ridge-two-targets":
        X, y = make_regression(80, 6, n_targets=2, noise=5.0, random_state=0)
        estimator, space = Ridge(), {"alpha": ([1e-3, 1e-3], [1e3, 1e3])}
    else:
        X, y = load_iris(return_X_y=True)
        estimator = make_pipeline(StandardScaler(), LogisticRegression())
        space = {"logisticregression__C": (1e-3, 1e3)}
    searches = [
        BilevelSearchCV(estimator, space, cv=3, device=device).fit(X, y)
        for device in (None, "cuda")
    ]
    assert len(moved) == 2 * 3  # training and validation side of each fold
    cpu, device = (search.cv_results_ for search in searches)
    assert len(cpu["params"]) == len(device["params"])
    name = next(iter(space))
    assert_allclose(
        np.asarray(device[f"param_{name}"].tolist(), dtype=float),
        np.asarray(cpu[f"param_{name}"].tolist(), dtype=float),
        rtol=1e-6,
    )
    assert_allclose(device["outer_loss"], cpu["outer_loss"], rtol=1e-7)
    assert_allclose(device["mean_test_score"], cpu["mean_test_score"], rtol=1e-6)
    for model in searches[1].best_fold_estimators_:
        final = model[-1] if hasattr(model, "steps") else model
        assert isinstance(final.coef_, np.ndarray)
    assert_allclose(
        searches[1].best_estimator_.predict(X), searches[0].best_estimator_.predict(X)
    )
