"""CuPy tests: run only where CuPy sees a CUDA device (``pytest -m gpu``).

``benchmarks/gpu_check.py`` runs them (with ``SCIPY_ARRAY_API=1``, which the
tests of scikit-learn's array API dispatch need) and times the GPU in one call.
"""

import os

import numpy as np
import pytest
from numpy.testing import assert_allclose

cupy = pytest.importorskip("cupy")
try:
    _HAS_DEVICE = cupy.cuda.runtime.getDeviceCount() > 0
except Exception:  # no driver
    _HAS_DEVICE = False

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not _HAS_DEVICE, reason="CuPy sees no CUDA device"),
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
]
needs_dispatch = pytest.mark.skipif(
    os.environ.get("SCIPY_ARRAY_API") != "1",
    reason="scikit-learn's array API dispatch needs SCIPY_ARRAY_API=1 set before "
    "SciPy is imported",
)


def _on_gpu(*arrays):
    for a in arrays:
        assert isinstance(a, cupy.ndarray), type(a)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cupy_input_matches_numpy(dtype):
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from skbilevel import HOAGLogisticRegression

    X, y = load_digits(return_X_y=True)
    X64 = StandardScaler().fit_transform(X)
    X = X64.astype(dtype)
    params = dict(C_init=1.0, max_iter=3, tol=1e-12)
    with pytest.warns(Warning):
        reference = HOAGLogisticRegression(**params).fit(X, y)
    with pytest.warns(Warning):
        model = HOAGLogisticRegression(**params).fit(cupy.asarray(X), cupy.asarray(y))
    # Every fitted array on the GPU; classes_ stays NumPy (labels may be strings).
    _on_gpu(model.coef_, model.intercept_, model.lambda_)
    assert isinstance(model.classes_, np.ndarray)
    if dtype == np.float64:
        assert_allclose(model.C_, reference.C_, rtol=1e-6)
        expected, X_expected, atol = reference, X, 1e-6
    else:
        # In float32 the search's path depends on the order of the sums: on
        # NumPy alone, permuting the features moved C_ after these three steps
        # by up to 3.5% and cv_loss_ by 1e-4 (relative). The GPU's reductions,
        # in another order, land within that spread (the first GPU run: C_
        # 0.4105 against NumPy's 0.4149, which a 1e-3 tolerance failed). The
        # fitted model is then checked against scikit-learn's at the C_ the GPU
        # chose: the refit stops at polish_tol=1e-4 (4e-3 from the exact
        # coefficients on NumPy, float32 or float64).
        assert_allclose(model.C_, reference.C_, rtol=0.05)
        assert_allclose(model.cv_loss_, reference.cv_loss_, rtol=2e-4)
        expected = LogisticRegression(C=float(model.C_), tol=1e-10, max_iter=10_000)
        expected, X_expected, atol = expected.fit(X64, y), X64, 1e-2
    assert_allclose(cupy.asnumpy(model.coef_), expected.coef_, atol=atol)
    proba = model.predict_proba(cupy.asarray(X))
    _on_gpu(proba, model.decision_function(cupy.asarray(X)))
    assert_allclose(cupy.asnumpy(proba), expected.predict_proba(X_expected), atol=atol)
    labels = model.predict(cupy.asarray(X))
    _on_gpu(labels)
    assert np.mean(cupy.asnumpy(labels) == expected.predict(X_expected)) > 0.99
    with pytest.raises(ValueError, match="must use the same namespace"):
        model.predict(X)  # NumPy input to a CuPy model


def test_device_cuda_with_numpy_and_sparse_input():
    import scipy.sparse as sp

    from skbilevel import HOAGLogisticRegression

    rng = np.random.default_rng(0)
    X = sp.random(3000, 1000, density=0.01, format="csr", random_state=rng)
    X.data = rng.standard_normal(X.nnz)
    # Logistic noise on the logits: P(y = 1 | x) = expit(x @ coef).
    y = (X @ rng.standard_normal(1000) > rng.logistic(size=3000)).astype(int)
    cpu = HOAGLogisticRegression(max_iter=5).fit(X, y)
    gpu = HOAGLogisticRegression(max_iter=5, device="cuda").fit(X, y)
    # device="cuda": every fitted array back on the host.
    for name in ("coef_", "intercept_", "lambda_"):
        assert isinstance(getattr(gpu, name), np.ndarray), name
    assert_allclose(gpu.C_, cpu.C_, rtol=1e-4)
    assert_allclose(gpu.predict_proba(X), cpu.predict_proba(X), atol=1e-5)
    X_gpu = cupyx_csr(X)
    assert isinstance(gpu.predict_proba(X_gpu), np.ndarray)  # any input, NumPy out
    assert_allclose(gpu.predict_proba(X_gpu), cpu.predict_proba(X), atol=1e-5)
    dense = HOAGLogisticRegression(max_iter=5, device="cuda").fit(
        sp.csr_matrix(X).toarray(), y
    )
    assert_allclose(dense.C_, cpu.C_, rtol=1e-4)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("sparse", [False, True])
def test_bilevel_search_on_cuda_matches_cpu(sparse, dtype):
    # float32 data travel as float32 and are converted to float64 on the GPU:
    # the search is the CPU's float64 search, to round-off.
    import scipy.sparse as sp
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from skbilevel import BilevelSearchCV

    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X).astype(dtype)
    if sparse:
        X = sp.csr_matrix(np.where(np.abs(X) > 1, X, 0).astype(dtype))
    searches = [
        BilevelSearchCV(
            LogisticRegression(), {"C": (1e-3, 1e3)}, cv=3, device=device
        ).fit(X, y)
        for device in (None, "cuda")
    ]
    cpu, gpu = (search.cv_results_ for search in searches)
    assert len(cpu["params"]) == len(gpu["params"])
    assert_allclose(gpu["outer_loss"], cpu["outer_loss"], rtol=1e-6)
    assert_allclose(
        searches[1].best_params_["C"], searches[0].best_params_["C"], rtol=1e-6
    )


def cupyx_csr(X):
    import cupyx.scipy.sparse as cusp

    return cusp.csr_matrix(X)


@needs_dispatch
@pytest.mark.parametrize("dtype_name", ["float64", "float32"])
def test_scikit_learn_array_api_checks_on_cupy(dtype_name):
    from sklearn.linear_model import LogisticRegression
    from sklearn.utils.estimator_checks import (
        check_array_api_input,
        check_array_api_same_namespace,
    )

    from skbilevel import BilevelSearchCV, HOAGLogisticRegression

    for estimator in (
        HOAGLogisticRegression(max_iter=5),
        BilevelSearchCV(LogisticRegression(), {"C": (1e-2, 1e2)}, max_iter=3),
    ):
        check_array_api_input(
            type(estimator).__name__,
            estimator,
            array_namespace="cupy",
            dtype_name=dtype_name,
            check_values=dtype_name == "float64",
        )
    check_array_api_same_namespace(
        "HOAGLogisticRegression",
        HOAGLogisticRegression(C_init=1.0, max_iter=2),
        array_namespace="cupy",
    )


@needs_dispatch
@pytest.mark.parametrize("device", [None, "cuda"])
def test_bilevel_search_follows_cupy_input_under_dispatch(device):
    """As GridSearchCV: the search runs on a host copy (on the GPU again with
    device="cuda") and best_estimator_ is refit on the CuPy input."""
    from sklearn import config_context
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from skbilevel import BilevelSearchCV

    X, y = load_digits(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), LogisticRegression())
    search = BilevelSearchCV(
        pipe, {"logisticregression__C": (1e-3, 1e3)}, cv=3, device=device
    )
    reference = BilevelSearchCV(pipe, {"logisticregression__C": (1e-3, 1e3)}, cv=3)
    reference.fit(X, y)
    with config_context(array_api_dispatch=True):
        search.fit(cupy.asarray(X), cupy.asarray(y))
        _on_gpu(search.best_estimator_[-1].coef_)
        proba = search.predict_proba(cupy.asarray(X))
        _on_gpu(proba)
    assert_allclose(
        search.cv_results_["outer_loss"], reference.cv_results_["outer_loss"], rtol=1e-6
    )
    assert_allclose(cupy.asnumpy(proba), reference.predict_proba(X), atol=1e-4)


@pytest.mark.skipif(
    not _HAS_DEVICE or cupy.cuda.runtime.getDeviceCount() < 2,
    reason="needs a second GPU",
)
def test_cupy_input_on_a_second_gpu():
    """array_api_compat's CuPy creation functions allocate on the *current*
    device whatever ``device=`` says, so a fit on GPU 1 runs inside its context."""
    from sklearn.datasets import load_digits
    from sklearn.preprocessing import StandardScaler

    from skbilevel import HOAGLogisticRegression

    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    reference = HOAGLogisticRegression(C_init=1.0, max_iter=2).fit(X, y)
    with cupy.cuda.Device(1):
        X_1 = cupy.asarray(X)
        model = HOAGLogisticRegression(C_init=1.0, max_iter=2).fit(X_1, y)
        proba = model.predict_proba(X_1)
    assert model.coef_.device.id == 1 and proba.device.id == 1
    assert_allclose(cupy.asnumpy(proba), reference.predict_proba(X), atol=1e-6)
