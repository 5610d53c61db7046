"""Ridge: the closed-form K-fold search against RidgeCV and GridSearchCV.

Run ``python benchmarks/ridge.py`` from the repository root (``--quick`` for
smaller data, a minute; ``--repeat N`` runs per method, median reported,
default 3; a method whose fit takes under a second is fit once more
first, untimed). Each table fits its methods in turns, one fit of each per
turn, and at least 15 turns where a method's fit takes under 0.1 s.
One BLAS thread for every method, the same 5 folds (``KFold(5)``),
``scoring="neg_mean_squared_error"`` where a search scores.

Scalar alpha (bounds [1e-4, 1e4]), on diabetes and two ``make_regression``
problems (2000 x 3000 with effective_rank=200, 50000 x 500 with
effective_rank=100; ``--quick``: 1000 x 1500 and 10000 x 300):

- ``BilevelSearchCV(Ridge(), {"alpha": (1e-4, 1e4)}, cv=folds)``, the default
  (closed-form) path, refit included (each fold eigendecomposed, reduced to
  tridiagonal form or given a Lanczos basis, as the path's cost model
  chooses: the Lanczos basis for the 2000 x 3000 problem's 1600 x 1600
  fold kernels);
- ``RidgeCV(alphas=20 values)``: efficient leave-one-out (not K-fold);
- ``GridSearchCV(Ridge(), 20 alphas, cv=folds)`` (= ``RidgeCV(cv=folds)``);
- the oracle: ``cross_validate(Ridge(alpha=ours), cv=folds)`` plus one refit.

``gap %`` is the 5-fold MSE at a method's alpha over the smallest of a
201-point log grid on [1e-4, 1e4], minus one. The curve is computed with the
package's closed form; its agreement with ``Ridge.fit`` at the pick is
printed (relative difference of the 5-fold MSE).

Per-target alphas: ``make_regression(5000, 400, n_targets=50)`` with
per-target noise levels (``--quick``: 2000 x 200, 20 targets):
``BilevelSearchCV`` with bounds of shape (50,) against ``RidgeCV(alphas=20
values, alpha_per_target=True)``; each target's alpha is checked against
that target's own 201-point grid (``max gap %`` over targets).
"""

import argparse
import warnings

import numpy as np
from _common import fit_timed, oracle_ridge, timed_in_turns
from sklearn.datasets import load_diabetes, make_regression
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.model_selection import GridSearchCV, KFold, cross_validate
from threadpoolctl import threadpool_limits

from skbilevel import BilevelSearchCV, KFoldRidgeCV
from skbilevel.model_selection import RidgeAdapter
from skbilevel.objectives import L2Penalty
from skbilevel.search import engine_folds, fold_weights, materialize_folds
from skbilevel.search._ridge_factor import _FoldPath

GRID_20 = np.logspace(-4, 4, 20)
GRID_201 = np.logspace(-4, 4, 201)


SETS = ("diabetes", "wide", "tall", "per-target")


def data_sets(quick, sets=SETS):
    if "diabetes" in sets:
        X, y = load_diabetes(return_X_y=True)
        yield "diabetes 442x10", X, y
    if "wide" in sets:
        n, p = (1000, 1500) if quick else (2000, 3000)
        X, y = make_regression(n, p, effective_rank=200, noise=1.0, random_state=0)
        yield f"make_regression {n}x{p} rank 200", X, y
    if "tall" in sets:
        n, p = (10000, 300) if quick else (50000, 500)
        X, y = make_regression(n, p, effective_rank=100, noise=1.0, random_state=0)
        yield f"make_regression {n}x{p} rank 100", X, y


def cv_curve(X, y, splits, alphas):
    """5-fold MSE of each target at each alpha, shape (n_alphas, n_targets).

    ``alphas`` of shape (n_alphas,) (one for all targets) or (n_alphas,
    n_targets) (one per target); all at once, on one factorization per fold.
    """
    encoding = RidgeAdapter().encode_targets(Ridge(), y)
    folds = materialize_folds(X, y, splits)
    n_outputs = encoding.n_outputs
    engine = engine_folds(
        folds,
        encoding,
        fold_weights(folds, y, None, lambda y_train, weights: weights),
        penalty=lambda n_features: L2Penalty.per_output(n_features, n_outputs),
        fit_intercept=True,
    )
    points = np.asarray(alphas, dtype=float)
    if points.ndim == 1:
        points = np.repeat(points[:, None], n_outputs, axis=1)
    # every alpha at once: the folds' factorizations as the search's cost
    # model chooses them for as many points
    paths = [_FoldPath(fold, workload=(len(points), 1)) for fold in engine]
    # the engine's criterion is the MSE averaged over targets: n_outputs times
    # a target's term is that target's MSE
    return n_outputs * np.mean([path.curve(points, False)[0] for path in paths], axis=0)


def sklearn_cv_mse(X, y, splits, alpha):
    scores = cross_validate(
        Ridge(alpha=alpha), X, y, cv=splits, scoring="neg_mean_squared_error"
    )
    return -scores["test_score"].mean()


def scalar_table(quick, repeat, sets=SETS):
    rows = []
    for name, X, y in data_sets(quick, sets):
        splits = list(KFold(5).split(X))
        curve = cv_curve(X, y, splits, GRID_201)[:, 0]
        best = curve.min()
        makers = {
            "ours": lambda splits=splits: BilevelSearchCV(
                Ridge(),
                {"alpha": (1e-4, 1e4)},
                cv=splits,
                scoring="neg_mean_squared_error",
            ),
            "kfold": lambda splits=splits: KFoldRidgeCV(cv=splits),
            "loo": lambda: RidgeCV(alphas=GRID_20),
            "grid": lambda splits=splits: GridSearchCV(
                Ridge(),
                {"alpha": GRID_20},
                cv=splits,
                scoring="neg_mean_squared_error",
            ),
        }
        # the oracle fits at our alpha: known after our first fit (which
        # serves as our warm-up)
        first = {"ours": fit_timed(makers["ours"], X, y)}
        alpha = first["ours"][0].best_params_["alpha"]
        makers["oracle"] = oracle_ridge(alpha, X, y, splits)
        fitted, seconds = timed_in_turns(makers, X, y, repeat, first)
        kfold, loo, grid = fitted["kfold"], fitted["loo"], fitted["grid"]
        t_kfold, t_oracle, t_loo = seconds["kfold"], seconds["oracle"], seconds["loo"]
        picks = [alpha, kfold.alpha_, loo.alpha_, grid.best_params_["alpha"]]
        ours_mse, kfold_mse, loo_mse, grid_mse = cv_curve(X, y, splits, picks)[:, 0]
        check = sklearn_cv_mse(X, y, splits, alpha) / ours_mse - 1
        for method, t, a, mse in [
            ("KFoldRidgeCV", t_kfold, kfold.alpha_, kfold_mse),
            ("BilevelSearchCV", seconds["ours"], alpha, ours_mse),
            ("oracle", t_oracle, alpha, ours_mse),
            ("RidgeCV(20, LOO)", t_loo, loo.alpha_, loo_mse),
            ("GridSearchCV(20)", seconds["grid"], grid.best_params_["alpha"], grid_mse),
        ]:
            rows.append(
                (
                    name,
                    method,
                    t,
                    t / t_kfold,
                    t / t_loo,
                    t / t_oracle,
                    a,
                    100 * (mse / best - 1),
                )
            )
        rows.append(
            (
                name,
                f"(closed form vs Ridge.fit: {check:+.1e})",
            )
            + ("",) * 6
        )
    header = (
        "data",
        "method",
        "seconds",
        "x KFoldRidgeCV",
        "x LOO",
        "x oracle",
        "alpha",
        "gap %",
    )
    _print(header, rows)


def per_target_table(quick, repeat):
    n, p, q = (2000, 200, 20) if quick else (5000, 400, 50)
    rng = np.random.default_rng(0)
    X, Y, coef = make_regression(
        n, p, n_targets=q, n_informative=p // 4, coef=True, random_state=0
    )
    Y = Y + rng.standard_normal(Y.shape) * np.logspace(0, 2.5, q) * Y.std(axis=0) / 30
    splits = list(KFold(5).split(X))
    low, high = np.full(q, 1e-4), np.full(q, 1e4)
    makers = {
        "ours": lambda: BilevelSearchCV(
            Ridge(), {"alpha": (low, high)}, cv=splits, scoring="neg_mean_squared_error"
        ),
        "kfold": lambda: KFoldRidgeCV(cv=splits, alpha_per_target=True),
        "loo": lambda: RidgeCV(alphas=GRID_20, alpha_per_target=True),
    }
    first = {"ours": fit_timed(makers["ours"], X, Y)}
    ours_alphas = np.asarray(first["ours"][0].best_params_["alpha"])
    makers["oracle"] = oracle_ridge(ours_alphas, X, Y, splits)
    fitted, seconds = timed_in_turns(makers, X, Y, repeat, first)
    loo, kfold = fitted["loo"], fitted["kfold"]
    t_loo = seconds["loo"]
    curves = cv_curve(X, Y, splits, GRID_201)
    best = curves.min(axis=0)
    # each target's MSE at its own alpha: ours (the oracle's too), LOO's
    ours_mse, kfold_mse, loo_mse = cv_curve(
        X, Y, splits, np.stack([ours_alphas, kfold.alpha_, loo.alpha_])
    )
    rows = []
    for method, t, mse in [
        ("KFoldRidgeCV (per target)", seconds["kfold"], kfold_mse),
        ("BilevelSearchCV (per target)", seconds["ours"], ours_mse),
        ("oracle", seconds["oracle"], ours_mse),
        ("RidgeCV(20, LOO, per target)", t_loo, loo_mse),
    ]:
        gaps = 100 * (mse / best - 1)
        rows.append(
            (f"{n}x{p}, {q} targets", method, t, t / t_loo, gaps.max(), gaps.mean())
        )
    _print(("data", "method", "seconds", "x LOO", "max gap %", "mean gap %"), rows)


def _print(header, rows):
    widths = [max(len(_fmt(r[i])) for r in rows + [header]) for i in range(len(header))]
    print("  ".join(h.rjust(w) for h, w in zip(header, widths)))
    for row in rows:
        print("  ".join(_fmt(c).rjust(w) for c, w in zip(row, widths)))
    print()


def _fmt(value):
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--sets", nargs="+", choices=SETS, default=list(SETS), help="tables to run"
    )
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    with threadpool_limits(1):
        if set(args.sets) - {"per-target"}:
            scalar_table(args.quick, args.repeat, args.sets)
        if "per-target" in args.sets:
            per_target_table(args.quick, args.repeat)


if __name__ == "__main__":
    main()
