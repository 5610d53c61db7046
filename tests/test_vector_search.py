"""The vector search: scalar start, a descent that never sees the held-out
halves, held-out stopping and selection, the paired test and its variance
floor, gain."""

import warnings
from functools import partial

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedKFold

from skbilevel import HOAGLogisticRegression
from skbilevel.model_selection._adapters import LogisticRegressionAdapter
from skbilevel.objectives import (
    BinaryLogisticLoss,
    L2Penalty,
    MultinomialLogisticLoss,
    SquaredLoss,
    ValidationLoss,
)
from skbilevel.search import (
    GradientSearch,
    HyperSpace,
    SearchOptions,
    engine_folds,
    fold_weights,
    make_search,
    materialize_folds,
)
from skbilevel.search._heldout import (
    expected_square_difference,
    paired_significance,
    per_row_losses,
    split_validation,
)
from skbilevel.search._vector import PATIENCE, SIGNIFICANCE, VectorSearch

from ._problems import few_informative

SPACE = HyperSpace.from_values("C", 1e-4, 1e4, log_sign=-1)


def _few_informative(seed=3, n_train=500):
    """3 informative features out of 40; a large test set. On this seed one C
    per feature passes the held-out check (significance 3.9) and lowers the
    test log-loss by 7%; on seeds 0-2 with 300 rows it does not pass."""
    X, y = few_informative(seed)
    return X[:n_train], y[:n_train], X[n_train:], y[n_train:]


def _folds(X, y, splits, penalty):
    adapter, clf = LogisticRegressionAdapter(), LogisticRegression()
    encoding = adapter.encode_targets(clf, y)
    folds = materialize_folds(X, y, splits)
    weights = fold_weights(folds, y, None, partial(adapter.training_weights, clf))
    return engine_folds(folds, encoding, weights, penalty=penalty, fit_intercept=True)


@pytest.fixture(scope="module")
def searched():
    # 520 rows: there the descent's own criterion keeps decreasing past the
    # held-out optimum (significance 3.7), the case the selection test needs.
    # The descent's path is sensitive to its scalar start: with 500 rows the
    # two optima coincided once the bracket's first point was solved more
    # loosely (its start moved by 3e-4 in log C).
    X, y, _, _ = _few_informative(n_train=520)
    splits = list(StratifiedKFold(5).split(X, y))
    space = SPACE._replace(structure="features").resize(X.shape[1])
    folds = _folds(X, y, splits, lambda n: L2Penalty.per_feature(n))
    seen = {}  # each record's values as evaluated, before any re-solve

    def record(r):
        seen[r["iteration"]] = (r["value"], r.get("heldout_value"))

    search = make_search(folds, space, SearchOptions(callback=record))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        result = search.run()
    search.seen = seen
    return X, y, splits, search, result


def test_features_structure_takes_the_vector_search(searched):
    assert isinstance(searched[3], VectorSearch)


def test_vector_search_starts_at_the_scalar_optimum(searched):
    X, y, splits, search, _ = searched
    independent = GradientSearch(
        _folds(X, y, splits, lambda n: L2Penalty.scalar()), SPACE, SearchOptions()
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        scalar = independent.run()
    vector = [r for r in search.history if r["stage"] == "vector"]
    assert vector[0]["phase"] == "start"
    assert_allclose(vector[0]["lam"], np.repeat(scalar.lam, X.shape[1]), rtol=1e-10)


def test_selection_and_stopping_use_the_heldout_halves(searched):
    _, _, _, search, result = searched
    vector = [r for r in search.history if r["stage"] == "vector"]
    first = vector[0]["iteration"]
    heldout = [r["heldout_value"] for r in vector]
    # the descent's own criterion, as the search saw it (polish rewrites it)
    descent = [search.seen[r["iteration"]][0] for r in vector]
    best_heldout = int(np.argmin(heldout))
    # on these data the descent criterion keeps decreasing past the held-out
    # optimum: a selection on it would pick a later point
    assert len(descent) >= 2 and min(descent) < descent[best_heldout]
    # stopped PATIENCE evaluations after the held-out optimum (or earlier, if
    # the descent converged first), and kept it (significantly better than
    # the start on the held-out halves)
    after = len(vector) - 1 - best_heldout
    if result.message.startswith("stopped by callback"):
        assert after == PATIENCE
    else:
        assert after < PATIENCE
    assert search.significance > SIGNIFICANCE
    assert result.best_index == first + best_heldout
    assert result.best_index != first + int(np.argmin(descent))


def test_split_validation_halves_are_stratified_and_disjoint():
    y = np.array([0] * 11 + [1] * 7)
    a, b = split_validation(y)
    assert np.intersect1d(a, b).size == 0 and a.size + b.size == y.size
    assert abs(np.sum(y[a]) - np.sum(y[b])) <= 1


@pytest.fixture(scope="module")
def fitted():
    X, y, X_test, y_test = _few_informative()
    cv = StratifiedKFold(5)
    scalar = HOAGLogisticRegression(cv=cv).fit(X, y)
    vector = HOAGLogisticRegression(cv=cv, penalty_groups="features").fit(X, y)
    return X, y, X_test, y_test, scalar, vector


def test_penalty_gain_matches_an_independent_recomputation(fitted):
    # One C_j per feature is C=1 on the features scaled by sqrt(C_j).
    X, y, _, _, scalar, vector = fitted
    assert vector.penalty_gain_ > 0 and scalar.penalty_gain_ is None
    losses = {"scalar": [], "vector": []}
    for train, test in StratifiedKFold(5).split(X, y):
        _, heldout = split_validation(y[test])
        rows = test[heldout]
        for name, C in (("scalar", scalar.C_), ("vector", vector.C_)):
            scale = np.sqrt(np.broadcast_to(C, X.shape[1]))
            clf = LogisticRegression(C=1.0, tol=1e-10, max_iter=10000)
            clf.fit(X[train] * scale, y[train])
            losses[name].append(log_loss(y[rows], clf.predict_proba(X[rows] * scale)))
    b_scalar, b_vector = np.mean(losses["scalar"]), np.mean(losses["vector"])
    assert_allclose(vector.penalty_gain_, (b_scalar - b_vector) / b_scalar, rtol=1e-4)


def test_per_feature_wins_on_heldout_data_with_few_informative_features(fitted):
    _, _, X_test, y_test, scalar, vector = fitted
    loss_scalar = log_loss(y_test, scalar.predict_proba(X_test))
    loss_vector = log_loss(y_test, vector.predict_proba(X_test))
    # measured 0.272 -> 0.253 (-7%) on this seed; the test set has 2500 rows
    assert loss_vector < 0.95 * loss_scalar


# -- the held-out halves never reach the descent ---------------------------------
def _row_index(X):
    """Row bytes -> index in X (the rows of these data are distinct)."""
    return {row.tobytes(): i for i, row in enumerate(X)}


def _rows_of(index, X_part):
    return [index[np.asarray(row).tobytes()] for row in X_part]


@pytest.fixture(scope="module")
def unsearched():
    X, y, _, _ = _few_informative(seed=0, n_train=200)
    splits = list(StratifiedKFold(5).split(X, y))
    space = SPACE._replace(structure="features").resize(X.shape[1])
    folds = _folds(X, y, splits, lambda n: L2Penalty.per_feature(n))
    halves = [split_validation(y[test]) for _, test in splits]
    descent = [test[a] for (_, test), (a, _) in zip(splits, halves)]
    heldout = [test[b] for (_, test), (_, b) in zip(splits, halves)]
    return X, y, splits, space, folds, descent, heldout


def test_descent_trains_and_scores_on_the_descent_halves_only(unsearched):
    # With K-fold CV every validation row trains the other folds' models: a
    # descent whose models train on B rows fits the chance agreement of A and
    # B, and B then confirms it (measured: B -6% while new rows +25%).
    X, _, _, space, folds, descent, heldout = unsearched
    search = VectorSearch(folds, space, SearchOptions())
    index = _row_index(X)
    all_heldout = set(np.concatenate(heldout))
    for k, fold in enumerate(search.problem.folds):
        trained = _rows_of(index, fold.inner.model.X)
        scored = _rows_of(index, fold.outer.model.X)
        others = np.concatenate([rows for j, rows in enumerate(descent) if j != k])
        assert sorted(trained) == sorted(others)
        assert sorted(scored) == sorted(descent[k])
        assert all_heldout.isdisjoint(trained) and all_heldout.isdisjoint(scored)
    # B is scored by the user's fold models (which may train on other B rows)
    for fold, rows in zip(search.cv_problem.folds, heldout):
        assert set(rows) <= set(_rows_of(index, fold.outer.model.X))


def test_the_descent_does_not_depend_on_the_heldout_rows(unsearched):
    X, y, splits, space, folds, _, heldout = unsearched
    changed = X.copy()
    rows = np.concatenate(heldout)
    changed[rows] = np.random.default_rng(0).standard_normal((rows.size, X.shape[1]))
    other = _folds(changed, y, splits, lambda n: L2Penalty.per_feature(n))
    lam = np.random.default_rng(1).uniform(-1, 2, X.shape[1])
    searches = [VectorSearch(f, space, SearchOptions()) for f in (folds, other)]
    descent = [s.problem.evaluate(lam, inner_tol=1e-8) for s in searches]
    assert descent[0].value == pytest.approx(descent[1].value, rel=1e-12)
    assert_allclose(descent[0].grad, descent[1].grad, rtol=1e-10, atol=1e-14)
    # the user's folds (and so B's scores) do see the change
    scores = [s.cv_problem.evaluate(lam, gradient=False).value for s in searches]
    assert scores[0] != pytest.approx(scores[1], rel=1e-3)


def test_vector_points_are_scored_on_the_whole_validation_folds(searched):
    # every vector record's value is the CV log-loss of the user's folds,
    # solved tightly (here checked at the kept point against scikit-learn)
    X, y, splits, search, result = searched
    record = search.history[result.best_index]
    assert record["stage"] == "vector" and result.best_index in search.polished
    scale = np.sqrt(np.exp(-record["lam"]))
    losses = []
    for train, test in splits:
        clf = LogisticRegression(C=1.0, tol=1e-10, max_iter=10000)
        clf.fit(X[train] * scale, y[train])
        losses.append(log_loss(y[test], clf.predict_proba(X[test] * scale)))
    assert record["value"] == pytest.approx(np.mean(losses), rel=1e-5)
    assert result.value == record["value"]


# -- the paired test and its variance floor -----------------------------------------
def test_paired_significance_takes_the_larger_of_sample_and_floor_variance():
    rng = np.random.default_rng(0)
    reference = [rng.uniform(0, 2, 30), rng.uniform(0, 2, 50)]
    candidate = [r - rng.normal(0.1, 0.2, r.size) for r in reference]
    d = [r - c for r, c in zip(reference, candidate)]
    mean = (d[0].mean() + d[1].mean()) / 2

    def significance(v0, v1):
        return mean / (np.sqrt(v0 / 30 + v1 / 50) / 2)

    sample = [x.var(ddof=1) for x in d]
    assert paired_significance(reference, candidate) == pytest.approx(
        significance(*sample)
    )
    floors = [10 * sample[0], None]
    assert paired_significance(reference, candidate, floors) == pytest.approx(
        significance(floors[0], sample[1])
    )
    assert paired_significance(reference, candidate, [0.0, 0.0]) == pytest.approx(
        significance(*sample)
    )


def _validation_loss(kind, weighted, rng):
    X = rng.standard_normal((40, 3))
    weight = rng.uniform(0.5, 2.0, 40) if weighted else None
    if kind == "binary":
        return ValidationLoss(X, (rng.random(40) < 0.5) * 1.0, BinaryLogisticLoss(),
                              sample_weight=weight)  # fmt: skip
    Y = np.eye(3)[rng.integers(0, 3, 40)]
    return ValidationLoss(X, Y, MultinomialLogisticLoss(), 3, sample_weight=weight)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("kind", ["binary", "multinomial"])
def test_expected_square_difference_follows_its_definition(kind, weighted):
    # The variance of d_i over the rows, each label drawn from the average of
    # the two models' probabilities; d_i is each row's share of the (weighted)
    # mean loss.
    rng = np.random.default_rng(0)
    loss = _validation_loss(kind, weighted, rng)
    n_params = loss.model.n_params
    w_reference, w_candidate = rng.normal(0, 1, n_params), rng.normal(0, 2, n_params)
    z = [loss.model.raw(w) for w in (w_reference, w_candidate)]
    if kind == "binary":
        z = [np.column_stack([np.zeros(40), raw]) for raw in z]
    log_proba = [raw - np.logaddexp.reduce(raw, axis=1, keepdims=True) for raw in z]
    proba = 0.5 * (np.exp(log_proba[0]) + np.exp(log_proba[1]))
    weight = np.ones(40) if loss.sample_weight is None else loss.sample_weight
    share = weight / weight.mean()
    d = share[:, None] * (log_proba[1] - log_proba[0])  # loss(ref) - loss(cand)
    expected = (
        np.mean(np.sum(proba * d**2, axis=1)) - np.mean(np.sum(proba * d, axis=1)) ** 2
    )
    value = expected_square_difference(loss, w_reference, w_candidate)
    assert value == pytest.approx(expected, rel=1e-10)
    assert expected_square_difference(loss, w_reference, w_reference) == 0.0
    # the rows' shares average to the loss (the test's own convention)
    assert np.mean(per_row_losses(loss, w_reference)) == pytest.approx(
        float(loss.value(w_reference)), rel=1e-12
    )


def test_expected_square_difference_is_none_for_the_squared_loss():
    rng = np.random.default_rng(0)
    loss = ValidationLoss(rng.standard_normal((20, 3)), rng.standard_normal(20),
                          SquaredLoss())  # fmt: skip
    assert expected_square_difference(loss, np.zeros(4), np.ones(4)) is None


@pytest.mark.parametrize("seed", range(4))
def test_the_floor_matches_the_spread_on_new_rows(seed):
    # A spiky per-feature model against a single C, both trained on 240 rows
    # of 20 informative Gaussian features out of 100: the floor computed on 60
    # validation rows (labels unused) is within 25% of the root mean square
    # of the per-row difference on 20000 new rows (0.90-1.0x measured). The
    # held-out halves alone can undersample it (by up to 30% on these seeds;
    # by 3x in a search that kept such a point and lost 12% on new rows).
    rng = np.random.default_rng(seed)
    n, p = 20300, 100
    X = rng.standard_normal((n, p))
    beta = np.r_[np.ones(20), np.zeros(p - 20)]
    y = (rng.random(n) < 1 / (1 + np.exp(-X @ beta))) * 1.0
    train, validation, new = slice(0, 240), slice(240, 300), slice(300, None)
    reference = LogisticRegression(C=0.05, tol=1e-10).fit(X[train], y[train])
    scale = np.sqrt(0.05 * 10 ** rng.uniform(-2, 2, p))
    candidate = LogisticRegression(C=1.0, tol=1e-10, max_iter=10000)
    candidate.fit(X[train] * scale, y[train])
    w_reference = np.r_[reference.coef_[0], reference.intercept_]
    w_candidate = np.r_[candidate.coef_[0] * scale, candidate.intercept_]
    floor = expected_square_difference(
        ValidationLoss(X[validation], y[validation], BinaryLogisticLoss()),
        w_reference,
        w_candidate,
    )
    z = [X[new] @ w[:-1] + w[-1] for w in (w_reference, w_candidate)]
    d = [np.logaddexp(0, raw) - y[new] * raw for raw in z]
    spread = np.sqrt(np.mean((d[0] - d[1]) ** 2))
    assert 0.75 * spread < np.sqrt(floor) < 1.25 * spread
