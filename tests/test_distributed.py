"""The folds on other joblib backends: a dask cluster of worker processes, loky,
multiprocessing and ray give the threaded search's points and losses, and the
fold evaluations are counted where they ran (a run on the client fails)."""

import sys

import numpy as np
import pytest
from joblib import parallel_config
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skbilevel import BilevelSearchCV
from skbilevel.hypergrad import get_linear_solver
from skbilevel.linear_model import HOAGLogisticRegression
from skbilevel.objectives import L2Penalty
from skbilevel.outer import CrossValidatedProblem
from skbilevel.outer._fold_eval import (
    FoldSettings,
    evaluate_fold,
    evaluations_in_this_process,
    initial_state,
)

from ._problems import make_data, make_folds

pytestmark = [
    pytest.mark.usefixtures("one_blas_thread"),
    pytest.mark.filterwarnings(
        "ignore:The search for:sklearn.exceptions.ConvergenceWarning",
    ),
]

N_FOLDS = 3


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        with distributed.Client(cluster) as client:
            yield client


@pytest.fixture(scope="module")
def breast_cancer():
    X, y = load_breast_cancer(return_X_y=True)
    return X[::2], y[::2]


def _folds(sparse=False):
    X, y, loss, _, _ = make_data("binary", 150, 8, seed=3, sparse=sparse)
    y = loss.encode(np, y, np.arange(2), X.dtype)
    splits = list(KFold(N_FOLDS, shuffle=True, random_state=0).split(X))
    return make_folds(X, y, splits, loss=loss, penalty=L2Penalty.scalar(), n_outputs=1)


def _evaluations(problem, points=(1.0, 0.0, 0.5)):
    """Gradient evaluations along ``points``, then the polish's Newton re-solve."""
    out = [problem.evaluate([lam]) for lam in points]
    out.append(problem.evaluate([0.5], inner_tol=1e-8, gradient=False, newton=True))
    return out


def _worker_evaluations(client):
    return sum(client.run(evaluations_in_this_process).values())


class _Counted:
    """Fold evaluations here and on the workers during the block."""

    def __init__(self, client=None):
        self.client = client

    def __enter__(self):
        self.here = evaluations_in_this_process()
        self.workers = 0 if self.client is None else _worker_evaluations(self.client)
        return self

    def __exit__(self, *exc):
        self.here = evaluations_in_this_process() - self.here
        if self.client is not None:
            self.workers = _worker_evaluations(self.client) - self.workers


# Same BLAS, one thread on both sides (the fixture here, dask's environment on
# its workers), and the folds' arrays unpacked aligned on the workers: the
# backends give the threads' results to the bit.
def _assert_same(actual, expected):
    assert_array_equal(
        np.asarray(actual, dtype=float), np.asarray(expected, dtype=float)
    )


def _assert_same_history(history, reference):
    assert len(history) == len(reference)
    for record, expected in zip(history, reference):
        assert record["phase"] == expected["phase"]
        assert record["accepted"] == expected["accepted"]
        for key in ("lam", "value", "fold_values", "grad"):
            if expected[key] is None:
                assert record[key] is None
            else:
                _assert_same(record[key], expected[key])


# -- the fold evaluation is a pure function ---------------------------------------
def test_evaluate_fold_leaves_its_state_alone():
    fold = _folds()[0]
    state = initial_state(fold)
    settings = FoldSettings(get_linear_solver("shine"), 1000, 10, True, 1e-6, 1e-4,
                            True, False)  # fmt: skip
    first = evaluate_fold(fold, state, np.array([0.5]), settings)
    again = evaluate_fold(fold, state, np.array([0.5]), settings)
    assert not np.any(state.w) and state.memory is None
    assert first.value == again.value
    assert_array_equal(first.grad, again.grad)
    assert_array_equal(first.state.w, again.state.w)
    # the state it returns warm-starts the next call
    warm = evaluate_fold(fold, first.state, np.array([0.6]), settings)
    cold = evaluate_fold(fold, state, np.array([0.6]), settings)
    assert warm.n_iter < cold.n_iter


def test_one_job_calls_the_folds_here_without_joblib(monkeypatch):
    # n_jobs=None and no backend active: the folds are called in turn, here,
    # without a joblib.Parallel, and give the threads' results to the bit;
    # with jobs, joblib runs them
    from skbilevel.outer import problem as problem_module

    reference = _evaluations(
        CrossValidatedProblem(_folds(), get_linear_solver("shine"), n_jobs=2)
    )
    parallel = problem_module.Parallel
    made = []

    def counted_parallel(*args, **kwargs):
        made.append(kwargs.get("n_jobs"))
        return parallel(*args, **kwargs)

    monkeypatch.setattr(problem_module, "Parallel", counted_parallel)
    problem = CrossValidatedProblem(_folds(), get_linear_solver("shine"))
    with _Counted() as counted:
        evaluations = _evaluations(problem)
    assert made == [] and counted.here == 4 * N_FOLDS
    for evaluation, expected in zip(evaluations, reference):
        _assert_same(evaluation.fold_values, expected.fold_values)
        if expected.grad is not None:
            _assert_same(evaluation.grad, expected.grad)
    with parallel_config(n_jobs=2):
        problem.evaluate([0.5])
    assert made == [None]


# -- a dask cluster of two worker processes ----------------------------------------
def test_problem_scatters_its_folds_once(dask_client, monkeypatch):
    threaded = CrossValidatedProblem(
        _folds(sparse=True), get_linear_solver("cg"), n_jobs=2
    )
    reference = _evaluations(threaded)
    scattered = []
    scatter = dask_client.scatter

    def counting_scatter(data, *args, **kwargs):
        scattered.append(data)
        return scatter(data, *args, **kwargs)

    monkeypatch.setattr(dask_client, "scatter", counting_scatter)
    problem = CrossValidatedProblem(
        _folds(sparse=True), get_linear_solver("cg"), n_jobs=2
    )
    with _Counted(dask_client) as counted, parallel_config(backend="dask"):
        evaluations = _evaluations(problem)
    assert counted.here == 0
    assert counted.workers == len(evaluations) * N_FOLDS
    # the folds went to the workers once, as one list; the calls carried futures
    assert len(scattered) == 1 and len(scattered[0]) == N_FOLDS
    for evaluation, expected in zip(evaluations, reference):
        _assert_same(evaluation.fold_values, expected.fold_values)
        if expected.grad is not None:
            _assert_same(evaluation.grad, expected.grad)
    assert evaluations[-1].inner_converged
    # the warm starts came back to the client: the threaded run's solutions
    for w, expected in zip(problem.solutions(), threaded.solutions()):
        _assert_same(w, expected)


def test_searches_run_their_folds_on_dask_workers(dask_client, breast_cancer):
    X, y = breast_cancer
    X = StandardScaler().fit_transform(X)
    with _Counted() as threaded:
        reference = HOAGLogisticRegression(cv=N_FOLDS, n_jobs=2).fit(X, y)
    # every fold evaluation (bracket, gradient steps, polish) ran here...
    assert threaded.here >= len(reference.history_) * N_FOLDS
    with _Counted(dask_client) as counted, parallel_config(backend="dask"):
        search = HOAGLogisticRegression(cv=N_FOLDS, n_jobs=2).fit(X, y)
    # ... and the same ones on the workers, none on the client
    assert counted.here == 0
    assert counted.workers == threaded.here
    _assert_same_history(search.history_, reference.history_)
    _assert_same(search.C_, reference.C_)
    _assert_same(search.coef_, reference.coef_)

    X, y = breast_cancer
    pipe = make_pipeline(StandardScaler(), LogisticRegression())
    space = {"logisticregression__C": (0.01, 100)}
    with _Counted() as threaded:
        reference = BilevelSearchCV(pipe, space, cv=N_FOLDS, n_jobs=2).fit(X, y)
    with _Counted(dask_client) as counted, parallel_config(backend="dask"):
        search = BilevelSearchCV(pipe, space, cv=N_FOLDS, n_jobs=2).fit(X, y)
    assert counted.here == 0
    assert counted.workers == threaded.here
    assert threaded.here >= len(reference.cv_results_["params"]) * N_FOLDS
    for key in ("outer_loss", "mean_test_score", "param_logisticregression__C"):
        _assert_same(search.cv_results_[key], reference.cv_results_[key])
    assert search.best_params_ == reference.best_params_


# -- joblib's own process backends -------------------------------------------------
@pytest.mark.parametrize("backend", ["loky", "multiprocessing"])
def test_process_backends(backend):
    if backend == "multiprocessing" and sys.platform == "win32":
        pytest.skip("multiprocessing pools need an importable __main__ on Windows")
    reference = _evaluations(
        CrossValidatedProblem(_folds(), get_linear_solver("shine"), n_jobs=2)
    )
    problem = CrossValidatedProblem(_folds(), get_linear_solver("shine"), n_jobs=2)
    with _Counted() as counted, parallel_config(backend=backend):
        with problem.parallel():
            evaluations = _evaluations(problem)
    assert counted.here == 0
    # their workers' BLAS threads are the machine's, not one as here
    for evaluation, expected in zip(evaluations, reference):
        assert_allclose(evaluation.fold_values, expected.fold_values, rtol=1e-12)


# -- ray ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_backend():
    ray = pytest.importorskip("ray")
    from ray.util.joblib import register_ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    register_ray()
    yield
    ray.shutdown()


@pytest.mark.slow
def test_search_runs_its_folds_on_ray(ray_backend, breast_cancer):
    X, y = breast_cancer
    X = StandardScaler().fit_transform(X)
    with _Counted() as threaded:
        reference = HOAGLogisticRegression(cv=N_FOLDS, n_jobs=2).fit(X, y)
    with _Counted() as counted, parallel_config(backend="ray"):
        search = HOAGLogisticRegression(cv=N_FOLDS, n_jobs=2).fit(X, y)
    assert threaded.here > 0 and counted.here == 0
    _assert_same_history(search.history_, reference.history_)
    _assert_same(search.C_, reference.C_)

    # one pool of ray actors for a block of evaluations, not one per evaluation
    expected = _evaluations(
        CrossValidatedProblem(_folds(), get_linear_solver("shine"), n_jobs=2)
    )
    problem = CrossValidatedProblem(_folds(), get_linear_solver("shine"), n_jobs=2)
    with _Counted() as counted, parallel_config(backend="ray"):
        with problem.parallel():
            evaluations = _evaluations(problem)
    assert counted.here == 0
    for evaluation, reference in zip(evaluations, expected):
        _assert_same(evaluation.fold_values, reference.fold_values)
