"""Accuracy and cost of each hypergradient linear solver, against ``exact``.

Run ``python benchmarks/hypergradient_accuracy.py`` from the repository root
(``--quick`` for a short run: one C per data set, 3000 Fashion-MNIST samples).

Setting. Binary logistic regression with one penalty ``1 / C`` (``lambda =
-log C``) on breast_cancer (569 x 30) and Fashion-MNIST T-shirt vs Shirt
(classes 0 and 6 of the train file, 12000 x 784), both standardized. One
stratified 80/20 train/validation split: the K-fold hypergradient is the mean of
K per-fold hypergradients, each from its own linear system, so one fold shows
what every fold does. The values of C bracket each data set's optimum (C ~ 1 for
breast_cancer, C ~ 2e-3 for Fashion-MNIST): strong, near-optimal and weak
penalties (the weak end has the worst-conditioned Hessian).

Inner solves. Our L-BFGS (10 pairs) from 0, stopped at a relative gradient norm
``||grad G(w)|| <= eps ||grad G(0)||`` (the scale CrossValidatedProblem uses),
with the linear solvers run at the same tolerance ``eps``, as HOAG does:

- ``eps = 1e-4``: HOAG's first (loosest) tolerance;
- ``eps = 1e-10``: a tight solve (``tight``; L-BFGS's ``ftol`` off).

``shine-opa`` gets its own inner solve with outer-problem-aware secant probes
along ``grad F`` (one extra inner gradient per iteration, counted in its
``n_grad``); every other solver shares one inner solve and its memory. Solvers
are cold-started (no warm-start state from a previous outer step).

Columns. ``rel.err``: ``||g - g_exact|| / ||g_exact||`` with ``g_exact`` the
``exact`` (dense eigendecomposition) hypergradient at the same inner point: the
error of the linear solve alone. ``vs truth``: the same against the exact
hypergradient at the tight inner solution: the error an outer step sees at that
inner tolerance. ``n_hvp``, ``n_grad``: Hessian-vector products and inner
gradients the solver reported. ``ms``: best-of-3 wall time of the whole
hypergradient (linear solve, outer gradient, cross product), inner solve
excluded; ``exact`` is timed once (it is the reference, and the costliest).
"""

import argparse
import math

import numpy as np
from _common import (
    best_time,
    load_breast_cancer_standardized,
    load_fashion_mnist_binary,
    print_table,
)
from sklearn.model_selection import train_test_split

from skbilevel.hypergrad import LINEAR_SOLVERS, get_linear_solver
from skbilevel.hypergrad.implicit import hypergradient
from skbilevel.objectives import (
    BinaryLogisticLoss,
    InnerObjective,
    L2Penalty,
    ValidationLoss,
)
from skbilevel.solvers import minimize_lbfgs

HOAG_TOL = 1e-4
TIGHT_TOL = 1e-10
COLUMNS = [
    ("C", "C", ".0e"),
    ("inner", "inner tol", ""),
    ("inner_iter", "inner it", "d"),
    ("solver", "solver", ""),
    ("error", "rel.err", ".1e"),
    ("truth_error", "vs truth", ".1e"),
    ("n_hvp", "n_hvp", "d"),
    ("n_grad", "n_grad", "d"),
    ("ms", "ms", ".2f"),
]


def one_fold(X, y):
    """Inner and outer objectives of a stratified 80/20 split."""
    loss = BinaryLogisticLoss()
    y_encoded = loss.encode(np, y, np.unique(y), X.dtype)
    train, validation = train_test_split(
        np.arange(y.size), test_size=0.2, stratify=y, random_state=0
    )
    inner = InnerObjective(X[train], y_encoded[train], loss, L2Penalty.scalar())
    outer = ValidationLoss(X[validation], y_encoded[validation], loss)
    return inner, outer


def solve_inner(inner, outer, lam, tol, *, opa=False):
    zero = inner.model.zeros()
    scale = float(np.linalg.norm(inner.value_and_grad(zero, lam)[1]))
    return minimize_lbfgs(
        lambda w: inner.value_and_grad(w, lam),
        zero,
        tol=tol,
        gtol_scale=scale,
        ftol=0.0 if tol < 1e-8 else None,
        max_iter=20000,
        secant_direction=(lambda w: outer.value_and_grad(w)[1]) if opa else None,
    )


def relative_error(grad, reference):
    return float(np.linalg.norm(grad - reference) / np.linalg.norm(reference))


def timed_hypergradient(inner, outer, lam, result, method, tol, repeat):
    """``(FoldHypergradient, best wall time)`` of ``method`` at ``result.x``."""
    solver = get_linear_solver(method)
    return best_time(
        lambda: hypergradient(
            inner, outer, result.x, lam, solver, tol=tol, memory=result.memory
        ),
        repeat,
    )


def solver_rows(inner, outer, lam, tol, solved, repeat):
    """One row per linear solver at the inner solution ``solved``.

    Returns the rows and the exact hypergradient at ``solved.x``. The dense
    ``exact`` solve dominates the run time on Fashion-MNIST: it is timed once
    and its result is the reference of the other solvers.
    """
    solved_opa = solve_inner(inner, outer, lam, tol, opa=True)
    exact, exact_seconds = timed_hypergradient(
        inner, outer, lam, solved, "exact", tol, 1
    )
    opa_reference = hypergradient(
        inner, outer, solved_opa.x, lam, get_linear_solver("exact")
    ).grad
    rows = []
    for method in LINEAR_SOLVERS:
        opa = method == "shine-opa"
        result = solved_opa if opa else solved
        if method == "exact":
            fold, seconds = exact, exact_seconds
        else:
            fold, seconds = timed_hypergradient(
                inner, outer, lam, result, method, tol, repeat
            )
        rows.append(
            {
                "inner": "tight" if tol == TIGHT_TOL else f"{tol:.0e}",
                "inner_iter": result.n_iter,
                "solver": method,
                "grad": fold.grad,
                "error": relative_error(
                    fold.grad, opa_reference if opa else exact.grad
                ),
                "n_hvp": fold.solve.n_hvp,
                # OPA probes: one inner gradient after each inner iteration.
                "n_grad": fold.solve.n_grad + (result.n_iter if opa else 0),
                "ms": 1e3 * seconds,
            }
        )
    return rows, exact.grad


def run_dataset(name, X, y, Cs, repeat):
    inner, outer = one_fold(X, y)
    rows = []
    for C in Cs:
        lam = np.array([-math.log(C)])
        tight = solve_inner(inner, outer, lam, TIGHT_TOL)
        tight_rows, truth = solver_rows(inner, outer, lam, TIGHT_TOL, tight, repeat)
        loose = solve_inner(inner, outer, lam, HOAG_TOL)
        loose_rows, _ = solver_rows(inner, outer, lam, HOAG_TOL, loose, repeat)
        for row in loose_rows + tight_rows:
            row["truth_error"] = relative_error(row.pop("grad"), truth)
            rows.append({"C": C, **row})
    n_train = inner.model.n_samples
    print_table(
        rows,
        COLUMNS,
        title=f"{name}: {n_train} train + {y.size - n_train} validation samples, "
        f"{X.shape[1]} features",
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run")
    args = parser.parse_args(argv)
    repeat = 1 if args.quick else 3
    X, y = load_breast_cancer_standardized()
    run_dataset(
        "breast_cancer", X, y, [1.0] if args.quick else [1e-2, 1.0, 1e2], repeat
    )
    X, y = load_fashion_mnist_binary(n_samples=3000 if args.quick else None)
    Cs = [1e-3] if args.quick else [1e-4, 1e-3, 1e-2]
    run_dataset("Fashion-MNIST 0 vs 6", X, y, Cs, repeat)


if __name__ == "__main__":
    main()
