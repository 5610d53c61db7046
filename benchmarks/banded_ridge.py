"""Banded ridge: one alpha per feature band, against himalaya's solvers.

Run ``python benchmarks/banded_ridge.py`` from the repository root (needs
``pip install "skbilevel[bench]"`` for himalaya; ``--quick`` for a smaller
problem, under two minutes; ``--repeat N`` fits per method, median time
reported, default 1; ``--seed``). One BLAS thread for every method, himalaya
on its NumPy backend (CPU).

Data: ``himalaya.utils.generate_multikernel_dataset``, the generator of
himalaya's own examples: 4 bands of Gaussian features of sizes 100, 200, 100
and 50, 1500 training and 500 test samples, 300 targets (``--quick``: 600 /
300 samples, 100 targets), each target a sum of one random linear map per band
scaled by that band's weight, signal of unit variance plus noise of standard
deviation 0.5. Two settings of the band weights (one row of 4 per target,
summing to one):

- ``shared``: the same weights for every target, [0.6, 0.25, 0.15, 0] (the
  last band is pure nuisance): one alpha per band suits every target;
- ``per-target``: weights drawn per target from a Dirichlet(0.3), as
  himalaya's examples do: most targets live in one or two bands, each its own.

Every method gets the generator's float32 arrays (himalaya's native dtype)
and the same 5 folds (``KFold(5)``) where it takes ``cv``:

- ``BilevelSearchCV(Ridge(), {"alpha": (1e-3, 1e5)}, penalty_groups=bands)``:
  one alpha per band, shared by all targets (``penalty_gain_`` printed);
- the same without ``penalty_groups`` (one alpha), and with bounds of shape
  (n_targets,) (one alpha per target, no bands);
- the same with ``penalty_groups=bands`` and bounds of shape (n_targets, 4):
  one alpha per band per target, searched in closed form over band
  weightings proposed by the targets' Newton steps (the median over targets
  of each band's alpha printed, and ``penalty_gain_``, the relative CV loss
  decrease from one alpha per target);
- ``sklearn.linear_model.RidgeCV(np.logspace(-3, 5, 20),
  alpha_per_target=True)`` (leave-one-out, not the folds);
- ``himalaya.ridge.GroupRidgeCV`` (a.k.a. ``BandedRidgeCV``), its random
  search over band weights on the simplex, 41 alphas ``np.logspace(-10, 10,
  41)``, both chosen per target; ``n_iter`` 100 (its examples' value) and 20
  (``--quick``: 20 and 5);
- ``himalaya.kernel_ridge.MultipleKernelRidgeCV(kernels="precomputed",
  solver="hyper_gradient")`` after a ``ColumnKernelizer`` of one linear
  kernel per band, with the solver parameters of himalaya's
  ``plot_mkr_2_solvers.py`` example (30 steps, per-target band weights).

Columns: fit wall time (refit included), its ratio to ``GroupRidgeCV`` at the
larger ``n_iter``, held-out R^2 (``sklearn.metrics.r2_score`` per target)
mean and median over targets, and the alphas per band: ours, or for himalaya
the median over targets of ``exp(-deltas_)`` (its per-band penalty on the
unscaled features).
"""

import argparse
import warnings

import numpy as np
from _common import median_time, print_table
from himalaya.backend import set_backend
from himalaya.kernel_ridge import ColumnKernelizer, Kernelizer, MultipleKernelRidgeCV
from himalaya.ridge import GroupRidgeCV
from himalaya.utils import generate_multikernel_dataset
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.metrics import r2_score
from sklearn.model_selection import KFold
from sklearn.pipeline import make_pipeline
from threadpoolctl import threadpool_limits

from skbilevel import BilevelSearchCV

BAND_SIZES = [100, 200, 100, 50]
SHARED_WEIGHTS = [0.6, 0.25, 0.15, 0.0]
NOISE = 0.5
ALPHA_RANGE = (1e-3, 1e5)
HIMALAYA_ALPHAS = np.logspace(-10, 10, 41)


def make_problem(setting, quick, seed):
    """``(X_train, X_test, Y_train, Y_test, band_labels)`` of one setting."""
    n_train, n_test, n_targets = (600, 300, 100) if quick else (1500, 500, 300)
    kernel_weights = None
    if setting == "shared":
        kernel_weights = np.tile(SHARED_WEIGHTS, (n_targets, 1))
    X_train, X_test, Y_train, Y_test, _, _ = generate_multikernel_dataset(
        n_kernels=len(BAND_SIZES),
        n_targets=n_targets,
        n_samples_train=n_train,
        n_samples_test=n_test,
        noise=NOISE,
        kernel_weights=kernel_weights,
        n_features_list=BAND_SIZES,
        random_state=seed,
    )
    band_labels = np.repeat(np.arange(len(BAND_SIZES)), BAND_SIZES)
    return X_train, X_test, Y_train, Y_test, band_labels


def methods(band_labels, n_targets, splits, quick, seed):
    """``(name, make_estimator, band_alphas)`` of every compared method."""
    low, high = ALPHA_RANGE
    per_target = (np.full(n_targets, low), np.full(n_targets, high))
    shape = (n_targets, len(BAND_SIZES))
    per_band_per_target = (np.full(shape, low), np.full(shape, high))
    band_edges = np.cumsum([0] + BAND_SIZES)
    n_iters = (20, 5) if quick else (100, 20)

    def bilevel(param_space, **kwargs):
        return lambda: BilevelSearchCV(
            Ridge(), param_space, cv=splits, scoring="r2", **kwargs
        )

    def group_ridge(n_iter):
        solver_params = dict(n_iter=n_iter, alphas=HIMALAYA_ALPHAS, progress_bar=False)
        return lambda: GroupRidgeCV(
            groups=band_labels,
            cv=splits,
            random_state=seed,
            solver_params=solver_params,
        )

    def multiple_kernel_ridge():
        kernelizer = ColumnKernelizer(
            [
                (f"band {b}", Kernelizer(), slice(start, stop))
                for b, (start, stop) in enumerate(zip(band_edges, band_edges[1:]))
            ]
        )
        solver_params = dict(
            max_iter=30,
            tol=1e-3,
            initial_deltas="ridgecv",
            max_iter_inner_hyper=1,
            hyper_gradient_method="direct",
            n_targets_batch=200,
            progress_bar=False,
        )
        return make_pipeline(
            kernelizer,
            MultipleKernelRidgeCV(
                kernels="precomputed",
                solver="hyper_gradient",
                solver_params=solver_params,
                cv=splits,
            ),
        )

    rows = []
    if "penalty_groups" in BilevelSearchCV(Ridge(), {}).get_params():
        rows.append(
            (
                "BilevelSearchCV, alpha per band",
                bilevel({"alpha": ALPHA_RANGE}, penalty_groups=band_labels),
                _ours_band_alphas,
            )
        )
    else:
        print("(BilevelSearchCV has no penalty_groups yet: per-band row skipped)")
    rows += [
        ("BilevelSearchCV, one alpha", bilevel({"alpha": ALPHA_RANGE}), None),
        ("BilevelSearchCV, alpha per target", bilevel({"alpha": per_target}), None),
        (
            "BilevelSearchCV, alpha per band per target",
            bilevel({"alpha": per_band_per_target}, penalty_groups=band_labels),
            _ours_per_target_band_alphas,
        ),
        (
            "RidgeCV(20, LOO, per target)",
            lambda: RidgeCV(alphas=np.logspace(-3, 5, 20), alpha_per_target=True),
            None,
        ),
    ]
    rows += [
        (f"himalaya GroupRidgeCV(n_iter={n})", group_ridge(n), _himalaya_band_alphas)
        for n in n_iters
    ]
    rows.append(
        (
            "himalaya MultipleKernelRidgeCV(hyper_gradient)",
            multiple_kernel_ridge,
            _himalaya_band_alphas,
        )
    )
    return rows, f"himalaya GroupRidgeCV(n_iter={n_iters[0]})"


def _ours_band_alphas(search):
    alpha = np.atleast_1d(search.best_params_["alpha"])
    gain = f" (gain {search.penalty_gain_:.3f})"
    return _format_alphas(np.broadcast_to(alpha, len(BAND_SIZES))) + gain


def _ours_per_target_band_alphas(search):
    alphas = np.median(search.best_params_["alpha"], axis=0)
    return _format_alphas(alphas) + f" (median, gain {search.penalty_gain_:.3f})"


def _himalaya_band_alphas(model):
    if hasattr(model, "steps"):
        model = model[-1]
    # Z_b = exp(deltas_b / 2) X_b with penalty ||w||^2 is X_b with exp(-deltas_b)
    alphas = np.median(np.exp(-np.asarray(model.deltas_, dtype=float)), axis=1)
    return _format_alphas(alphas) + " (median)"


def _format_alphas(alphas):
    return "[" + " ".join(f"{a:.3g}" for a in alphas) + "]"


def timed_fit(make, X, Y, repeat):
    """``(the last fitted model, median wall time of fit)`` over ``repeat``."""
    return median_time(lambda: make().fit(X, Y), repeat)


def run_setting(setting, quick, repeat, seed):
    X_train, X_test, Y_train, Y_test, band_labels = make_problem(setting, quick, seed)
    n_targets = Y_train.shape[1]
    splits = list(KFold(5).split(X_train))
    rows, reference = methods(band_labels, n_targets, splits, quick, seed)
    results = []
    for name, make, band_alphas in rows:
        model, seconds = timed_fit(make, X_train, Y_train, repeat)
        prediction = np.asarray(model.predict(X_test), dtype=float)
        r2 = r2_score(Y_test, prediction, multioutput="raw_values")
        results.append(
            {
                "method": name,
                "seconds": seconds,
                "r2_mean": r2.mean(),
                "r2_median": np.median(r2),
                "alphas": band_alphas(model) if band_alphas else None,
            }
        )
    reference_time = next(r["seconds"] for r in results if r["method"] == reference)
    for row in results:
        row["ratio"] = row["seconds"] / reference_time
    n_train, n_features = X_train.shape
    print_table(
        results,
        [
            ("method", "method", ""),
            ("seconds", "seconds", ".2f"),
            ("ratio", "x GroupRidgeCV", ".2f"),
            ("r2_mean", "test R2 mean", ".4f"),
            ("r2_median", "median", ".4f"),
            ("alphas", "alpha per band", ""),
        ],
        title=(
            f"{setting} band weights: {n_train} x {n_features} (bands {BAND_SIZES}), "
            f"{n_targets} targets, {len(Y_test)} test samples"
        ),
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    set_backend("numpy")
    with threadpool_limits(1):
        for setting in ("shared", "per-target"):
            run_setting(setting, args.quick, args.repeat, args.seed)


if __name__ == "__main__":
    main()
