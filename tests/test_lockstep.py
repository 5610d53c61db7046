"""Folds that share one matrix, solved in lockstep (skbilevel.outer._lockstep).

The grouped products change nothing but round-off: every evaluation equals
the folds' separate solves, the searches choose the same value, the results
are the same from run to run, and a failure in any fold (or in a grouped
product) is raised without leaving a thread behind.
"""

import threading
import types

import numpy as np
import pytest
import scipy.sparse as sp
from joblib import parallel_config
from numpy.testing import assert_allclose, assert_array_equal
from sklearn import config_context, get_config
from sklearn.model_selection import KFold

import skbilevel.outer._lockstep as lockstep_module
import skbilevel.outer.problem as problem_module
from skbilevel import HOAGLogisticRegression
from skbilevel.hypergrad import get_linear_solver
from skbilevel.objectives._products import adjoint, forward
from skbilevel.objectives._products import grouped as grouped_products
from skbilevel.outer import CrossValidatedProblem, _fold_eval
from skbilevel.outer._lockstep import Lockstep, shared_source

from . import test_fold_storage
from ._problems import make_data
from .test_fold_storage import _engine

view_everything = test_fold_storage.view_everything  # the fixture, shared


@pytest.fixture
def grouped(monkeypatch):
    """Lockstep solves whatever the data's size; ``grouped.sizes`` lists the
    number of operands of every grouped product since, ``grouped.asks`` the
    number of products asked in every round."""
    monkeypatch.setattr(lockstep_module, "MIN_BYTES", 0)
    sizes, asks = [], []
    original, serve = lockstep_module.grouped, Lockstep._serve

    def counted(source, source_t, kind, operands):
        sizes.append(len(operands))
        return original(source, source_t, kind, operands)

    def counted_serve(self, round_asks):
        asks.append(len(round_asks))
        return serve(self, round_asks)

    monkeypatch.setattr(lockstep_module, "grouped", counted)
    monkeypatch.setattr(Lockstep, "_serve", counted_serve)
    return types.SimpleNamespace(sizes=sizes, asks=asks)


def _problem(engine, *, lockstep, monkeypatch, **kwargs):
    monkeypatch.setattr(problem_module, "LOCKSTEP", lockstep)
    return CrossValidatedProblem(
        engine, get_linear_solver("shine-refine"), inner_solver="newton-cg", **kwargs
    )


def _shared_engine(loss_name, sparse, fit_intercept=True, n_splits=4):
    X, y, *_ = make_data(loss_name, 90, 7, 3, sparse=sparse)
    splits = list(KFold(n_splits, shuffle=True, random_state=0).split(X))
    _, engine, penalty = _engine(
        "view", X, y, splits, loss_name=loss_name, fit_intercept=fit_intercept,
        weighted=True,
    )  # fmt: skip
    return X, engine, penalty


def _evaluations(problem, n_hyper):
    lams = [np.full(n_hyper, 1.0), np.full(n_hyper, -0.5)]  # the second warm
    return [
        problem.evaluate(lam, inner_tol=1e-9, linear_tol=1e-9, floor=None)
        for lam in lams
    ]


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
@pytest.mark.parametrize("loss_name", ["binary", "multinomial", "squared"])
def test_lockstep_evaluations_are_the_separate_ones(
    loss_name, sparse, fit_intercept, grouped, monkeypatch
):
    monkeypatch.setattr(_fold_eval, "_DIRECT", False)  # squared: products too
    X, engine, penalty = _shared_engine(loss_name, sparse, fit_intercept)
    results = []
    for lockstep in (False, True):
        problem = _problem(engine, lockstep=lockstep, monkeypatch=monkeypatch)
        assert (problem._lockstep is not None) == lockstep
        grouped.sizes.clear()
        grouped.asks.clear()
        results.append((_evaluations(problem, penalty.n_hyper), problem.solutions()))
        # every product of the four folds went through one grouped product
        # while they all ran, and most products were grouped
        assert (max(grouped.sizes, default=0) == 4) == lockstep
        # (93.9% at least on these problems, the folds' ends where the
        # first have stopped; none asked without lockstep)
        if lockstep:
            assert sum(grouped.sizes) >= 0.9 * sum(grouped.asks) > 0
        else:
            assert not grouped.asks
    (separate, w_separate), (together, w_together) = results
    for a, b in zip(separate, together):
        assert_allclose(a.fold_values, b.fold_values, rtol=1e-9)
        assert_allclose(a.grad, b.grad, rtol=1e-7, atol=1e-12)
    # (the solves stop at 1e-9 of the gradient at zero: round-off may move
    # that point within the tolerance)
    for a, b in zip(w_separate, w_together):
        assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_lockstep_results_repeat_exactly(grouped, monkeypatch):
    X, engine, penalty = _shared_engine("multinomial", sparse=False)
    runs = [
        _evaluations(
            _problem(engine, lockstep=True, monkeypatch=monkeypatch), penalty.n_hyper
        )
        for _ in range(2)
    ]
    assert grouped.sizes
    for a, b in zip(*runs):
        assert a.value == b.value
        assert_array_equal(a.grad, b.grad)


def test_lockstep_only_where_it_pays(grouped, monkeypatch):
    X, engine, penalty = _shared_engine("binary", sparse=False)
    assert shared_source(engine) is X
    assert shared_source(engine[:1]) is None  # one fold: nothing to group
    monkeypatch.setattr(lockstep_module, "MIN_BYTES", X.nbytes + 1)
    assert shared_source(engine) is None  # a pass over X costs little
    monkeypatch.setattr(lockstep_module, "MIN_BYTES", 0)
    # folds with rows of their own
    Xc, yc, *_ = make_data("binary", 60, 5, 1)
    splits = list(KFold(3).split(Xc))
    _, copies, _ = _engine(
        "copy", Xc, yc, splits, loss_name="binary", fit_intercept=True,
        weighted=False,
    )  # fmt: skip
    assert shared_source(copies) is None
    # folds solved in parallel are not put in lockstep
    problem = _problem(engine, lockstep=True, monkeypatch=monkeypatch, n_jobs=2)
    grouped.sizes.clear()
    problem.evaluate(np.zeros(penalty.n_hyper), inner_tol=1e-6, linear_tol=1e-6)
    assert grouped.sizes == []
    # nor folds a backend ships elsewhere (processes, a cluster)
    problem = _problem(engine, lockstep=True, monkeypatch=monkeypatch)
    with parallel_config(backend="multiprocessing"):
        problem.evaluate(np.zeros(penalty.n_hyper), inner_tol=1e-6, linear_tol=1e-6)
    assert grouped.sizes == []
    problem.evaluate(np.zeros(penalty.n_hyper), inner_tol=1e-6, linear_tol=1e-6)
    assert grouped.sizes  # here, in this process


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
def test_grouped_products_are_the_products(sparse):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 8))
    X = sp.csr_matrix(np.where(np.abs(X) > 1, X, 0.0)) if sparse else X
    operands = [rng.standard_normal(8), rng.standard_normal((8, 3))]
    for got, v in zip(grouped_products(X, X.T, "forward", operands), operands):
        assert_allclose(got, X @ v, rtol=1e-13)
    cotangents = [rng.standard_normal((30, 2)), rng.standard_normal(30)]
    for got, r in zip(grouped_products(X, X.T, "adjoint", cotangents), cotangents):
        assert_allclose(got, X.T @ r, rtol=1e-13)


def _tasks(X, fail=None, steps=None, error=ValueError):
    """Tasks that each ask a few products with X (task ``fail`` raises
    ``error`` after two rounds); ``steps[k]`` counts task k's rounds."""

    def task(k):
        def run():
            v = np.full(X.shape[1], float(k))
            for step in range(k + 3):
                v = adjoint(X, X.T, forward(X, v)) / 100.0
                if steps is not None:
                    steps[k] = step + 1
                if step == 1 and k == fail:
                    raise error(f"fold {k} failed")
            return v

        return run

    return [task(k) for k in range(3)]


def test_lockstep_run_returns_each_task_result():
    X = np.random.default_rng(1).standard_normal((20, 4))
    results = Lockstep(X).run(_tasks(X))
    assert_allclose(results, [t() for t in _tasks(X)], rtol=1e-13)


@pytest.mark.parametrize("error", [ValueError, KeyboardInterrupt])
def test_a_failing_fold_stops_the_others_and_leaves_no_thread(error):
    X = np.random.default_rng(1).standard_normal((20, 4))
    before = threading.active_count()
    steps = {}
    with pytest.raises(error, match="fold 0 failed"):
        Lockstep(X).run(_tasks(X, fail=0, steps=steps, error=error))
    assert threading.active_count() == before
    # the others asked one product more (answered by the abort), not the
    # rounds they had left (4 and 5)
    assert steps == {0: 2, 1: 2, 2: 2}


def test_an_interrupted_caller_stops_every_fold(monkeypatch):
    X = np.random.default_rng(1).standard_normal((20, 4))

    class Interrupted:
        """A semaphore whose first wait is interrupted (as by Ctrl-C)."""

        def __init__(self, value):
            self.semaphore, self.interrupted = threading.Semaphore(value), False

        def release(self):
            self.semaphore.release()

        def acquire(self):
            if not self.interrupted:
                self.interrupted = True
                raise KeyboardInterrupt
            self.semaphore.acquire()

    original = lockstep_module._Meeting.__init__

    def init(meeting, *args):
        original(meeting, *args)
        meeting.paused = Interrupted(0)

    monkeypatch.setattr(lockstep_module._Meeting, "__init__", init)
    before = threading.active_count()
    steps = {}
    with pytest.raises(KeyboardInterrupt):
        Lockstep(X).run(_tasks(X, steps=steps))
    assert threading.active_count() == before
    assert steps == {}  # none got an answer: stopped at its first product


def test_a_lockstep_runs_one_set_of_tasks_at_a_time():
    X = np.ones((5, 2))
    lockstep = Lockstep(X)
    with pytest.raises(RuntimeError, match="one set of tasks at a time"):
        lockstep.run([lambda: lockstep.run([lambda: None])])
    assert lockstep.run([lambda: 1, lambda: 2]) == [1, 2]  # usable again


def test_a_failing_grouped_product_raises_and_leaves_no_thread(monkeypatch):
    X = np.random.default_rng(1).standard_normal((20, 4))

    def broken(source, source_t, kind, operands):
        raise MemoryError("no room for the grouped product")

    monkeypatch.setattr(lockstep_module, "grouped", broken)
    before = threading.active_count()
    with pytest.raises(MemoryError, match="no room"):
        Lockstep(X).run(_tasks(X))
    assert threading.active_count() == before


def test_the_folds_see_the_callers_configuration():
    X = np.ones((5, 2))

    def settings():
        forward(X, np.ones(2))
        return get_config()["assume_finite"], np.geterr()["over"]

    with config_context(assume_finite=True), np.errstate(over="raise"):
        assert Lockstep(X).run([settings, settings]) == [(True, "raise")] * 2


def test_hoag_chooses_the_same_C_in_lockstep(grouped, view_everything, monkeypatch):
    X, y, *_ = make_data("binary", 150, 6, 4, sparse=True)
    models = []
    for lockstep in (False, True):
        monkeypatch.setattr(problem_module, "LOCKSTEP", lockstep)
        view_everything(True)
        grouped.sizes.clear()
        models.append(HOAGLogisticRegression(tol=1e-8, cv=3).fit(X, y))
        assert bool(grouped.sizes) == lockstep
    assert_allclose(models[0].C_, models[1].C_, rtol=1e-6)
    assert_allclose(models[0].coef_, models[1].coef_, rtol=1e-6, atol=1e-9)


def test_a_round_serves_one_kind_of_product():
    # the kind more folds ask for; a tie goes to the fold that waited
    # longest (then forward); the folds a step out of phase wait a round
    from skbilevel.outer._lockstep import _one_kind

    asks = {0: ("forward", 0), 1: ("adjoint", 1), 2: ("forward", 2)}
    assert set(_one_kind(asks, dict.fromkeys(asks, 0))) == {0, 2}
    tie = {0: ("forward", 0), 1: ("adjoint", 1)}
    assert set(_one_kind(tie, {0: 0, 1: 0})) == {0}
    assert set(_one_kind(tie, {0: 0, 1: 1})) == {1}
    assert set(_one_kind({3: ("adjoint", 3)}, {3: 0})) == {3}


def test_folds_out_of_phase_are_served_in_rounds_of_one_kind(grouped, monkeypatch):
    # a fold asking for another kind of product than the others waits a
    # round: no round passes over the matrix twice, every product is served
    # and each fold's results are its own
    X = np.random.default_rng(0).standard_normal((40, 6))
    source = X
    lockstep = Lockstep(source)
    kinds = []
    serve = lockstep._serve

    def recorded(asks):
        kinds.append({kind for kind, _ in asks.values()})
        return serve(asks)

    monkeypatch.setattr(lockstep, "_serve", recorded)
    v = np.ones(6)

    def task(pattern):
        def run():
            out = []
            for kind in pattern:
                if kind == "F":
                    out.append(forward(source, v))
                else:
                    out.append(adjoint(source, source.T, np.ones(40)))
            return out

        return run

    patterns = ["FAFA", "FAAFA", "AFAF", "FFAA"]
    results = lockstep.run([task(p) for p in patterns])
    assert all(len(kind) == 1 for kind in kinds)
    for pattern, out in zip(patterns, results):
        assert len(out) == len(pattern)
        for kind, got in zip(pattern, out):
            want = X @ v if kind == "F" else X.T @ np.ones(40)
            assert_allclose(got, want, rtol=1e-12)
