"""Helpers shared by the benchmark scripts: data sets, scoring, searches, tables.

Run the scripts from the repository root (``python benchmarks/<name>.py``); they
import this module as ``_common``.
"""

import importlib
import importlib.util
import time
import warnings
from pathlib import Path

import numpy as np
from _datasets import load_fashion_mnist, make_sparse_classification
from scipy.stats import loguniform
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV, Ridge
from sklearn.metrics import log_loss
from sklearn.model_selection import (
    GridSearchCV,
    HalvingGridSearchCV,
    RandomizedSearchCV,
    cross_validate,
    train_test_split,
)
from sklearn.preprocessing import StandardScaler

from skbilevel import BilevelSearchCV, HOAGLogisticRegression

__all__ = [
    "C_GRID",
    "C_RANGE",
    "MANY_BELOW",
    "MANY_REPEATS",
    "best_time",
    "cv_log_loss",
    "fit_timed",
    "load_breast_cancer_standardized",
    "load_fashion_mnist_binary",
    "load_fashion_split",
    "load_sklearn_split",
    "load_sparse_split",
    "median_time",
    "medians_in_turns",
    "optuna_search",
    "oracle_fit",
    "oracle_ridge",
    "pool_2x2",
    "print_table",
    "run_module",
    "search_methods",
    "timed_in_turns",
]

#: The 20 values of C every grid-based baseline tries.
C_GRID = np.logspace(-4, 4, 20)
#: The box every continuous search (gradient, random, Optuna) explores.
C_RANGE = (1e-4, 1e4)


# -- data ---------------------------------------------------------------------
def load_breast_cancer_standardized():
    """breast_cancer (569 x 30, labels 0/1), each feature scaled to zero mean and
    unit variance."""
    X, y = load_breast_cancer(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def load_fashion_mnist_binary(classes=(0, 6), *, subset="train", n_samples=None):
    """Fashion-MNIST restricted to two classes, standardized pixel by pixel.

    Classes 0 and 6 (T-shirt/top vs Shirt, the hardest pair) of the training file
    give 12000 x 784. ``n_samples`` keeps the first rows only (quick runs).
    Constant pixels stay at 0 (``StandardScaler`` leaves them unscaled).
    """
    X, y = load_fashion_mnist(subset=subset, classes=classes)
    if n_samples is not None:
        X, y = X[:n_samples], y[:n_samples]
    return StandardScaler().fit_transform(X), y


def pool_2x2(images):
    """Average 2 x 2 blocks of pixels: 28 x 28 images -> 14 x 14 (784 -> 196)."""
    blocks = images.reshape(-1, 14, 2, 14, 2)
    return blocks.mean(axis=(2, 4)).reshape(len(images), -1)


def _standardized(X, y, X_test, y_test):
    """The four arrays with X and X_test scaled by statistics of X alone."""
    scaler = StandardScaler().fit(X)
    return scaler.transform(X), y, scaler.transform(X_test), y_test


def load_fashion_split(
    classes=None, *, n_samples=None, stratified=False, pool=False, **kwargs
):
    """``(X, y, X_test, y_test)``: Fashion-MNIST train file for selection, test file
    for testing, standardized with the selection data's statistics.

    ``classes`` keeps those labels (None: all ten). ``n_samples`` keeps that many
    training rows: the first ones, or with ``stratified`` a class-balanced random
    subsample (seed 0). ``pool`` averages 2 x 2 pixel blocks (784 -> 196
    features). ``kwargs`` go to ``_datasets.load_fashion_mnist``.
    """
    X, y = load_fashion_mnist(subset="train", classes=classes, **kwargs)
    X_test, y_test = load_fashion_mnist(subset="test", classes=classes, **kwargs)
    if n_samples is not None and n_samples < y.size:
        if stratified:
            X, _, y, _ = train_test_split(
                X, y, train_size=n_samples, stratify=y, random_state=0
            )
        else:
            X, y = X[:n_samples], y[:n_samples]
    if pool:
        X, X_test = pool_2x2(X), pool_2x2(X_test)
    return _standardized(X, y, X_test, y_test)


def load_sparse_split(n_samples, n_features, density=0.002):
    """``(X, y, X_test, y_test)`` of :func:`make_sparse_classification` (seed 0,
    CSR, not rescaled), 20% held out (stratified, seed 0)."""
    X, y = make_sparse_classification(
        n_samples, n_features, density=density, random_state=0
    )
    X, X_test, y, y_test = train_test_split(
        X, y, test_size=0.2, stratify=y, random_state=0
    )
    return X, y, X_test, y_test


def load_sklearn_split(name, n_samples=None):
    """``(X, y, X_test, y_test)`` of scikit-learn's ``"breast_cancer"`` or
    ``"digits"``: 25% held out (stratified, seed 0), standardized; ``n_samples``
    keeps the first rows of the selection part."""
    loader = {"breast_cancer": load_breast_cancer, "digits": load_digits}[name]
    X, y = loader(return_X_y=True)
    X, X_test, y, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=0
    )
    if n_samples is not None:
        X, y = X[:n_samples], y[:n_samples]
    return _standardized(X, y, X_test, y_test)


# -- scoring ------------------------------------------------------------------
def cv_log_loss(C, X, y, cv, *, tol=1e-6):
    """Mean validation log-loss of ``LogisticRegression(C=C, tol=tol)`` over the
    splits of ``cv`` (a splitter or a list of ``(train, validation)`` pairs)."""
    splits = cv.split(X, y) if hasattr(cv, "split") else cv
    losses = []
    for train, validation in splits:
        model = LogisticRegression(C=C, tol=tol, max_iter=10000)
        model.fit(X[train], y[train])
        proba = model.predict_proba(X[validation])
        losses.append(log_loss(y[validation], proba, labels=model.classes_))
    return float(np.mean(losses))


# -- the searches compared ----------------------------------------------------
def oracle_fit(X, y, cv, C):
    """The oracle of a search that chose ``C``: cross-validation of
    ``LogisticRegression(C=C)`` (scikit-learn defaults) on the same folds,
    plus one refit on all the data, which it returns."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        cross_validate(LogisticRegression(C=C), X, y, cv=cv)
        return LogisticRegression(C=C).fit(X, y)


def _best_param_C(search):
    return float(search.best_params_["C"])


def search_methods(cv, *, hoag=False):
    """``{name: (unfitted search, pick)}`` in table order, ``pick(fitted) -> C``.

    All score with ``neg_log_loss`` on the folds of ``cv`` and refit on all the
    data; the estimator is ``LogisticRegression()`` with its defaults. ``hoag``
    adds ``HOAGLogisticRegression(cv=cv)`` after ``BilevelSearchCV``. Optuna's
    search is included when optuna is installed.
    """
    common = dict(cv=cv, scoring="neg_log_loss")
    methods = {
        "BilevelSearchCV": (
            BilevelSearchCV(LogisticRegression(), {"C": C_RANGE}, **common),
            _best_param_C,
        )
    }
    if hoag:
        methods["HOAGLogisticRegression"] = (
            HOAGLogisticRegression(cv=cv),
            lambda model: float(model.C_),
        )
    methods["GridSearchCV (20)"] = (
        GridSearchCV(LogisticRegression(), {"C": C_GRID}, **common),
        _best_param_C,
    )
    methods["RandomizedSearchCV (20)"] = (
        RandomizedSearchCV(
            LogisticRegression(),
            {"C": loguniform(*C_RANGE)},
            n_iter=20,
            random_state=0,
            **common,
        ),
        _best_param_C,
    )
    methods["LogisticRegressionCV (20)"] = (
        LogisticRegressionCV(Cs=C_GRID, **common),
        lambda search: float(np.ravel(search.C_)[0]),
    )
    methods["HalvingGridSearchCV (20)"] = (
        HalvingGridSearchCV(
            LogisticRegression(), {"C": C_GRID}, random_state=0, **common
        ),
        _best_param_C,
    )
    optuna = optuna_search(cv)
    if optuna is not None:
        methods["OptunaSearchCV (20)"] = (optuna, _best_param_C)
    return methods


def optuna_search(cv):
    """OptunaSearchCV with 20 trials over ``C_RANGE`` (log scale), or None when
    optuna and its scikit-learn integration are not installed."""
    for module in ("optuna_integration", "optuna.integration"):
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if found:
            integration = importlib.import_module(module)
            import optuna

            distribution = optuna.distributions.FloatDistribution(*C_RANGE, log=True)
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            return integration.OptunaSearchCV(
                LogisticRegression(),
                {"C": distribution},
                cv=cv,
                scoring="neg_log_loss",
                n_trials=20,
                random_state=0,
            )
    return None


# -- timing and tables ----------------------------------------------------------
def best_time(function, repeat=3):
    """``(result of the last call, shortest wall time in seconds)`` over ``repeat``
    calls."""
    best = np.inf
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return result, best


def median_time(function, repeat=3):
    """``(result of the last call, median wall time in seconds)`` over
    ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return result, float(np.median(times))


# fits shorter than MANY_BELOW seconds are timed at least MANY_REPEATS times
# (run.py: ours and the oracle; timed_in_turns: every method)
MANY_BELOW, MANY_REPEATS = 0.1, 15


def medians_in_turns(fits, first, turns):
    """``{name: (median seconds, number of timed fits)}`` of ``fits`` (name
    -> a function that fits once and returns its seconds), timed in turns:
    one fit of each per turn, so that all see the shared machine in the same
    states.

    ``first``: name -> seconds of the fit already made, counted when it took
    a second or more (a shorter first fit was a warm-up: imports, caches,
    allocator); ``turns``: name -> number of timed fits.
    """
    times = {
        name: [seconds] if seconds >= 1.0 else [] for name, seconds in first.items()
    }
    for _ in range(max(turns.values(), default=0)):
        for name, fit in fits.items():
            if len(times[name]) < turns[name]:
                times[name].append(fit())
    return {name: (float(np.median(t)), len(t)) for name, t in times.items()}


def fit_timed(make, X, y):
    """``(model, seconds)``: ``make()`` fitted on ``X, y``, and how long
    ``make()`` and the fit took together (a maker may do work of its own:
    :func:`oracle_ridge`)."""
    start = time.perf_counter()
    model = make().fit(X, y)
    return model, time.perf_counter() - start


def oracle_ridge(alpha, X, y, splits):
    """A maker for the Ridge oracle at ``alpha``: each call cross-validates
    ``Ridge(alpha)`` on ``splits`` and returns it unfitted, for the caller's
    refit (:func:`timed_in_turns` times both together)."""

    def make():
        cross_validate(Ridge(alpha=alpha), X, y, cv=splits)
        return Ridge(alpha=alpha)

    return make


def timed_in_turns(makers, X, y, repeat, first=None):
    """``({name: last model}, {name: median seconds of fit})`` of the methods
    ``makers`` (name -> unfitted estimator), fit in turns
    (:func:`medians_in_turns`).

    Each method is fit once first; ``first`` gives that fit for methods
    already fit once, ``{name: (model, seconds)}`` (:func:`fit_timed`).
    ``repeat`` turns, at least ``MANY_REPEATS`` where a method's fit takes
    under ``MANY_BELOW`` seconds (a few milliseconds' fits vary by a third
    between single runs on this machine).
    """
    first, fitted = dict(first or {}), {}
    for name, make in makers.items():
        if name not in first:
            first[name] = fit_timed(make, X, y)
        fitted[name] = first[name][0]

    def fit(name):
        fitted[name], seconds = fit_timed(makers[name], X, y)
        return seconds

    shortest = min(seconds for _, seconds in first.values())
    n = repeat if shortest >= MANY_BELOW else max(repeat, MANY_REPEATS)
    medians = medians_in_turns(
        {name: lambda name=name: fit(name) for name in makers},
        {name: seconds for name, (_, seconds) in first.items()},
        dict.fromkeys(makers, n),
    )
    return fitted, {name: median for name, (median, _) in medians.items()}


def print_table(rows, columns, title=None):
    """Print ``rows`` (dicts) as an aligned text table.

    ``columns`` is a list of ``(key, header, format)``; ``format`` is a format
    spec such as ``".2e"`` or ``"d"`` (``""`` for ``str``). Missing or None
    values print as ``-``; string values print as they are.
    """
    cells = [[_cell(row.get(key), spec) for key, _, spec in columns] for row in rows]
    headers = [header for _, header, _ in columns]
    widths = [
        max([len(header)] + [len(line[i]) for line in cells])
        for i, header in enumerate(headers)
    ]
    if title:
        print(title)
    print("  ".join(h.rjust(w) for h, w in zip(headers, widths)))
    print("  ".join("-" * w for w in widths))
    for line in cells:
        print("  ".join(cell.rjust(w) for cell, w in zip(line, widths)))
    print(flush=True)


def _cell(value, spec):
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return format(value, spec)


def run_module():
    """benchmarks/run.py as a module (its data sets, constants and rows)."""
    here = Path(__file__).resolve().parent
    spec = importlib.util.spec_from_file_location("run", here / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
