"""Our inner solvers against scikit-learn's ``LogisticRegression`` solvers.

Run ``python benchmarks/inner_solver.py`` from the repository root (``--quick``
for a short run on 3000 samples; ``--datasets`` picks the tables, ``--Cs``,
``--max-rows``, ``--pool``, ``--repeat`` and ``--blas-threads`` change the
setting; ``--help`` lists them).

Binary table
------------

Problem. Fashion-MNIST T-shirt vs Shirt (classes 0 and 6 of the train file,
12000 x 784), standardized, float64; binary logistic regression with an
unpenalized intercept at a few values of C around the cross-validated optimum
(C ~ 2e-3).

Matched accuracy. scikit-learn minimizes the mean objective
``(1/n) sum_i loss_i + ||w||^2 / (2 C n)`` with SciPy's L-BFGS-B and stops when
the largest entry of its gradient is at most ``tol`` (or when ``f`` stops
decreasing, ``ftol = 64 eps``). Ours minimizes ``G = sum_i loss_i + ||w||^2 /
(2 C)``, ``n`` times the same function, and stops on the Euclidean norm of
``grad G``. So scikit-learn is fit first, at its default ``tol=1e-4`` and at
``1e-6``; ``||grad G||`` is evaluated at its solution, and ours runs with
``gtol_scale=1`` and that norm as ``tol``: it stops as soon as its gradient is no
larger than scikit-learn's final one (it may also stop earlier on its own
``ftol = 10 eps``; the table reports both final norms). ``coef diff`` is
``||w_ours - w_sklearn|| / ||w_sklearn||`` over coefficients and intercept.

Timing. Both start from zero (``warm_start=False``), ``max_iter=10000``, the
same BLAS threads. Best of 3 wall times; ours includes building the objective
(its input checks), scikit-learn's its input validation.

Multinomial tables
------------------
Problems. digits (1797 x 64, 10 classes) at C in {0.1, 1, 10}, and Fashion-MNIST
10 classes (a stratified subsample of ``--max-rows`` rows of the train file,
seed 0, 784 pixels or 196 with ``--pool``) at C in {1e-2, 1e-1, 1}; both
standardized, float64, with an unpenalized intercept per class. Ours is
``InnerObjective`` with ``MultinomialLogisticLoss`` (one-hot targets, ``K``
coefficient columns: scikit-learn's symmetric parametrization, the objective
again ``n`` times scikit-learn's).

Matched accuracy, as above, for each scikit-learn solver (``lbfgs`` and
``newton-cholesky``) at ``tol`` 1e-4 and 1e-6: its ``||grad G||`` is the target
of our two solvers, ``minimize_lbfgs`` and ``minimize_newton_cg`` (exact
Hessian-vector products ``inner.hessp``). Newton-CG gets the same stopping test
written as ``tol = target / ||grad G(0)||`` with ``gtol_scale = ||grad G(0)||``,
as the estimators call it, because its CG forcing term
``min(0.5, sqrt(||g|| / gtol_scale))`` is relative to ``gtol_scale``.
``coef diff`` is now relative to a tight reference: Newton-CG run to
``||grad G|| <= 1e-10 ||grad G(0)||`` (or round-off; its final norm is in the
title). ``it`` counts L-BFGS or Newton iterations; ``evals`` counts gradient
evaluations, plus Hessian-vector products for Newton-CG (scikit-learn does not
report it). ``x sklearn`` is the time over that of the scikit-learn fit matched.

scikit-learn's multinomial ``newton-cholesky`` forms and factors the
``(K p) x (K p)`` Hessian (7850 x 7850 on full Fashion-MNIST: tens of seconds
per Newton step on one core): ``--pool`` or ``--sklearn-solvers lbfgs`` keeps
that table short.
"""

import argparse
import contextlib
import math
from functools import partial

import numpy as np
from _common import (
    best_time,
    load_fashion_mnist_binary,
    load_fashion_split,
    print_table,
)
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from skbilevel.objectives import (
    BinaryLogisticLoss,
    InnerObjective,
    L2Penalty,
    MultinomialLogisticLoss,
)
from skbilevel.solvers import minimize_lbfgs, minimize_newton_cg

COLUMNS = [
    ("C", "C", ".0e"),
    ("sk_tol", "sklearn tol", ".0e"),
    ("sk_grad", "|grad G| sklearn", ".2e"),
    ("our_grad", "|grad G| ours", ".2e"),
    ("coef_diff", "coef diff", ".1e"),
    ("sk_iter", "it sklearn", "d"),
    ("our_iter", "it ours", "d"),
    ("sk_s", "sklearn s", ".3f"),
    ("our_s", "ours s", ".3f"),
    ("ratio", "ours/sklearn", ".2f"),
]


MULTINOMIAL_COLUMNS = [
    ("C", "C", ".0e"),
    ("target", "matched to", ""),
    ("solver", "solver", ""),
    ("grad", "|grad G|", ".2e"),
    ("coef_diff", "coef diff", ".1e"),
    ("n_iter", "it", "d"),
    ("n_fun", "evals", "d"),
    ("seconds", "s", ".3f"),
    ("ratio", "x sklearn", ".2f"),
]

SKLEARN_SOLVERS = ("lbfgs", "newton-cholesky")


def fit_sklearn(X, y, C, tol, solver="lbfgs"):
    model = LogisticRegression(solver=solver, C=C, tol=tol, max_iter=10000)
    return model.fit(X, y)


def fit_ours(X, y_encoded, C, tol):
    inner = InnerObjective(X, y_encoded, BinaryLogisticLoss(), L2Penalty.scalar())
    lam = np.array([-math.log(C)])
    return minimize_lbfgs(
        lambda w: inner.value_and_grad(w, lam),
        inner.model.zeros(),
        tol=tol,
        gtol_scale=1.0,
        max_iter=10000,
    )


def compare(X, y, C, sk_tol, repeat):
    y_encoded = BinaryLogisticLoss().encode(np, y, np.unique(y), X.dtype)
    inner = InnerObjective(X, y_encoded, BinaryLogisticLoss(), L2Penalty.scalar())
    lam = np.array([-math.log(C)])
    model, sk_seconds = best_time(lambda: fit_sklearn(X, y, C, sk_tol), repeat)
    w_sklearn = np.concatenate([model.coef_.ravel(), model.intercept_])
    sk_grad = float(np.linalg.norm(inner.value_and_grad(w_sklearn, lam)[1]))
    ours, our_seconds = best_time(lambda: fit_ours(X, y_encoded, C, sk_grad), repeat)
    return {
        "C": C,
        "sk_tol": sk_tol,
        "sk_grad": sk_grad,
        "our_grad": ours.grad_norm,
        "coef_diff": float(
            np.linalg.norm(ours.x - w_sklearn) / np.linalg.norm(w_sklearn)
        ),
        "sk_iter": int(model.n_iter_[0]),
        "our_iter": ours.n_iter,
        "sk_s": sk_seconds,
        "our_s": our_seconds,
        "ratio": our_seconds / sk_seconds,
    }


# -- multinomial --------------------------------------------------------------
def multinomial_inner(X, y):
    """``InnerObjective`` of the 10-class problem, one-hot targets."""
    loss = MultinomialLogisticLoss()
    classes = np.unique(y)
    y_encoded = loss.encode(np, y, classes, X.dtype)
    return InnerObjective(
        X, y_encoded, loss, L2Penalty.scalar(), n_outputs=loss.n_outputs(classes.size)
    )


def fit_ours_multinomial(X, y, C, target, solver):
    """Our ``solver`` from zero until ``||grad G|| <= target``."""
    inner = multinomial_inner(X, y)
    lam = np.array([-math.log(C)])
    w0 = inner.model.zeros()
    if solver == "lbfgs":
        return minimize_lbfgs(
            lambda w: inner.value_and_grad(w, lam),
            w0,
            tol=target,
            gtol_scale=1.0,
            max_iter=10000,
        )
    grad0_norm = float(np.linalg.norm(inner.value_and_grad(w0, lam)[1]))
    return minimize_newton_cg(
        lambda w: inner.value_and_grad(w, lam),
        lambda w: inner.hessp(w, lam),
        w0,
        tol=target / grad0_norm,
        gtol_scale=grad0_norm,
        max_iter=10000,
    )


def sklearn_params(model):
    """scikit-learn's ``coef_`` (K, p) and ``intercept_`` (K,) as our flat ``w``."""
    return np.concatenate([model.coef_.T.ravel(), model.intercept_])


def compare_multinomial(X, y, C, sk_solvers, sk_tols, repeat):
    """Rows of one C: for each scikit-learn solver and tol, it and ours matched."""
    inner = multinomial_inner(X, y)
    lam = np.array([-math.log(C)])
    reference = minimize_newton_cg(
        lambda w: inner.value_and_grad(w, lam),
        lambda w: inner.hessp(w, lam),
        inner.model.zeros(),
        tol=1e-10,
        max_iter=10000,
    )
    w_ref = reference.x

    def coef_diff(w):
        return float(np.linalg.norm(w - w_ref) / np.linalg.norm(w_ref))

    rows = []
    for sk_solver in sk_solvers:
        for sk_tol in sk_tols:
            model, sk_seconds = best_time(
                partial(fit_sklearn, X, y, C, sk_tol, sk_solver), repeat
            )
            w_sklearn = sklearn_params(model)
            target = float(np.linalg.norm(inner.value_and_grad(w_sklearn, lam)[1]))
            label = f"{sk_solver} {sk_tol:.0e}"
            rows.append(
                {
                    "C": C,
                    "target": label,
                    "solver": f"sklearn {sk_solver}",
                    "grad": target,
                    "coef_diff": coef_diff(w_sklearn),
                    "n_iter": int(model.n_iter_[0]),
                    "seconds": sk_seconds,
                }
            )
            for solver in ("lbfgs", "newton_cg"):
                ours, seconds = best_time(
                    partial(fit_ours_multinomial, X, y, C, target, solver), repeat
                )
                rows.append(
                    {
                        "target": label,
                        "solver": f"ours {solver}",
                        "grad": ours.grad_norm,
                        "coef_diff": coef_diff(ours.x),
                        "n_iter": ours.n_iter,
                        "n_fun": ours.n_fun,
                        "seconds": seconds,
                        "ratio": seconds / sk_seconds,
                    }
                )
    return rows, reference.grad_norm


def load_digits_standardized():
    X, y = load_digits(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def run_multinomial(name, X, y, Cs, sk_solvers, sk_tols, repeat):
    X = np.ascontiguousarray(X, dtype=np.float64)
    rows, reference_norms = [], []
    for C in Cs:
        rows_C, reference_norm = compare_multinomial(
            X, y, C, sk_solvers, sk_tols, repeat
        )
        rows += rows_C
        reference_norms.append(f"{reference_norm:.0e}")
    print_table(
        rows,
        MULTINOMIAL_COLUMNS,
        title=(
            f"{name}, {X.shape[0]} x {X.shape[1]}, {np.unique(y).size} classes, "
            f"best of {repeat}; reference |grad G| {', '.join(reference_norms)}"
        ),
    )


def run_binary(args):
    X, y = load_fashion_mnist_binary(n_samples=3000 if args.quick else None)
    X = np.ascontiguousarray(X, dtype=np.float64)
    Cs = [1e-2] if args.quick else [1e-3, 1e-2, 1e-1]
    tols = [1e-4] if args.quick else [1e-4, 1e-6]
    repeat = args.repeat or (1 if args.quick else 3)
    rows = [compare(X, y, C, tol, repeat) for C in Cs for tol in tols]
    print_table(
        rows,
        COLUMNS,
        title=f"Fashion-MNIST 0 vs 6, {X.shape[0]} x {X.shape[1]}, best of {repeat}",
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run")
    parser.add_argument(
        "--datasets",
        nargs="+",
        choices=["binary", "digits", "fashion"],
        default=["binary", "digits", "fashion"],
        help="tables to print (default: all three)",
    )
    parser.add_argument(
        "--max-rows",
        type=int,
        default=None,
        help="Fashion-MNIST 10-class rows (default 5000, 1000 with --quick)",
    )
    parser.add_argument(
        "--pool", action="store_true", help="Fashion-MNIST 10-class: 2 x 2 pooling"
    )
    parser.add_argument(
        "--Cs", type=float, nargs="+", default=None, help="multinomial values of C"
    )
    parser.add_argument(
        "--sklearn-solvers",
        nargs="+",
        choices=SKLEARN_SOLVERS,
        default=list(SKLEARN_SOLVERS),
        help="multinomial: the scikit-learn fits to match (default: both)",
    )
    parser.add_argument(
        "--repeat", type=int, default=None, help="timings (default 3, 1 with --quick)"
    )
    parser.add_argument(
        "--blas-threads", type=int, default=None, help="BLAS threads (default: all)"
    )
    args = parser.parse_args(argv)
    limits = (
        threadpool_limits(args.blas_threads, user_api="blas")
        if args.blas_threads
        else contextlib.nullcontext()
    )
    repeat = args.repeat or (1 if args.quick else 3)
    sk_tols = [1e-4] if args.quick else [1e-4, 1e-6]
    with limits:
        if "binary" in args.datasets:
            run_binary(args)
        if "digits" in args.datasets:
            X, y = load_digits_standardized()
            Cs = args.Cs or ([1.0] if args.quick else [0.1, 1.0, 10.0])
            run_multinomial("digits", X, y, Cs, args.sklearn_solvers, sk_tols, repeat)
        if "fashion" in args.datasets:
            max_rows = args.max_rows or (1000 if args.quick else 5000)
            X, y, _, _ = load_fashion_split(
                n_samples=max_rows, stratified=True, pool=args.pool
            )
            Cs = args.Cs or ([1e-1] if args.quick else [1e-2, 1e-1, 1.0])
            pooled = ", 2 x 2 pooled" if args.pool else ""
            run_multinomial(
                f"Fashion-MNIST 10 classes{pooled}",
                X,
                y,
                Cs,
                args.sklearn_solvers,
                sk_tols,
                repeat,
            )


if __name__ == "__main__":
    main()
