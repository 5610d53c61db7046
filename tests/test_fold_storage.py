"""Fold storage: each fold's rows copied, or read in place from one shared X.

The two storages of :func:`~skbilevel.search.materialize_folds` give the same
objectives, derivatives, hypergradients and search results up to round-off;
the shared one holds no rows of its own.
"""

from contextlib import nullcontext

import numpy as np
import pytest
import scipy.sparse as sp
from joblib import parallel_config
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import skbilevel.search._folds as folds_module
from skbilevel import BilevelSearchCV, HOAGLogisticRegression
from skbilevel.hypergrad import get_linear_solver
from skbilevel.hypergrad.implicit import hypergradient
from skbilevel.model_selection import LogisticRegressionAdapter, RidgeAdapter
from skbilevel.objectives import InnerObjective, LinearPredictor, ValidationLoss
from skbilevel.outer import CrossValidatedProblem, _fold_eval
from skbilevel.outer._placement import _cloudpickle
from skbilevel.search import engine_folds, fold_weights, materialize_folds
from skbilevel.search._folds import RowView, _take_rows
from skbilevel.utils._array_api import nbytes

from ._problems import make_data, make_penalty
from .test_objectives import central_difference


def _matrix(sparse, n_samples=40, n_features=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_samples, n_features))
    X[rng.random(X.shape) < 0.5] = 0.0
    return sp.csr_matrix(X) if sparse else X


def _dense(X):
    return X.toarray() if sp.issparse(X) else np.asarray(X)


# -- the predictor and the objectives on rows of a shared X ------------------------
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("n_outputs", [1, 3])
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
def test_rows_predictor_is_the_predictor_of_the_rows_copy(
    sparse, n_outputs, fit_intercept
):
    X = _matrix(sparse)
    rows = np.array([3, 0, 7, 7, 12, 39, 5])  # unsorted, one row twice
    shared = LinearPredictor(X, n_outputs, fit_intercept, rows=rows)
    copy = LinearPredictor(X[rows], n_outputs, fit_intercept)
    assert shared.n_samples == copy.n_samples == rows.size
    assert shared.source is X
    assert_array_equal(_dense(shared.X), _dense(X[rows]))
    rng = np.random.default_rng(1)
    w = rng.standard_normal(copy.n_params)
    assert_allclose(shared.raw(w), copy.raw(w), rtol=1e-13)
    cotangent = rng.standard_normal(copy.raw(w).shape)
    assert_allclose(shared.adjoint(cotangent), copy.adjoint(cotangent), rtol=1e-13)
    assert shared.zeros().shape == (copy.n_params,)


def test_rows_out_of_range_raise():
    with pytest.raises(ValueError, match="indices in"):
        LinearPredictor(_matrix(False), rows=np.array([0, 40]))


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
@pytest.mark.parametrize("loss_name", ["binary", "multinomial", "squared"])
def test_objectives_on_rows_are_those_of_the_rows_copy(
    loss_name, sparse, fit_intercept, weighted
):
    X, y, loss, n_outputs, n_classes = make_data(loss_name, 50, 5, 0, sparse=sparse)
    classes = np.arange(n_classes) if n_classes else None
    y = loss.encode(np, y, classes, np.float64)
    rng = np.random.default_rng(2)
    rows = np.sort(rng.choice(50, 30, replace=False))
    weight = rng.uniform(0.5, 2.0, rows.size) if weighted else None
    penalty = make_penalty("per_feature", 5, n_outputs)
    args = (loss, penalty, n_outputs, fit_intercept, weight)
    shared = InnerObjective(X, y[rows], *args, rows=rows)
    copy = InnerObjective(X[rows], y[rows], *args)
    w = 0.3 * rng.standard_normal(copy.n_params)
    lam = rng.uniform(-1, 1, penalty.n_hyper)
    direction = rng.standard_normal(copy.n_params)
    for ours, theirs in zip(shared.value_and_grad(w, lam), copy.value_and_grad(w, lam)):
        assert_allclose(ours, theirs, rtol=1e-12)
    assert_allclose(
        shared.hessp(w, lam)(direction), copy.hessp(w, lam)(direction), rtol=1e-12
    )
    assert_allclose(shared.hessian(w, lam), copy.hessian(w, lam), rtol=1e-12)
    # and the derivatives are those of its own value
    fd = central_difference(lambda x: float(shared.value(x, lam)), w, direction)
    assert_allclose(shared.value_and_grad(w, lam)[1] @ direction, fd, rtol=1e-6)

    outer_args = (loss, n_outputs, fit_intercept, weight)
    outer = ValidationLoss(X, y[rows], *outer_args, scale=2.0, rows=rows)
    outer_copy = ValidationLoss(X[rows], y[rows], *outer_args, scale=2.0)
    for ours, theirs in zip(outer.value_and_grad(w), outer_copy.value_and_grad(w)):
        assert_allclose(ours, theirs, rtol=1e-12)


def test_rows_of_an_array_api_namespace_are_refused():
    xps = pytest.importorskip("array_api_strict")
    X = xps.asarray(_matrix(False))
    with pytest.raises(TypeError, match="NumPy / SciPy or CuPy"):
        LinearPredictor(X, rows=np.array([0, 1]))


# -- the folds in both storages ----------------------------------------------------
def test_row_view_multiplies_and_copies_its_rows():
    X = _matrix(True)
    rows = np.array([4, 1, 9])
    view = RowView(X, rows)
    assert view.shape == (3, X.shape[1]) and view.dtype == X.dtype
    coef = np.arange(X.shape[1], dtype=float)
    assert_allclose(view @ coef, X[rows] @ coef)
    assert_array_equal(view.copy().toarray(), X[rows].toarray())
    assert_array_equal(_take_rows(view, [2, 0]).toarray(), X[[9, 4]].toarray())


def _engine(storage, X, y, splits, *, loss_name, fit_intercept, weighted, **kwargs):
    """Engine folds of the logistic (or ridge) adapter in one storage."""
    adapter = RidgeAdapter() if loss_name == "squared" else LogisticRegressionAdapter()
    final = Ridge() if loss_name == "squared" else LogisticRegression()
    encoding = adapter.encode_targets(final, y)
    folds = materialize_folds(X, y, splits, storage=storage)
    sample_weight = None
    if weighted:
        sample_weight = np.random.default_rng(7).uniform(0.5, 2.0, y.shape[0])
    weights = fold_weights(
        folds,
        y,
        sample_weight,
        lambda y_train, weight: adapter.training_weights(final, y_train, weight),
    )
    penalty = make_penalty("per_feature", X.shape[1], encoding.n_outputs)
    engine = engine_folds(
        folds,
        encoding,
        weights,
        penalty=lambda n_features: penalty,
        fit_intercept=fit_intercept,
        **kwargs,
    )
    return folds, engine, penalty


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
@pytest.mark.parametrize("loss_name", ["binary", "multinomial", "squared"])
def test_both_storages_give_the_same_fold_problems(
    loss_name, sparse, fit_intercept, weighted
):
    cloudpickle = _cloudpickle()  # what ships folds to workers
    X, y, *_ = make_data(loss_name, 60, 5, 1, sparse=sparse)
    splits = list(KFold(3, shuffle=True, random_state=0).split(X))
    common = dict(loss_name=loss_name, fit_intercept=fit_intercept, weighted=weighted)
    _, copy, penalty = _engine("copy", X, y, splits, **common)
    views, shared, _ = _engine("view", X, y, splits, **common)
    rng = np.random.default_rng(3)
    lam = rng.uniform(-1, 1, penalty.n_hyper)
    solver = get_linear_solver("cg")
    for view, ours, theirs in zip(views, shared, copy):
        assert isinstance(view.X_train, RowView) and view.X_train.source is X
        assert ours.inner.model.X is X and ours.outer.model.source is X
        # the validation loss reads the training loss's products of a
        # shared X (and keeps reading its own fold's after a trip to a worker)
        assert ours.outer.sibling is ours.inner and theirs.outer.sibling is None
        assert ours.inner._shared_rows is ours.outer.model.rows
        shipped = cloudpickle.loads(cloudpickle.dumps(ours))
        assert shipped.outer.sibling is shipped.inner
        assert shipped.inner._shared_rows is shipped.outer.model.rows
        # a shared X is not copied with a column of ones; a fold's own is
        assert ours.inner.model._with_ones is None
        assert (theirs.inner.model._with_ones is not None) == (
            fit_intercept and not sparse
        )
        w = 0.3 * rng.standard_normal(theirs.inner.n_params)
        direction = rng.standard_normal(w.size)
        pairs = [
            (ours.inner.value_and_grad(w, lam), theirs.inner.value_and_grad(w, lam)),
            (ours.inner.hessp(w, lam)(direction), theirs.inner.hessp(w, lam)(direction)),
            (ours.outer.value_and_grad(w), theirs.outer.value_and_grad(w)),
        ]  # fmt: skip
        for a, b in pairs:
            for u, v in zip(*(x if isinstance(x, tuple) else (x,) for x in (a, b))):
                assert_allclose(u, v, rtol=1e-11, atol=1e-13)
        grads = [
            hypergradient(fold.inner, fold.outer, w, lam, solver, tol=1e-10).grad
            for fold in (ours, theirs)
        ]
        assert_allclose(*grads, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("direct", [True, False])
def test_the_direct_squared_loss_solve_reads_the_shared_rows(direct, monkeypatch):
    monkeypatch.setattr(_fold_eval, "_DIRECT", direct)
    X, y, *_ = make_data("squared", 80, 6, 2)
    splits = list(KFold(4).split(X))
    settings = _fold_eval.FoldSettings(
        get_linear_solver("cg"), 1000, 10, False, 1e-10, 1e-10, True, False
    )
    lam = np.array([0.2] * 6)
    results = []
    for storage in ("copy", "view"):
        _, engine, _ = _engine(
            storage, X, y, splits, loss_name="squared", fit_intercept=True,
            weighted=True,
        )  # fmt: skip
        results.append(
            [
                _fold_eval.evaluate_fold(
                    fold, _fold_eval.initial_state(fold), lam, settings
                )
                for fold in engine
            ]
        )
    for ours, theirs in zip(*results):
        assert_allclose(ours.value, theirs.value, rtol=1e-9)
        assert_allclose(ours.grad, theirs.grad, rtol=1e-7, atol=1e-12)


def test_a_repeated_training_row_counts_as_often():
    X, y, *_ = make_data("binary", 30, 4, 3)
    train = np.array([0, 1, 1, 2, 5, 5, 5, 8, 9, 11, 14, 20, 21, 25])
    splits = [(train, np.array([3, 4, 6, 7, 10, 12, 13]))]
    common = dict(loss_name="binary", fit_intercept=True, weighted=True)
    _, (theirs,), _ = _engine("copy", X, y, splits, **common)
    _, (ours,), _ = _engine("view", X, y, splits, **common)
    w, lam = np.linspace(-1, 1, 5), np.zeros(4)
    for u, v in zip(
        ours.inner.value_and_grad(w, lam), theirs.inner.value_and_grad(w, lam)
    ):
        assert_allclose(u, v, rtol=1e-12)


def test_auto_storage_views_copies_large_next_to_the_extra_products(monkeypatch):
    X = _matrix(True, n_samples=60)
    y = np.arange(60) % 2
    folds_5 = list(StratifiedKFold(5).split(X, y))
    assert not isinstance(materialize_folds(X, y, folds_5)[0].X_train, RowView)
    # 5 copies of X; views make the products 60 / 48 = 1.25 times a copy's
    copies = 5 * nbytes(X)
    monkeypatch.setattr(folds_module, "_VIEW_BYTES_PER_SLOWDOWN", 3.9 * copies)
    assert isinstance(materialize_folds(X, y, folds_5)[0].X_train, RowView)
    monkeypatch.setattr(folds_module, "_VIEW_BYTES_PER_SLOWDOWN", 4.1 * copies)
    assert not isinstance(materialize_folds(X, y, folds_5)[0].X_train, RowView)
    # training on 12 rows of 60: products 5 times a copy's
    few = [(test, train) for train, test in folds_5]
    monkeypatch.setattr(folds_module, "_VIEW_BYTES_PER_SLOWDOWN", 0.24 * copies)
    assert isinstance(materialize_folds(X, y, few)[0].X_train, RowView)
    monkeypatch.setattr(folds_module, "_VIEW_BYTES_PER_SLOWDOWN", 0.26 * copies)
    assert not isinstance(materialize_folds(X, y, few)[0].X_train, RowView)
    monkeypatch.setattr(folds_module, "_VIEW_BYTES_PER_SLOWDOWN", 0)
    xps = pytest.importorskip("array_api_strict")
    strict = xps.asarray(X.toarray())
    assert not isinstance(materialize_folds(strict, y, folds_5)[0].X_train, RowView)
    with pytest.raises(ValueError, match="storage='view' needs"):
        materialize_folds(strict, y, folds_5, storage="view")
    with pytest.raises(ValueError, match="storage must be one of"):
        materialize_folds(X, y, folds_5, storage="shared")


def test_a_device_gets_the_shared_rows_once(monkeypatch):
    moved = []

    def to_stand_in(X, dtype=None):
        moved.append(X.shape)
        return X.astype(dtype or X.dtype)

    monkeypatch.setattr(folds_module, "to_cuda", to_stand_in)
    X, y, *_ = make_data("binary", 40, 4, 0, sparse=True)
    splits = list(StratifiedKFold(4).split(X, y))
    common = dict(loss_name="binary", fit_intercept=True, weighted=False)
    _, engine, _ = _engine("view", X, y, splits, device="cuda", **common)
    assert moved == [X.shape]
    source = engine[0].inner.model.X
    assert source is not X
    for fold in engine:
        assert fold.inner.model.X is source and fold.outer.model.source is source
        assert fold.inner.y is engine[0].inner.y


@pytest.mark.parametrize("backend", ["loky", "multiprocessing"])
def test_shared_rows_travel_to_worker_processes(backend):
    X, y, *_ = make_data("binary", 90, 5, 9, sparse=True)
    splits = list(KFold(3, shuffle=True, random_state=0).split(X))
    common = dict(loss_name="binary", fit_intercept=True, weighted=True)
    evaluations = []
    for where in (None, backend):
        _, engine, _ = _engine("view", X, y, splits, **common)
        problem = CrossValidatedProblem(engine, get_linear_solver("shine"), n_jobs=2)
        with parallel_config(backend=where) if where else nullcontext():
            with problem.parallel():
                evaluations.append(
                    [problem.evaluate(np.full(5, lam)) for lam in (1.0, 0.0)]
                )
    for ours, theirs in zip(*evaluations):
        assert_allclose(ours.fold_values, theirs.fold_values, rtol=1e-12)
        assert_allclose(ours.grad, theirs.grad, rtol=1e-10)


# -- the searches -------------------------------------------------------------------
@pytest.fixture
def view_everything(monkeypatch):
    """``storage(views)`` makes "auto" choose the view storage (or copies)
    whatever the size; ``storage.made`` counts the views made since."""
    made = []

    class CountedView(RowView):
        def __init__(self, source, rows):
            super().__init__(source, rows)
            made.append(rows.size)

    monkeypatch.setattr(folds_module, "RowView", CountedView)

    def storage(views):
        made.clear()
        monkeypatch.setattr(
            folds_module, "_VIEW_BYTES_PER_SLOWDOWN", 0 if views else float("inf")
        )

    storage.made = made
    return storage


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
@pytest.mark.parametrize("n_classes", [2, 3])
def test_hoag_chooses_the_same_C_in_both_storages(
    n_classes, sparse, fit_intercept, weighted, view_everything
):
    name = "binary" if n_classes == 2 else "multinomial"
    X, y, *_ = make_data(name, 120, 6, 4, sparse=sparse)
    weight = None
    if weighted:
        weight = np.random.default_rng(5).uniform(0.5, 2.0, y.size)
    models = []
    for views in (False, True):
        view_everything(views)
        model = HOAGLogisticRegression(
            tol=1e-8, polish_tol=1e-10, cv=3, fit_intercept=fit_intercept
        )
        models.append(model.fit(X, y, sample_weight=weight))
        assert len(view_everything.made) == (6 if views else 0)
    assert_allclose(models[0].C_, models[1].C_, rtol=1e-4)
    assert_allclose(models[0].coef_, models[1].coef_, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "estimator, space",
    [
        (LogisticRegression(), {"C": (1e-3, 1e3)}),
        (LogisticRegression(fit_intercept=False), {"C": (1e-3, 1e3)}),
        (Ridge(), {"alpha": (1e-3, 1e3)}),
        (
            make_pipeline(StandardScaler(), LogisticRegression()),
            {"logisticregression__C": (1e-3, 1e3)},
        ),
    ],
    ids=["logistic", "no-intercept", "ridge", "pipeline"],
)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
def test_bilevel_search_is_the_same_in_both_storages(
    estimator, space, sparse, weighted, view_everything
):
    if sparse and "logisticregression__C" in space:
        pytest.skip("StandardScaler centres: dense data only")
    regression = isinstance(estimator, Ridge)
    X, y, *_ = make_data("squared" if regression else "multinomial", 90, 5, 6, sparse)
    params = {}
    if weighted:
        weight = np.random.default_rng(5).uniform(0.5, 2.0, y.shape[0])
        key = "sample_weight"
        if "logisticregression__C" in space:
            key = "logisticregression__sample_weight"
        params = {key: weight}
    searches = []
    for views in (False, True):
        view_everything(views)
        search = BilevelSearchCV(estimator, space, cv=3, tol=1e-8)
        searches.append(search.fit(X, y, **params))
        pipeline = "logisticregression__C" in space
        assert len(view_everything.made) == (6 if views and not pipeline else 0)
    name = next(iter(space))
    assert_allclose(
        searches[0].best_params_[name], searches[1].best_params_[name], rtol=1e-4
    )
    n_points = min(len(s.cv_results_["mean_test_score"]) for s in searches)
    assert_allclose(
        searches[0].cv_results_["mean_test_score"][:n_points],
        searches[1].cv_results_["mean_test_score"][:n_points],
        rtol=1e-4,
    )


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
@pytest.mark.parametrize("problem", ["binary", "multinomial"])
def test_points_are_scored_from_the_predictions_the_search_kept(
    problem, sparse, fit_intercept, view_everything, monkeypatch
):
    # On shared rows the search keeps each point's validation predictions
    # (its training objectives computed them with the solution's gradient):
    # cv_results_ are those of the fold models' own predictions, to
    # round-off, and scoring takes no product with X. (Weighted scoring goes
    # through the fold models; the squared loss's folds are solved directly,
    # without the objective's products, and scored by theirs.)
    from skbilevel.model_selection import _scoring
    from skbilevel.search._service import GradientSearch

    X, y, *_ = make_data(problem, 120, 6, 4, sparse=sparse)
    estimator = LogisticRegression(fit_intercept=fit_intercept)
    space, metrics = {"C": (1e-3, 1e3)}, ["neg_log_loss", "accuracy"]
    view_everything(True)
    kept = GradientSearch.kept_predictions
    found = []

    def recorded(search, indices):
        result = kept(search, indices)
        found.append(result is not None)
        return result

    def search():
        return BilevelSearchCV(
            estimator,
            space,
            cv=3,
            scoring=metrics,
            refit=metrics[1],  # may polish another point than the loss's best
        ).fit(X, y)

    def no_product(*args):
        raise AssertionError("scored through a product with X")

    with monkeypatch.context() as patch:
        patch.setattr(GradientSearch, "kept_predictions", recorded)
        patch.setattr(_scoring, "_shared_products", no_product)
        ours = search()
    assert found and all(found)
    with monkeypatch.context() as patch:
        patch.setattr(GradientSearch, "kept_predictions", lambda *args: None)
        theirs = search()
    assert len(ours.cv_results_["params"]) == len(theirs.cv_results_["params"])
    for key in metrics:
        for split in range(3):
            column = f"split{split}_test_{key}"
            assert_allclose(
                ours.cv_results_[column], theirs.cv_results_[column], rtol=1e-11
            )
    assert ours.best_index_ == theirs.best_index_


def test_many_penalties_search_reads_the_shared_rows(view_everything):
    X, y, *_ = make_data("binary", 150, 6, 8)
    searches = []
    for views in (False, True):
        view_everything(views)
        search = BilevelSearchCV(
            LogisticRegression(),
            {"C": (1e-3, 1e3)},
            penalty_groups="features",
            cv=3,
            max_iter=5,
        )
        searches.append(search.fit(X, y))
        assert len(view_everything.made) == (6 if views else 0)
    assert_allclose(
        searches[0].best_estimator_.coef_,
        searches[1].best_estimator_.coef_,
        rtol=1e-3,
        atol=1e-5,
    )


@pytest.mark.parametrize("group_bytes", [64 * 2**20, 40 * 8 * 5], ids=["all", "some"])
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
def test_scoring_multiplies_shared_rows_once_for_several_folds(
    sparse, group_bytes, monkeypatch
):
    from skbilevel.model_selection import _scoring
    from skbilevel.model_selection._scoring import _shared_products

    # "some": products of 5 columns at most, one fold (4 columns) at a time
    monkeypatch.setattr(_scoring, "_GROUP_BYTES", group_bytes)
    X = _matrix(sparse)
    splits = list(KFold(4, shuffle=True, random_state=0).split(X))
    views = materialize_folds(X, None, splits, storage="view")
    rng = np.random.default_rng(2)
    # per fold, two points: a 1-output and a 3-output coefficient block
    per_fold = [
        [rng.standard_normal((6, 1)), rng.standard_normal((6, 3))] for _ in views
    ]
    calls, original = [], _scoring.grouped

    def counted(source, source_t, kind, operands):
        assert source is X
        calls.append(sum(op.shape[1] for op in operands))
        return original(source, source_t, kind, operands)

    monkeypatch.setattr(_scoring, "grouped", counted)
    products = _shared_products(views, per_fold)
    for fold, coefs, product in zip(views, per_fold, products):
        assert_allclose(product, fold.X_test @ np.hstack(coefs), rtol=1e-13)
    # one product with X for all folds, or one per fold under the byte cap
    assert calls == ([16] if group_bytes == 64 * 2**20 else [4, 4, 4, 4])
    copies = materialize_folds(X, None, splits, storage="copy")
    assert _shared_products(copies, per_fold) == [None] * len(copies)


def test_scoring_products_of_float32_rows_are_float64_and_banded(monkeypatch):
    # Float32 data, kept so on the host for a search on the GPU: the scoring
    # products convert bands of rows (NumPy's mixed float32 @ float64 product
    # does not call BLAS) and equal the float64 data's products.
    from skbilevel.model_selection import _scoring
    from skbilevel.model_selection._scoring import _shared_products

    X64 = _matrix(False)
    X = X64.astype(np.float32)
    splits = list(KFold(4, shuffle=True, random_state=0).split(X))
    rng = np.random.default_rng(3)
    per_fold = [[rng.standard_normal((6, 2))] for _ in splits]
    # the products of each fold's own rows, the float32 values in float64
    X32 = X.astype(np.float64)
    expected = [
        X32[test] @ np.hstack(coefs) for (_, test), coefs in zip(splits, per_fold)
    ]
    bands, original = [], _scoring.grouped

    def counted(source, source_t, kind, operands):
        assert source.dtype == np.float64
        bands.append(source.shape[0])
        return original(source, source_t, kind, operands)

    monkeypatch.setattr(_scoring, "grouped", counted)
    # bands of 7 rows; the cap also leaves each fold's product to itself
    monkeypatch.setattr(_scoring, "_GROUP_BYTES", 8 * 6 * 7)
    views = materialize_folds(X, None, splits, storage="view")
    products = _shared_products(views, per_fold)
    assert X.shape[0] == 40 and bands == [7, 7, 7, 7, 7, 5] * len(splits)
    for product, reference in zip(products, expected):
        assert product.dtype == np.float64
        assert_allclose(product, reference, rtol=1e-13)


def test_the_storage_rule_sizes_the_copies_in_the_engines_dtype(monkeypatch):
    # float32 host data of a search on the GPU are converted to float64
    # there: their copies weigh twice what the host's would, and the rule
    # reads that size (a float32 size would copy where float64 data view)
    X = _matrix(False).astype(np.float32)
    splits = list(KFold(5, shuffle=True, random_state=0).split(X))
    copies_64 = 8 * X.size * sum(len(a) + len(b) for a, b in splits) / X.shape[0]
    slowdown = X.shape[0] / min(len(train) for train, _ in splits) - 1.0
    # between the float32 and the float64 copies' size
    monkeypatch.setattr(
        folds_module, "_VIEW_BYTES_PER_SLOWDOWN", 0.75 * copies_64 / slowdown
    )
    as_float64 = materialize_folds(X.astype(np.float64), None, splits)
    assert isinstance(as_float64[0].X_train, RowView)
    assert not isinstance(materialize_folds(X, None, splits)[0].X_train, RowView)
    engine = materialize_folds(X, None, splits, dtype=np.float64)
    assert isinstance(engine[0].X_train, RowView)
