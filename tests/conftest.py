import numpy as np
import pytest
from sklearn.datasets import make_classification
from threadpoolctl import threadpool_limits


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="module")
def one_blas_thread():
    # The problems of the BilevelSearchCV tests are tiny: BLAS threads only add
    # synchronization (on two shared cores, they made those tests 1.6x slower).
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(scope="module")
def small_classification():
    return make_classification(n_samples=120, n_features=6, random_state=0)
