"""The engine and both estimators on strict array-API arrays give the NumPy results.

CI has no GPU: ``array_api_strict`` stands in for CuPy. It rejects everything
outside the standard (NumPy-only functions, implicit conversions, Python
scalars where arrays are required), so a pass here means the code path is
namespace-generic. Every test runs on its default device *and* on
``Device("device1")``: arrays of two devices cannot be combined, so an
allocation that forgets ``device=`` (it lands on the default device) fails
there, as it would on a second GPU or with torch on CUDA.

The tests named ``test_dispatch_*`` need scikit-learn's array API dispatch,
hence ``SCIPY_ARRAY_API=1`` set before SciPy is imported; without it,
``test_dispatch_tests_in_a_subprocess`` runs them in a fresh interpreter.
"""

import inspect
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn import config_context
from sklearn.base import clone
from sklearn.datasets import load_iris, make_classification
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skbilevel import BilevelSearchCV, HOAGLogisticRegression
from skbilevel.hypergrad import LINEAR_SOLVERS, get_linear_solver
from skbilevel.hypergrad.implicit import hypergradient
from skbilevel.objectives import InnerObjective, ValidationLoss
from skbilevel.outer import CrossValidatedProblem, Fold, _fold_eval, hoag
from skbilevel.solvers import LBFGSMemory, minimize_lbfgs
from skbilevel.utils._array_api import device_of, get_namespace, to_numpy

from ._problems import STRUCTURES, make_fold

xps = pytest.importorskip("array_api_strict")

DEVICES = [xps.Device("CPU_DEVICE"), xps.Device("device1")]
DEVICE_IDS = ["CPU_DEVICE", "device1"]
on_devices = pytest.mark.parametrize("device", DEVICES, ids=DEVICE_IDS)
DISPATCH = os.environ.get("SCIPY_ARRAY_API") == "1"
needs_dispatch = pytest.mark.skipif(
    not DISPATCH,
    reason="SCIPY_ARRAY_API=1 must be set before SciPy is imported; "
    "test_dispatch_tests_in_a_subprocess runs this test",
)

pytestmark = [
    pytest.mark.usefixtures("one_blas_thread"),
    pytest.mark.filterwarnings(
        "ignore::sklearn.exceptions.ConvergenceWarning",
        "ignore:lbfgs failed to converge",
    ),
]


def _on(device):
    """Copy NumPy arrays (or None) to ``device`` of array_api_strict."""

    def move(a):
        return None if a is None else xps.asarray(a, device=device)

    return move


def _assert_on(device, *arrays):
    for a in arrays:
        assert get_namespace(a) is xps, type(a)
        assert device_of(a) == device


def _to_device(fold_objectives, device):
    inner, outer = fold_objectives
    move = _on(device)
    inner_s = InnerObjective(
        move(inner.model.X),
        move(inner.y),
        inner.loss,
        inner.penalty,
        inner.model.n_outputs,
        inner.model.fit_intercept,
        move(inner.sample_weight),
    )
    outer_s = ValidationLoss(
        move(outer.model.X),
        move(outer.y),
        outer.loss,
        outer.model.n_outputs,
        outer.model.fit_intercept,
        move(outer.sample_weight),
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


# -- the engine --------------------------------------------------------------------
@on_devices
@pytest.mark.parametrize("loss_name", ["binary", "multinomial", "squared"])
def test_lbfgs_on_strict_arrays_matches_numpy(loss_name, device):
    ((inner, outer),) = _folds(loss_name, "per_feature", n_folds=1)[0]
    inner_s, _ = _to_device((inner, outer), device)
    lam = np.linspace(-1, 1, inner.n_hyper)
    numpy_result = minimize_lbfgs(
        lambda w: inner.value_and_grad(w, lam), np.zeros(inner.n_params), tol=1e-10
    )
    lam_s = xps.asarray(lam, device=device)
    strict_result = minimize_lbfgs(
        lambda w: inner_s.value_and_grad(w, lam_s),
        inner_s.model.zeros(),
        tol=1e-10,
    )
    assert strict_result.converged
    assert_allclose(to_numpy(strict_result.x), numpy_result.x, rtol=1e-8, atol=1e-10)
    memory = strict_result.memory
    assert len(memory) > 0
    _assert_on(device, strict_result.x, strict_result.grad, *memory.s, *memory.y)
    _assert_on(device, *memory.sy)


@on_devices
@pytest.mark.parametrize("structure", STRUCTURES)
@pytest.mark.parametrize("loss_name", ["binary", "multinomial", "squared"])
def test_every_linear_solver_on_strict_arrays_matches_numpy(
    loss_name, structure, device
):
    """Every hypergradient solver, at the same inner solution and memory."""
    inner, outer, n_hyper = make_fold(
        loss_name, structure, weighted=True, n_samples=60, seed=1
    )
    inner_s, outer_s = _to_device((inner, outer), device)
    lam = np.linspace(-0.5, 0.5, n_hyper)
    solved = minimize_lbfgs(
        lambda w: inner.value_and_grad(w, lam),
        inner.model.zeros(),
        tol=1e-8,
        memory_size=5,
    )
    move = _on(device)
    memory_s = LBFGSMemory(
        *(tuple(move(np.asarray(a)) for a in part) for part in solved.memory)
    )
    for method in LINEAR_SOLVERS:
        solver = get_linear_solver(method)
        reference = hypergradient(
            inner, outer, solved.x, lam, solver, tol=1e-6, memory=solved.memory
        )
        result = hypergradient(
            inner_s,
            outer_s,
            move(solved.x),
            move(lam),
            solver,
            tol=1e-6,
            memory=memory_s,
        )
        _assert_on(device, result.grad, result.solve.solution)
        # the same iterations; their round-off differs (NumPy's products are
        # not the array-API path's), which the Krylov solvers carry to the
        # solve's own tolerance (1e-6) at most, relative to the gradient
        assert_allclose(
            to_numpy(result.grad),
            reference.grad,
            rtol=1e-7,
            atol=1e-6 * np.abs(reference.grad).max(),
            err_msg=method,
        )
        assert result.solve.n_hvp == reference.solve.n_hvp, method


# Each solver runs a full search on one (loss, structure) pair; together they
# cover every loss and penalty structure on both devices.
HOAG_CASES = [
    ("shine", "binary", "scalar"),
    ("shine-opa", "multinomial", "per_feature"),
    ("shine-refine", "squared", "groups"),
    ("cg", "multinomial", "groups"),
    ("neumann", "binary", "per_output"),
    ("truncated", "squared", "per_feature"),
    ("identity", "multinomial", "per_output"),
    ("exact", "binary", "per_feature"),
]


@on_devices
@pytest.mark.parametrize("method, loss_name, structure", HOAG_CASES)
def test_full_hoag_run_on_strict_arrays_matches_numpy(
    method, loss_name, structure, device, monkeypatch
):
    # the iterative engine on both sides (NumPy would solve the squared loss
    # directly)
    monkeypatch.setattr(_fold_eval, "_DIRECT", False)
    folds, n_hyper = _folds(loss_name, structure)
    results = []
    for convert in (False, True):
        pairs = [_to_device(f, device) if convert else f for f in folds]
        problem = CrossValidatedProblem(
            [Fold(*p) for p in pairs], get_linear_solver(method)
        )
        results.append(
            hoag(problem, np.zeros(n_hyper), bounds=(-5.0, 5.0), max_iter=3, bracket=2)
        )
    numpy_run, strict_run = results
    assert len(numpy_run.history) == len(strict_run.history)
    for a, b in zip(numpy_run.history, strict_run.history):
        assert_allclose(b["lam"], a["lam"], rtol=1e-6, atol=1e-8)
        assert_allclose(b["value"], a["value"], rtol=1e-7)
        assert_allclose(b["grad"], a["grad"], rtol=1e-5, atol=1e-9)
    _assert_on(device, *problem.solutions())


# -- HOAGLogisticRegression ----------------------------------------------------------
def _classification(n_classes):
    X, y = load_iris(return_X_y=True)
    if n_classes == 2:
        X, y = X[y > 0], y[y > 0]  # versicolor against virginica: no separation
    return StandardScaler().fit_transform(X), y


@on_devices
@pytest.mark.parametrize(
    "n_classes, penalty_groups, method",
    [
        (2, None, "shine"),
        (3, "features", "cg"),
        (3, [0, 0, 1, 1], "exact"),
    ],
)
def test_estimator_follows_array_api_input(n_classes, penalty_groups, method, device):
    """Device input stays on its device: fit, every fitted array, predictions."""
    X, y = _classification(n_classes)
    params = dict(
        C_init=1.0, max_iter=3, penalty_groups=penalty_groups, hypergradient=method
    )
    reference = HOAGLogisticRegression(**params).fit(X, y)
    move = _on(device)
    model = HOAGLogisticRegression(**params).fit(move(X), move(y))
    _assert_on(device, model.coef_, model.intercept_, model.lambda_)
    if penalty_groups is not None:
        _assert_on(device, model.C_)
    assert isinstance(model.classes_, np.ndarray)  # labels may be strings
    assert_allclose(to_numpy(model.C_), reference.C_, rtol=1e-6)
    assert_allclose(to_numpy(model.lambda_), reference.lambda_, rtol=1e-6)
    assert_allclose(to_numpy(model.coef_), reference.coef_, rtol=1e-5, atol=1e-7)
    assert_allclose(
        to_numpy(model.intercept_), reference.intercept_, rtol=1e-5, atol=1e-7
    )
    for method_name in ("decision_function", "predict_proba", "predict_log_proba"):
        output = getattr(model, method_name)(move(X))
        _assert_on(device, output)
        assert_allclose(
            to_numpy(output),
            getattr(reference, method_name)(X),
            rtol=1e-5,
            atol=1e-7,
        )
    labels = model.predict(move(X))
    _assert_on(device, labels)
    assert np.array_equal(to_numpy(labels), reference.predict(X))


@on_devices
def test_string_labels_on_a_device(device):
    X, y = _classification(3)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    model = HOAGLogisticRegression(C_init=1.0, max_iter=1).fit(
        xps.asarray(X, device=device), names
    )
    _assert_on(device, model.coef_)
    assert np.array_equal(model.classes_, np.unique(names))
    predicted = model.predict(xps.asarray(X, device=device))
    assert isinstance(predicted, np.ndarray)  # strings have no array-API dtype
    assert np.mean(predicted == names) > 0.9


@on_devices
def test_mixed_inputs_follow_X(device):
    """y and sample_weight from elsewhere (NumPy, the other device) follow X."""
    X, y = _classification(2)
    weight = np.linspace(0.5, 2.0, y.shape[0])
    params = dict(C_init=1.0, max_iter=2)
    reference = HOAGLogisticRegression(**params).fit(X, y, sample_weight=weight)
    other = DEVICES[1] if device == DEVICES[0] else DEVICES[0]
    model = HOAGLogisticRegression(**params).fit(
        xps.asarray(X, device=device),
        y,
        sample_weight=xps.asarray(weight, device=other),
    )
    _assert_on(device, model.coef_, model.intercept_, model.lambda_)
    assert_allclose(to_numpy(model.coef_), reference.coef_, rtol=1e-5, atol=1e-7)


def test_prediction_input_from_elsewhere_is_a_clear_error():
    X, y = _classification(3)
    model = HOAGLogisticRegression(C_init=1.0, max_iter=1).fit(
        xps.asarray(X, device=DEVICES[1]), y
    )
    for X_other in (X, xps.asarray(X, device=DEVICES[0])):
        for method_name in (
            "decision_function",
            "predict",
            "predict_proba",
            "predict_log_proba",
        ):
            with pytest.raises(
                ValueError,
                match=rf"HOAGLogisticRegression\.{method_name}\(\) must use the same "
                "namespace",
            ):
                getattr(model, method_name)(X_other)


@on_devices
def test_device_cpu_brings_input_to_numpy(device):
    X, y = _classification(3)
    model = HOAGLogisticRegression(C_init=1.0, max_iter=1, device="cpu").fit(
        xps.asarray(X, device=device), xps.asarray(y, device=device)
    )
    reference = HOAGLogisticRegression(C_init=1.0, max_iter=1).fit(X, y)
    for name in ("coef_", "intercept_", "lambda_"):
        assert isinstance(getattr(model, name), np.ndarray), name
        assert_allclose(getattr(model, name), getattr(reference, name), rtol=1e-10)
    proba = model.predict_proba(xps.asarray(X, device=device))
    assert isinstance(proba, np.ndarray)
    assert_allclose(proba, reference.predict_proba(X), rtol=1e-10)


@pytest.mark.parametrize(
    "penalty_groups, device",
    [(None, DEVICES[0]), ("features", DEVICES[1])],
    ids=DEVICE_IDS,
)
def test_device_cuda_fits_on_the_device_and_returns_host_attributes(
    penalty_groups, device, monkeypatch
):
    """``device="cuda"``, with the strict device standing in for the GPU: the
    search and refit run there, and every fitted array comes back to NumPy."""
    import skbilevel.linear_model._hoag_logistic as hoag_module

    moved = []

    def to_stand_in(X):
        moved.append(X.shape)
        return xps.asarray(np.asarray(X), device=device)

    monkeypatch.setattr(hoag_module, "to_cuda", to_stand_in)
    X, y = _classification(3)
    params = dict(C_init=1.0, max_iter=2, penalty_groups=penalty_groups)
    reference = HOAGLogisticRegression(**params).fit(X, y)
    model = HOAGLogisticRegression(device="cuda", **params).fit(X, y)
    assert moved == [X.shape]  # one transfer of the data
    for name in ("coef_", "intercept_", "lambda_"):
        assert isinstance(getattr(model, name), np.ndarray), name
    assert isinstance(model.C_, float if penalty_groups is None else np.ndarray)
    assert_allclose(model.coef_, reference.coef_, rtol=1e-5, atol=1e-7)
    assert_allclose(model.intercept_, reference.intercept_, rtol=1e-5, atol=1e-7)
    for X_in in (X, xps.asarray(X, device=device)):  # host or device input
        proba = model.predict_proba(X_in)
        assert isinstance(proba, np.ndarray)
        assert_allclose(proba, reference.predict_proba(X), rtol=1e-5, atol=1e-8)
        assert np.array_equal(model.predict(X_in), reference.predict(X))


def test_device_cuda_without_gpu_is_a_clear_error(monkeypatch):
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


# -- BilevelSearchCV -----------------------------------------------------------------
def test_bilevel_search_device_cuda_without_gpu_is_a_clear_error(monkeypatch):
    X, y = load_iris(return_X_y=True)
    monkeypatch.setitem(sys.modules, "cupy", None)  # as if CuPy were not installed
    search = BilevelSearchCV(LogisticRegression(), {"C": (1e-2, 1e2)}, device="cuda")
    with pytest.raises(ValueError, match="needs CuPy"):
        search.fit(X, y)


@on_devices
@pytest.mark.parametrize("kind", ["multinomial-pipeline", "ridge-two-targets"])
def test_bilevel_search_on_a_device_matches_numpy(kind, device, monkeypatch):
    # The "cuda" path with array_api_strict standing in for CuPy: the folds'
    # data go to the stand-in device, the search runs there, and the fold
    # solutions come back to NumPy for scikit-learn's scorers and models.
    from sklearn.datasets import make_regression
    from sklearn.linear_model import Ridge

    import skbilevel.model_selection._search as search_module
    import skbilevel.search._folds as folds_module

    moved = []

    def to_stand_in(X, dtype=None):
        moved.append(X.shape)
        return xps.asarray(np.asarray(X, dtype=dtype), device=device)

    monkeypatch.setattr(folds_module, "to_cuda", to_stand_in)
    monkeypatch.setattr(search_module, "check_device_available", lambda: None)
    monkeypatch.setattr(_fold_eval, "_DIRECT", False)  # iterative on both sides
    if kind == "ridge-two-targets":
        X, y = make_regression(80, 6, n_targets=2, noise=5.0, random_state=0)
        estimator, space = Ridge(), {"alpha": ([1e-3, 1e-3], [1e3, 1e3])}
        if "path" in inspect.signature(BilevelSearchCV).parameters:
            # On the CPU, Ridge would take the closed form; compare gradient searches.
            estimator = {"estimator": estimator, "path": "gradient"}
    else:
        X, y = load_iris(return_X_y=True)
        estimator = make_pipeline(StandardScaler(), LogisticRegression())
        space = {"logisticregression__C": (1e-3, 1e3)}
    if not isinstance(estimator, dict):
        estimator = {"estimator": estimator}
    searches = [
        BilevelSearchCV(param_space=space, cv=3, device=where, **estimator).fit(X, y)
        for where in (None, "cuda")
    ]
    assert len(moved) == 2 * 3  # training and validation side of each fold
    cpu, gpu = (search.cv_results_ for search in searches)
    assert len(cpu["params"]) == len(gpu["params"])
    name = next(iter(space))
    assert_allclose(
        np.asarray(gpu[f"param_{name}"].tolist(), dtype=float),
        np.asarray(cpu[f"param_{name}"].tolist(), dtype=float),
        rtol=1e-6,
    )
    assert_allclose(gpu["outer_loss"], cpu["outer_loss"], rtol=1e-7)
    assert_allclose(gpu["mean_test_score"], cpu["mean_test_score"], rtol=1e-6)
    for model in searches[1].best_fold_estimators_:
        final = model[-1] if hasattr(model, "steps") else model
        assert isinstance(final.coef_, np.ndarray)
    assert_allclose(
        searches[1].best_estimator_.predict(X), searches[0].best_estimator_.predict(X)
    )


@on_devices
def test_bilevel_search_float32_data_travel_as_float32(device, monkeypatch):
    # device="cuda" with float32 data: the host keeps them float32 (no float64
    # copy of X), the copy to the device is converted to float64 there, and
    # the search is the float64 search of the CPU, to round-off.
    import skbilevel.model_selection._search as search_module
    import skbilevel.search._folds as folds_module

    moved = []

    def to_stand_in(X, dtype=None):
        moved.append((X.dtype, dtype))
        return xps.asarray(np.asarray(X, dtype=dtype), device=device)

    monkeypatch.setattr(folds_module, "to_cuda", to_stand_in)
    monkeypatch.setattr(search_module, "check_device_available", lambda: None)
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X).astype(np.float32)
    searches = [
        BilevelSearchCV(
            LogisticRegression(), {"C": (1e-3, 1e3)}, cv=3, device=where
        ).fit(X, y)
        for where in (None, "cuda")
    ]
    assert moved and set(moved) == {(np.dtype(np.float32), np.float64)}
    cpu, gpu = (search.cv_results_ for search in searches)
    assert_allclose(
        np.asarray(gpu["param_C"].tolist(), dtype=float),
        np.asarray(cpu["param_C"].tolist(), dtype=float),
        rtol=1e-6,
    )
    assert_allclose(gpu["mean_test_score"], cpu["mean_test_score"], rtol=1e-6)
    assert searches[1].best_estimator_.coef_.dtype == np.float32  # the user's refit


@on_devices
def test_bilevel_search_array_api_input_without_dispatch_is_a_clear_error(device):
    X, y = load_iris(return_X_y=True)
    search = BilevelSearchCV(LogisticRegression(), {"C": (1e-2, 1e2)}, cv=3)
    with config_context(array_api_dispatch=False):
        with pytest.raises(ValueError, match="array API dispatch is off") as error:
            search.fit(xps.asarray(X, device=device), y)
    message = str(error.value)
    assert "got X as array_api_strict" in message
    assert "device='cuda'" in message and "array_api_dispatch=True" in message


# -- under scikit-learn's array API dispatch (SCIPY_ARRAY_API=1) -----------------------
@needs_dispatch
@pytest.mark.parametrize(
    "device_name, dtype_name, extra",
    [
        ("CPU_DEVICE", "float64", {}),
        ("device1", "float32", {}),
        ("device1", "float64", {"check_values": True, "check_sample_weight": True}),
    ],
)
def test_dispatch_scikit_learn_array_api_checks(device_name, dtype_name, extra):
    """scikit-learn's own checks of the tag ``array_api_support=True``."""
    from sklearn.utils.estimator_checks import check_array_api_input

    estimators = [
        HOAGLogisticRegression(max_iter=5),
        BilevelSearchCV(LogisticRegression(), {"C": (1e-2, 1e2)}, max_iter=3),
    ]
    for estimator in estimators:
        check_array_api_input(
            type(estimator).__name__,
            estimator,
            array_namespace="array_api_strict",
            device_name=device_name,
            dtype_name=dtype_name,
            **extra,
        )


@needs_dispatch
def test_dispatch_prediction_namespace_checks():
    from sklearn.utils.estimator_checks import check_array_api_same_namespace

    estimator = HOAGLogisticRegression(C_init=1.0, max_iter=2)
    check_array_api_same_namespace(
        "HOAGLogisticRegression", estimator, array_namespace="array_api_strict"
    )
    # A NumPy model refuses device input under dispatch, as scikit-learn's do.
    X, y = _classification(3)
    model = HOAGLogisticRegression(C_init=1.0, max_iter=1).fit(X, y)
    with config_context(array_api_dispatch=True):
        with pytest.raises(ValueError, match=r"predict_proba\(\) must use the same"):
            model.predict_proba(xps.asarray(X, device=DEVICES[1]))


@needs_dispatch
@on_devices
@pytest.mark.parametrize("pipeline", [False, True], ids=["final", "pipeline"])
# StandardScaler.fit's array-API path divides 0 / 0 in scikit-learn 1.9
# (_incremental_mean_and_var); its result is right.
@pytest.mark.filterwarnings("ignore:invalid value encountered in divide")
def test_dispatch_bilevel_search_follows_array_api_input(pipeline, device):
    """As GridSearchCV under dispatch: the search on a host copy gives the NumPy
    results, and best_estimator_ is refit on the input, on its device."""
    X, y = make_classification(
        120, 6, n_informative=4, n_classes=3, n_clusters_per_class=1, random_state=0
    )
    weight = np.linspace(0.5, 2.0, y.shape[0])
    if pipeline:
        estimator = make_pipeline(StandardScaler(), LogisticRegression())
        space = {"logisticregression__C": (1e-3, 1e3)}
        fit_params = {"logisticregression__sample_weight": weight}
    else:
        estimator, space = LogisticRegression(), {"C": (1e-3, 1e3)}
        fit_params = {"sample_weight": weight}
    search = BilevelSearchCV(estimator, space, cv=3, max_iter=4)
    reference = clone(search).fit(X, y, **fit_params)
    move = _on(device)
    with config_context(array_api_dispatch=True):
        fitted = search.fit(
            move(X), move(y), **{k: move(v) for k, v in fit_params.items()}
        )
        final = fitted.best_estimator_[-1] if pipeline else fitted.best_estimator_
        _assert_on(device, final.coef_, final.intercept_)
        # refit on the input from the engine's solution on the host copy
        assert int(final.n_iter_[0]) == 0
        for method_name in ("predict", "predict_proba", "decision_function"):
            output = getattr(fitted, method_name)(move(X))
            _assert_on(device, output)
            assert_allclose(
                to_numpy(output),
                getattr(reference, method_name)(X),
                rtol=1e-4,
                atol=1e-6,
            )
        score = fitted.score(move(X), move(y))
    assert fitted.best_params_ == reference.best_params_
    assert_allclose(
        fitted.cv_results_["mean_test_score"], reference.cv_results_["mean_test_score"]
    )
    assert_allclose(
        fitted.cv_results_["outer_loss"], reference.cv_results_["outer_loss"]
    )
    assert_allclose(score, reference.score(X, y), rtol=1e-6)


@needs_dispatch
def test_dispatch_bilevel_search_estimator_without_array_api_is_a_clear_error():
    X, y = load_iris(return_X_y=True)
    search = BilevelSearchCV(RidgeClassifier(), {"alpha": (1e-2, 1e2)}, cv=3)
    with config_context(array_api_dispatch=True):
        with pytest.raises(ValueError, match="RidgeClassifier .* does not support"):
            search.fit(xps.asarray(X), xps.asarray(y))


@pytest.mark.skipif(DISPATCH, reason="the dispatch tests run in this process")
def test_dispatch_tests_in_a_subprocess():
    """SCIPY_ARRAY_API is read when SciPy is imported: set it in a fresh process."""
    root = Path(__file__).resolve().parents[1]
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(Path(__file__).relative_to(root)),
            "-q",
            "-p",
            "no:cacheprovider",
            "-k",
            "test_dispatch_ and not subprocess",
        ],
        cwd=root,
        env={**os.environ, "SCIPY_ARRAY_API": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    assert "skipped" not in output, output
