"""Small inner/outer problems shared by the engine tests."""

import numpy as np
import scipy.sparse as sp
from sklearn.datasets import make_classification
from sklearn.model_selection import StratifiedKFold

from skbilevel.hypergrad import get_linear_solver
from skbilevel.objectives import (
    BinaryLogisticLoss,
    InnerObjective,
    L2Penalty,
    MultinomialLogisticLoss,
    SquaredLoss,
    ValidationLoss,
)
from skbilevel.outer import CrossValidatedProblem, Fold

LOSS_NAMES = ("binary", "multinomial", "squared", "squared_multi")
STRUCTURES = ("scalar", "per_feature", "groups", "per_output")


def make_loss(name):
    """Return (loss, n_outputs, n_classes) for a test loss name."""
    if name == "binary":
        return BinaryLogisticLoss(), 1, 2
    if name == "multinomial":
        return MultinomialLogisticLoss(), 3, 3
    if name == "squared":
        return SquaredLoss(), 1, None
    return SquaredLoss(n_targets=2), 2, None


def make_penalty(structure, n_features, n_outputs):
    if structure == "scalar":
        return L2Penalty.scalar()
    if structure == "per_feature":
        return L2Penalty.per_feature(n_features, n_outputs)
    if structure == "groups":
        groups = np.arange(n_features) % 3
        return L2Penalty.from_groups(groups, n_outputs)
    return L2Penalty.per_output(n_features, n_outputs)


def make_data(loss_name, n_samples, n_features, seed, sparse=False, dtype=np.float64):
    """Features and encoded targets for ``loss_name``."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_samples, n_features))
    if sparse:
        X[rng.random(X.shape) < 0.6] = 0.0
    loss, n_outputs, n_classes = make_loss(loss_name)
    coef = rng.standard_normal((n_features, max(n_outputs, 1)))
    raw = X @ coef
    if n_classes is None:
        y = raw + 0.5 * rng.standard_normal(raw.shape)
        y = y[:, 0] if n_outputs == 1 else y
    elif n_classes == 2:
        y = (raw[:, 0] + rng.standard_normal(n_samples) > 0).astype(int)
    else:
        y = np.argmax(raw + rng.gumbel(size=raw.shape), axis=1)
    X = X.astype(dtype)
    if sparse:
        X = sp.csr_matrix(X)
    return X, y, loss, n_outputs, n_classes


def make_fold(
    loss_name,
    structure="scalar",
    sparse=False,
    fit_intercept=True,
    weighted=False,
    n_samples=60,
    n_features=7,
    seed=0,
    dtype=np.float64,
):
    """Return (inner, outer, n_hyper) for a single train/validation split."""
    X, y, loss, n_outputs, n_classes = make_data(
        loss_name, n_samples, n_features, seed, sparse=sparse, dtype=dtype
    )
    classes = np.arange(n_classes) if n_classes else None
    y_enc = loss.encode(np, y, classes, dtype)
    rng = np.random.default_rng(seed + 1)
    sw = rng.uniform(0.5, 2.0, n_samples).astype(dtype) if weighted else None
    train, val = slice(0, n_samples * 2 // 3), slice(n_samples * 2 // 3, None)
    penalty = make_penalty(structure, n_features, n_outputs)
    inner = InnerObjective(
        X[train],
        y_enc[train],
        loss,
        penalty,
        n_outputs,
        fit_intercept,
        None if sw is None else sw[train],
    )
    scale = 2.0 / n_outputs if loss.name == "squared" else 1.0
    outer = ValidationLoss(
        X[val],
        y_enc[val],
        loss,
        n_outputs,
        fit_intercept,
        None if sw is None else sw[val],
        scale=scale,
    )
    return inner, outer, penalty.n_hyper


def make_folds(
    X, y, splits, *, loss, penalty, n_outputs, fit_intercept=True, sample_weight=None
):
    """Engine folds of index splits, sliced directly (the estimators build theirs
    with :mod:`skbilevel.search`)."""

    def rows(array, indices):
        return None if array is None else array[indices]

    folds = []
    for train, test in splits:
        inner = InnerObjective(
            rows(X, train), rows(y, train), loss, penalty, n_outputs,
            fit_intercept, rows(sample_weight, train),
        )  # fmt: skip
        outer = ValidationLoss(
            rows(X, test), rows(y, test), loss, n_outputs, fit_intercept,
            rows(sample_weight, test),
        )  # fmt: skip
        folds.append(Fold(inner, outer))
    return folds


# -- the reference problem of the outer loop (tests/test_hoag.py, test_progress.py) --
# Logistic regression on 200 x 20 synthetic data, 5 folds; its CV loss has an
# interior minimum near lambda = 2.46 in the box [LOW, HIGH].
LOW, HIGH = -6.0, 6.0


def logistic_data(n_samples=200, n_features=20, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_samples, n_features))
    coef = rng.standard_normal(n_features) * 2.0 / np.sqrt(n_features)
    y = (rng.random(n_samples) < 1 / (1 + np.exp(-X @ coef))).astype(int)
    return X, y


def few_informative(seed):
    """3000 rows of 40 features, 3 of them informative (the many-penalty
    searches' test data: one C per feature can pay off on it)."""
    return make_classification(
        3000,
        40,
        n_informative=3,
        n_redundant=0,
        n_clusters_per_class=1,
        flip_y=0.02,
        random_state=seed,
    )


def make_problem(method="cg", X=None, y=None, penalty=None, **params):
    if X is None:
        X, y = logistic_data()
    loss = BinaryLogisticLoss()
    y_encoded = loss.encode(np, y, np.array([0, 1]), X.dtype)
    splits = StratifiedKFold(5, shuffle=True, random_state=0).split(X, y)
    folds = make_folds(
        X, y_encoded, splits, loss=loss,
        penalty=L2Penalty.scalar() if penalty is None else penalty, n_outputs=1,
    )  # fmt: skip
    return CrossValidatedProblem(folds, get_linear_solver(method), **params)


# A bracket that walks past the minimum, and a long first step past it, rejected:
# every status and the running best must follow the history.
VERBOSE_RUNS = {
    "bracket": {"lam0": [LOW], "bracket": 5},
    "rejections": {"lam0": [0.0], "init_step": 6.0, "max_step": 6.0},
}
