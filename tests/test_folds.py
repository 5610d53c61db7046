"""The folds of a search (search/_folds.py): splits as scikit-learn's searches
check them, rows and Pipeline prefixes fitted per training fold, weights, and the
engine objectives of each fold in the namespace of the data."""

from functools import partial

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from array_api_compat import array_namespace
from numpy.testing import assert_allclose, assert_array_equal
from scipy.special import expit, softmax
from sklearn import config_context
from sklearn.datasets import make_classification
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.metrics import log_loss
from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.class_weight import compute_sample_weight

from skbilevel.model_selection import LogisticRegressionAdapter, RidgeClassifierAdapter
from skbilevel.objectives import L2Penalty
from skbilevel.search import (
    as_engine_array,
    check_splits,
    engine_folds,
    fold_weights,
    materialize_folds,
    route_fit_params,
    split_estimator,
)


def _data(n_samples=30, n_features=4, seed=0):
    """Features and sorted, imbalanced labels (20 of class 0, then 10 of class 1):
    unshuffled KFold and StratifiedKFold split them differently."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_samples, n_features))
    y = (np.arange(n_samples) >= 2 * n_samples // 3).astype(int)
    return X, y


def _same_splits(ours, expected):
    expected = list(expected)
    return len(ours) == len(expected) and all(
        np.array_equal(a, c) and np.array_equal(b, d)
        for (a, b), (c, d) in zip(ours, expected)
    )


# -- check_splits ------------------------------------------------------------------
@pytest.mark.parametrize(
    "classifier, splitter, other",
    [(True, StratifiedKFold, KFold), (False, KFold, StratifiedKFold)],
)
@pytest.mark.parametrize("cv", [None, 3])
def test_int_cv_is_stratified_for_classifiers_only(cv, classifier, splitter, other):
    X, y = _data()
    checked, splits = check_splits(cv, X, y, classifier=classifier)
    n_splits = 5 if cv is None else cv
    assert type(checked) is splitter and checked.get_n_splits() == n_splits
    assert _same_splits(splits, splitter(n_splits).split(X, y))
    assert not _same_splits(splits, other(n_splits).split(X, y))
    for train, test in splits:
        assert train.dtype == test.dtype == np.int64


@pytest.mark.parametrize(
    "classifier, splitter", [(True, StratifiedKFold), (False, KFold)]
)
@pytest.mark.parametrize("cv", [None, 3])
def test_random_state_shuffles_as_the_splitter_would(cv, classifier, splitter):
    X, y = _data()
    n_splits = 5 if cv is None else cv
    _, splits = check_splits(cv, X, y, classifier=classifier, random_state=7)
    shuffled = splitter(n_splits, shuffle=True, random_state=7)
    assert _same_splits(splits, shuffled.split(X, y))
    assert not _same_splits(splits, splitter(n_splits).split(X, y))
    # A splitter object is used as given: random_state does not change it.
    _, given = check_splits(KFold(3), X, y, classifier=classifier, random_state=7)
    assert _same_splits(given, KFold(3).split(X, y))


def test_groups_reach_the_splitter():
    X, y = _data()
    groups = np.arange(y.size) % 5
    _, splits = check_splits(
        GroupKFold(3), X, y, classifier=True, split_params={"groups": groups}
    )
    assert _same_splits(splits, GroupKFold(3).split(X, y, groups))


def test_boolean_masks_and_negative_indices_become_indices():
    X, y = _data()
    fold = np.arange(y.size) % 3
    masks = [(fold != k, fold == k) for k in range(3)]
    _, splits = check_splits(masks, X, y, classifier=True)
    for (train, test), (train_mask, test_mask) in zip(splits, masks):
        assert_array_equal(train, np.flatnonzero(train_mask))
        assert_array_equal(test, np.flatnonzero(test_mask))
        assert train.dtype == test.dtype == np.int64
    # Python's negative indexing, as X[indices] would read it.
    _, ((train, test),) = check_splits(
        [(np.array([0, 1, -1], dtype=np.int32), [-2])], X, y, classifier=True
    )
    assert_array_equal(train, [0, 1, 29])
    assert train.dtype == np.int64
    assert_array_equal(test, [28])


@pytest.mark.parametrize(
    "split, match",
    [
        ((np.ones(29, bool), [0]), r"boolean train mask .* \(30\), got shape \(29,\)"),
        (([0], np.ones(31, bool)), r"boolean test mask .* \(30\), got shape \(31,\)"),
        (([0, 1, 30], [2]), r"integers in \[0, 30\), got int64 values in \[0, 30\]"),
        (([0, 1], [-31]), r"integers in \[0, 30\), got int64 values in \[-31, -31\]"),
        (([0.0, 1.0], [2]), r"integers in \[0, 30\), got float64 values"),
        (([], [2]), "needs training and validation samples; got a train part"),
        (([0, 1], np.zeros(30, bool)), "got a test part of shape \\(0,\\)"),
        (([[0, 1]], [2]), r"train part of shape \(1, 2\)"),
    ],
)
def test_bad_splits_raise_naming_the_problem(split, match):
    X, y = _data()
    with pytest.raises(ValueError, match=match):
        check_splits([split], X, y, classifier=True)


class _InconsistentSplitter:
    """Announces three splits and yields two."""

    def get_n_splits(self, X=None, y=None, groups=None):
        return 3

    def split(self, X, y=None, groups=None):
        yield from KFold(2).split(X)


def test_splitter_disagreeing_with_its_n_splits_raises():
    X, y = _data()
    match = "inconsistent results. Expected 3 splits, got 2"
    with pytest.raises(ValueError, match=match):
        check_splits(_InconsistentSplitter(), X, y, classifier=True)


@pytest.mark.parametrize("cv", [[], iter([])], ids=["list", "iterator"])
def test_cv_without_splits_raises(cv):
    X, y = _data()
    with pytest.raises(ValueError, match="yielded no split"):
        check_splits(cv, X, y, classifier=True)


def test_cv_that_is_not_a_splitter_raises():
    X, y = _data()
    with pytest.raises(ValueError, match="as an integer, a cross-validation object"):
        check_splits(object(), X, y, classifier=True)


@pytest.mark.parametrize("classifier", [True, False])
def test_more_folds_than_samples_raise(classifier):
    X, y = _data(n_samples=6)
    with pytest.raises(ValueError, match="n_splits=10 on n_samples=6"):
        check_splits(10, X, y, classifier=classifier)


# -- the estimator: prefix and searched step ----------------------------------------
def test_split_estimator():
    clf = LogisticRegression()
    assert split_estimator(clf) == (None, None, clf)
    pipe = make_pipeline(StandardScaler(), PCA(2), clf)
    prefix, name, final = split_estimator(pipe)
    assert [step for step, _ in prefix.steps] == ["standardscaler", "pca"]
    assert prefix.steps[0][1] is pipe[0]  # a view of the user's steps, cloned later
    assert (name, final) == ("logisticregression", clf)
    assert split_estimator(Pipeline([("clf", clf)])) == (None, "clf", clf)
    with pytest.raises(TypeError, match="last step of the Pipeline must be"):
        split_estimator(Pipeline([("scale", StandardScaler()), ("clf", "passthrough")]))
    with pytest.raises(ValueError, match="transform_input"):
        split_estimator(Pipeline([("clf", clf)], transform_input=["sample_weight"]))


def test_route_fit_params_without_a_pipeline_passes_them_on():
    weight = np.ones(3)
    prefix_params, final_params = route_fit_params(
        LogisticRegression(), split_estimator(LogisticRegression()), {"w": weight}
    )
    assert prefix_params == {} and final_params == {"w": weight}


# -- materialize_folds ---------------------------------------------------------------
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
def test_folds_without_prefix_are_rows_of_X(sparse):
    X, y = _data()
    X[np.abs(X) < 0.8] = 0.0
    splits = list(KFold(3, shuffle=True, random_state=0).split(X))
    names = np.array(["a", "b", "c", "d"], dtype=object)
    data = sp.csr_matrix(X) if sparse else X
    folds = materialize_folds(data, y, splits, feature_names=names)
    assert len(folds) == 3
    for fold, (train, test) in zip(folds, splits):
        assert_array_equal(fold.train, train)
        assert_array_equal(fold.test, test)
        assert fold.prefix is None
        assert sp.issparse(fold.X_train) == sp.issparse(fold.X_test) == sparse
        dense = (fold.X_train, fold.X_test)
        if sparse:
            assert fold.X_train.format == "csr"
            dense = tuple(part.toarray() for part in dense)
        assert_array_equal(dense[0], X[train])
        assert_array_equal(dense[1], X[test])
        assert fold.n_features_in == 4
        assert fold.feature_names_in is names


def _prefixes():
    return {
        "scaler": make_pipeline(StandardScaler(), LogisticRegression())[:-1],
        "passthrough": Pipeline(
            [("skip", "passthrough"), ("standardscaler", StandardScaler())]
        ),
    }


@pytest.mark.parametrize("n_jobs", [None, 2])
@pytest.mark.parametrize("kind", list(_prefixes()))
def test_prefix_is_fitted_on_each_training_fold(kind, n_jobs):
    X, y = _data()
    X = 3.0 * X + np.arange(4)
    splits = list(StratifiedKFold(3).split(X, y))
    prefix = _prefixes()[kind]
    folds = materialize_folds(X, y, splits, prefix=prefix, n_jobs=n_jobs)
    assert not hasattr(prefix[-1], "mean_")  # the user's steps stay unfitted
    for fold, (train, test) in zip(folds, splits):
        scaler = StandardScaler().fit(X[train])
        fitted = fold.prefix[-1]
        assert fitted is not prefix[-1]
        assert_allclose(fitted.mean_, scaler.mean_, rtol=1e-14)
        assert_allclose(fitted.scale_, scaler.scale_, rtol=1e-14)
        assert_allclose(fold.X_train, scaler.transform(X[train]), rtol=1e-14)
        assert_allclose(fold.X_test, scaler.transform(X[test]), rtol=1e-14)
        assert fold.X_train.dtype == np.float64 and fold.n_features_in == 4
        assert fold.feature_names_in is None
        # The fold's statistics, not those of all samples.
        assert not np.allclose(fitted.mean_, X.mean(axis=0))


@pytest.mark.parametrize("routing", [False, True])
def test_prefix_fit_params_are_routed_and_sliced_per_fold(routing):
    X, y = _data()
    weight = np.random.default_rng(1).uniform(0.2, 3.0, y.size)
    splits = list(StratifiedKFold(3).split(X, y))
    with config_context(enable_metadata_routing=routing):
        scaler, clf = StandardScaler(), LogisticRegression()
        if routing:
            scaler.set_fit_request(sample_weight=True)
            clf.set_fit_request(sample_weight=False)
            params = {"sample_weight": weight}
        else:
            params = {"standardscaler__sample_weight": weight}
        pipe = make_pipeline(scaler, clf)
        split = split_estimator(pipe)
        prefix_params, final_params = route_fit_params(pipe, split, params)
        assert final_params == {}
        folds = materialize_folds(
            X, y, splits, prefix=split.prefix, prefix_params=prefix_params
        )
    for fold, (train, _) in zip(folds, splits):
        expected = StandardScaler().fit(X[train], sample_weight=weight[train])
        assert_allclose(fold.prefix[0].mean_, expected.mean_, rtol=1e-13)
        assert not np.allclose(fold.prefix[0].mean_, X[train].mean(axis=0))


def test_final_fit_params_of_a_pipeline_are_its_steps():
    X, y = _data()
    weight = np.ones(y.size)
    pipe = make_pipeline(StandardScaler(), LogisticRegression())
    _, final_params = route_fit_params(
        pipe, split_estimator(pipe), {"logisticregression__sample_weight": weight}
    )
    assert final_params.keys() == {"sample_weight"}
    assert final_params["sample_weight"] is weight


def test_prefix_with_pandas_output_gives_its_column_names():
    X, y = _data()
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    prefix = Pipeline([("scale", StandardScaler().set_output(transform="pandas"))])
    splits = list(StratifiedKFold(3).split(X, y))
    for fold in materialize_folds(frame, y, splits, prefix=prefix):
        assert_array_equal(fold.feature_names_in, ["a", "b", "c", "d"])
        assert isinstance(fold.X_train, np.ndarray)  # the engine's array


def test_as_engine_array():
    X, _ = _data()
    dense = as_engine_array(X.astype(np.float32))
    assert isinstance(dense, np.ndarray) and dense.dtype == np.float64
    assert_array_equal(dense, X.astype(np.float32))
    csr = as_engine_array(sp.csc_matrix(X))
    assert csr.format == "csr" and csr.dtype == np.float64
    assert_array_equal(csr.toarray(), X)
    # For the GPU: float32 stays float32 (converted on the device), the rest
    # becomes float64 as before.
    single = X.astype(np.float32)
    kept = as_engine_array(single, keep_float32=True)
    assert kept.dtype == np.float32 and np.shares_memory(kept, single)  # no copy
    assert as_engine_array(X.astype(int), keep_float32=True).dtype == np.float64
    assert as_engine_array(X, keep_float32=True).dtype == np.float64
    X[1, 2] = np.nan
    for dtype in (np.float64, np.float32):
        for keep_float32 in (False, True):
            with pytest.raises(ValueError, match="Input X contains NaN"):
                as_engine_array(X.astype(dtype), keep_float32=keep_float32)


# -- fold_weights --------------------------------------------------------------------
def _imbalanced_folds():
    """Labels whose class ratio differs from fold to fold (KFold, unshuffled)."""
    X, _ = _data(n_samples=40)
    blocks = [[0] * 10, [1] * 6 + [0] * 4, [1] * 5 + [2] * 5, [2] * 3 + [0] * 7]
    y = np.concatenate(blocks)
    splits = list(KFold(4).split(X))
    return X, y, splits, materialize_folds(X, y, splits)


def test_balanced_class_weights_are_those_of_the_training_fold():
    X, y, splits, folds = _imbalanced_folds()
    sample_weight = np.random.default_rng(0).uniform(0.5, 2.0, y.size)
    training = partial(
        RidgeClassifierAdapter().training_weights,
        RidgeClassifier(class_weight="balanced"),
    )
    weights = fold_weights(folds, y, sample_weight, training)
    for (train_weight, test_weight), (train, test) in zip(weights, splits):
        expected = compute_sample_weight("balanced", y[train]) * sample_weight[train]
        assert_allclose(train_weight, expected, rtol=1e-14)
        assert_array_equal(test_weight, sample_weight[test])
        overall = compute_sample_weight("balanced", y)[train] * sample_weight[train]
        assert not np.allclose(train_weight, overall)


def test_logistic_class_weights_are_those_of_the_training_fold():
    X, y, splits, folds = _imbalanced_folds()
    adapter, clf = (
        LogisticRegressionAdapter(),
        LogisticRegression(class_weight="balanced"),
    )
    training = partial(adapter.training_weights, clf)
    for (train_weight, test_weight), (train, _) in zip(
        fold_weights(folds, y, None, training), splits
    ):
        expected = compute_sample_weight("balanced", y[train])
        assert_allclose(train_weight, expected, rtol=1e-14)
        assert test_weight is None
    # With sample weights, whatever "balanced" means in this scikit-learn
    # (weighted class counts since 1.7): the fit on the training weights is
    # LogisticRegression's own.
    sample_weight = np.random.default_rng(0).uniform(0.5, 2.0, y.size)
    weights = fold_weights(folds, y, sample_weight, training)
    for (train_weight, test_weight), (train, test) in zip(weights, splits):
        theirs = LogisticRegression(class_weight="balanced", tol=1e-10)
        theirs.fit(X[train], y[train], sample_weight=sample_weight[train])
        ours = LogisticRegression(tol=1e-10)
        ours.fit(X[train], y[train], sample_weight=train_weight)
        assert_allclose(ours.coef_, theirs.coef_, rtol=1e-6, atol=1e-8)
        assert_array_equal(test_weight, sample_weight[test])


def test_no_weights_without_sample_or_class_weights():
    _, y, _, folds = _imbalanced_folds()
    training = partial(
        LogisticRegressionAdapter().training_weights, LogisticRegression()
    )
    assert fold_weights(folds, y, None, training) == [(None, None)] * 4
    sample_weight = np.arange(1.0, y.size + 1)
    for (train_weight, test_weight), fold in zip(
        fold_weights(folds, y, sample_weight, training), folds
    ):
        assert_array_equal(train_weight, sample_weight[fold.train])
        assert_array_equal(test_weight, sample_weight[fold.test])


# -- engine_folds --------------------------------------------------------------------
def _logistic_engine(X, y, splits, sample_weight=None, folds=None, **kwargs):
    adapter, clf = LogisticRegressionAdapter(), LogisticRegression()
    encoding = adapter.encode_targets(clf, y)
    folds = materialize_folds(X, y, splits) if folds is None else folds
    training = partial(adapter.training_weights, clf)
    weights = fold_weights(folds, y, sample_weight, training)
    kwargs = {"penalty": lambda n_features: L2Penalty.scalar(), **kwargs}
    kwargs.setdefault("fit_intercept", True)
    return encoding, folds, weights, engine_folds(folds, encoding, weights, **kwargs)


def _probabilities(X, coef, intercept, n_classes):
    raw = X @ coef + intercept
    if n_classes == 2:
        p = expit(raw[:, 0])
        return np.column_stack([1 - p, p])
    return softmax(raw, axis=1)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_fold_objectives_are_the_penalized_log_loss_of_its_rows(n_classes):
    X, y = make_classification(
        n_samples=60, n_features=4, n_informative=3, n_redundant=0,
        n_classes=n_classes, random_state=0,
    )  # fmt: skip
    rng = np.random.default_rng(0)
    sample_weight = rng.uniform(0.5, 2.0, y.size)
    splits = list(StratifiedKFold(3).split(X, y))
    encoding, _, _, engine = _logistic_engine(X, y, splits, sample_weight)
    n_outputs = 1 if n_classes == 2 else n_classes
    assert encoding.n_outputs == n_outputs
    lam = np.array([0.3])
    labels = np.arange(n_classes)
    for fold, (train, test) in zip(engine, splits):
        # w = (coef of shape (n_features, n_outputs) row-major, intercepts)
        w = 0.5 * rng.standard_normal(4 * n_outputs + n_outputs)
        coef, intercept = w[: 4 * n_outputs].reshape(4, n_outputs), w[4 * n_outputs :]
        train_loss = log_loss(
            y[train], _probabilities(X[train], coef, intercept, n_classes),
            sample_weight=sample_weight[train], normalize=False, labels=labels,
        )  # fmt: skip
        penalty = 0.5 * np.exp(0.3) * np.sum(coef**2)
        assert float(fold.inner.value(w, lam)) == pytest.approx(
            train_loss + penalty, rel=1e-12
        )
        validation_loss = log_loss(
            y[test], _probabilities(X[test], coef, intercept, n_classes),
            sample_weight=sample_weight[test], labels=labels,
        )  # fmt: skip
        assert float(fold.outer.value(w)) == pytest.approx(validation_loss, rel=1e-12)


def test_penalty_is_built_for_the_features_the_final_step_sees():
    X, y = _data()
    splits = list(StratifiedKFold(3).split(X, y))
    prefix = Pipeline([("pca", PCA(n_components=2))])
    folds = materialize_folds(X, y, splits, prefix=prefix)
    seen = []

    def penalty(n_features):
        seen.append(n_features)
        return L2Penalty.per_feature(n_features)

    *_, engine = _logistic_engine(
        X, y, splits, folds=folds, penalty=penalty, fit_intercept=False
    )
    assert seen == [2, 2, 2]
    for fold, data in zip(engine, folds):
        assert fold.inner.n_hyper == 2 and fold.inner.n_params == 2
        assert fold.inner.model.X is data.X_train
        assert fold.outer.model.X is data.X_test


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_folds_live_in_the_namespace_and_dtype_of_X(dtype):
    xps = pytest.importorskip("array_api_strict")
    X, y = _data()
    sample_weight = np.random.default_rng(0).uniform(0.5, 2.0, y.size)
    splits = list(StratifiedKFold(3).split(X, y))
    X_strict = xps.asarray(X.astype(dtype))
    encoding, folds, weights, engine = _logistic_engine(
        X_strict, y, splits, sample_weight
    )
    *_, reference = _logistic_engine(X, y, splits, sample_weight)
    strict_dtype = getattr(xps, dtype)
    lam = np.array([0.3])
    w = np.random.default_rng(1).standard_normal(5)
    rtol = 1e-5 if dtype == "float32" else 1e-12
    for fold, numpy_fold, (train_weight, test_weight), (train, test) in zip(
        engine, reference, weights, splits
    ):
        arrays = {
            "X_train": (fold.inner.model.X, X[train]),
            "y_train": (fold.inner.y, encoding.y[train]),
            "train_weight": (fold.inner.sample_weight, train_weight),
            "X_test": (fold.outer.model.X, X[test]),
            "y_test": (fold.outer.y, encoding.y[test]),
            "test_weight": (fold.outer.sample_weight, test_weight),
        }
        for name, (ours, expected) in arrays.items():
            assert array_namespace(ours) is xps, name
            assert ours.dtype == strict_dtype, name
            assert_allclose(np.asarray(ours), expected.astype(dtype), err_msg=name)
        value = fold.inner.value(
            xps.asarray(w, dtype=strict_dtype), xps.asarray(lam, dtype=strict_dtype)
        )
        assert float(value) == pytest.approx(
            float(numpy_fold.inner.value(w, lam)), rel=rtol
        )
