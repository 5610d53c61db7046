"""CuPy tests: run only where CuPy sees a CUDA device (``pytest -m gpu``)."""

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
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cupy_input_matches_numpy(dtype):
    from sklearn.datasets import load_digits
    from sklearn.preprocessing import StandardScaler

    from skbilevel import HOAGLogisticRegression

    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X).astype(dtype)
    params = dict(C_init=1.0, max_iter=3, tol=1e-12)
    with pytest.warns(Warning):
        reference = HOAGLogisticRegression(**params).fit(X, y)
    with pytest.warns(Warning):
        model = HOAGLogisticRegression(**params).fit(cupy.asarray(X), cupy.asarray(y))
    assert isinstance(model.coef_, cupy.ndarray)
    rtol = 1e-3 if dtype == np.float32 else 1e-6
    assert_allclose(model.C_, reference.C_, rtol=rtol)
    assert_allclose(cupy.asnumpy(model.coef_), reference.coef_, rtol=rtol, atol=rtol)
    proba = model.predict_proba(cupy.asarray(X))
    assert_allclose(cupy.asnumpy(proba), reference.predict_proba(X), atol=rtol)


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
    assert isinstance(gpu.coef_, np.ndarray)
    assert_allclose(gpu.C_, cpu.C_, rtol=1e-4)
    assert_allclose(gpu.predict_proba(X), cpu.predict_proba(X), atol=1e-5)
    dense = HOAGLogisticRegression(max_iter=5, device="cuda").fit(
        sp.csr_matrix(X).toarray(), y
    )
    assert_allclose(dense.C_, cpu.C_, rtol=1e-4)


@pytest.mark.parametrize("sparse", [False, True])
def test_bilevel_search_on_cuda_matches_cpu(sparse):
    import scipy.sparse as sp
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from skbilevel import BilevelSearchCV

    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    if sparse:
        X = sp.csr_matrix(np.where(np.abs(X) > 1, X, 0.0))
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
