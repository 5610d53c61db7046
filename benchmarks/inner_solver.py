"""Our inner L-BFGS against scikit-learn's lbfgs ``LogisticRegression``.

Run ``python benchmarks/inner_solver.py`` from the repository root (``--quick``
for a short run on 3000 samples).

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
"""

import argparse
import math

import numpy as np
from _common import best_time, load_fashion_mnist_binary, print_table
from sklearn.linear_model import LogisticRegression

from skbilevel.objectives import BinaryLogisticLoss, InnerObjective, L2Penalty
from skbilevel.solvers import minimize_lbfgs

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


def fit_sklearn(X, y, C, tol):
    model = LogisticRegression(solver="lbfgs", C=C, tol=tol, max_iter=10000)
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run")
    args = parser.parse_args(argv)
    X, y = load_fashion_mnist_binary(n_samples=3000 if args.quick else None)
    X = np.ascontiguousarray(X, dtype=np.float64)
    Cs = [1e-2] if args.quick else [1e-3, 1e-2, 1e-1]
    tols = [1e-4] if args.quick else [1e-4, 1e-6]
    repeat = 1 if args.quick else 3
    rows = [compare(X, y, C, tol, repeat) for C in Cs for tol in tols]
    print_table(
        rows,
        COLUMNS,
        title=f"Fashion-MNIST 0 vs 6, {X.shape[0]} x {X.shape[1]}, best of {repeat}",
    )


if __name__ == "__main__":
    main()
