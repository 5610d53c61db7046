"""Many penalties on held-out data: one C vs one C per feature vs one C per group.

Run ``python benchmarks/many_penalties.py`` (``--splits 2 --max-rows 1000`` for
a short run, ``--datasets synthetic digits`` to choose; BLAS runs on
``--threads`` threads, one by default). For each data set and
each of ``--splits`` random stratified 70/30 splits, every method is tuned by
5-fold CV on the 70% (standardized on it, except the ``scaled`` variant) and
scored on the 30%: log-loss, accuracy, wall time. Methods:

- ``one C``: ``HOAGLogisticRegression()``;
- ``per-feature`` / ``grouped``: ``penalty_groups="features"`` / group labels,
  under the default vector search (scalar search, then a descent on a CV
  built from half ``A`` of each validation fold, stopped and checked on the
  other halves ``B``, which no model of the descent trains on);
- ``per-feature hyperreg``: the other candidate, the same descent plus
  ``(mu / 2) ||lambda - lambda_scalar||^2``, ``mu`` the curvature of the
  scalar CV curve, under the same check;
- ``per-feature old``: the former search (bracket along the diagonal, then
  HOAG on every coordinate of the whole CV loss);
- ``elastic-net``: ``LogisticRegressionCV(penalty="elasticnet",
  l1_ratios=[0.5, 0.9], solver="saga", Cs=--enet-cs)``, the peer a user would
  pick to drop irrelevant features.

The table prints the means over splits and, for log-loss, the change relative
to ``one C`` (negative is better) and its worst split; ``gain_`` is the mean
``penalty_gain_`` and ``kept`` the number of splits where the many penalties
passed the held-out check. Groups: synthetic, 20 blocks of 10
consecutive columns; digits and Fashion-MNIST, 2x2 / 4x4 pixel blocks;
breast_cancer, the 10 measurements (mean, error, worst of each together).
"""

import argparse
import sys
import time
import warnings

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits, make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegressionCV
from sklearn.metrics import accuracy_score, log_loss
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

import skbilevel.search._vector as vector
from skbilevel import HOAGLogisticRegression


def _blocks(side, block):
    """Group label of each pixel of a ``side x side`` image in ``block`` blocks."""
    rows, cols = np.divmod(np.arange(side * side), side)
    return (rows // block) * (side // block) + cols // block


def load(name, max_rows, rng):
    """``(X, y, groups, standardize)`` of a data set, rows subsampled."""
    if name in ("synthetic", "scaled"):
        X, y = make_classification(
            n_samples=2000,
            n_features=200,
            n_informative=10,
            n_redundant=10,
            flip_y=0.05,
            random_state=0,
        )
        groups = np.arange(200) // 10
        if name == "scaled":
            # very different scales, left unstandardized: a single C penalizes
            # the small-scale features far more than the large-scale ones
            X = X * 10.0 ** np.random.RandomState(1).uniform(-1.5, 1.5, 200)
    elif name == "digits":
        X, y = load_digits(return_X_y=True)
        groups = _blocks(8, 2)
    elif name == "breast_cancer":
        X, y = load_breast_cancer(return_X_y=True)
        groups = np.arange(30) % 10
    elif name == "fashion":
        sys.path.insert(0, "benchmarks")
        from _datasets import load_fashion_mnist

        X, y = load_fashion_mnist(subset="train", classes=(0, 6))
        groups = _blocks(28, 4)
    else:
        raise ValueError(name)
    if max_rows and X.shape[0] > max_rows:
        keep = rng.choice(X.shape[0], max_rows, replace=False)
        X, y = X[keep], y[keep]
    return X, y, groups, name != "scaled"


def methods(groups, cv, enet_cs):
    def hoag(penalty_groups=None, strategy="holdout"):
        def fit(X, y):
            vector.DEFAULT_STRATEGY = strategy
            try:
                return HOAGLogisticRegression(penalty_groups=penalty_groups, cv=cv).fit(
                    X, y
                )
            finally:
                vector.DEFAULT_STRATEGY = "holdout"

        return fit

    def enet(X, y):
        return LogisticRegressionCV(
            Cs=enet_cs,
            l1_ratios=[0.5, 0.9],
            penalty="elasticnet",
            solver="saga",
            cv=cv,
            scoring="neg_log_loss",
            max_iter=1000,
        ).fit(X, y)

    return {
        "one C": hoag(),
        "per-feature": hoag("features"),
        "grouped": hoag(groups),
        "per-feature hyperreg": hoag("features", "hyperreg"),
        "per-feature old": hoag("features", "cv-loss"),
        "elastic-net": enet,
    }


def run(name, args):
    rng = np.random.RandomState(0)
    X, y, groups, standardize = load(name, args.max_rows, rng)
    scores = {}
    for split in range(args.splits):
        X_train, X_test, y_train, y_test = train_test_split(
            X, y, test_size=0.3, stratify=y, random_state=split
        )
        if standardize:
            scaler = StandardScaler().fit(X_train)
            X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
        cv = StratifiedKFold(args.folds, shuffle=True, random_state=split)
        for method, fit in methods(groups, cv, args.enet_cs).items():
            if method not in args.methods:
                continue
            start = time.perf_counter()
            model = fit(X_train, y_train)
            elapsed = time.perf_counter() - start
            proba = model.predict_proba(X_test)
            gain = getattr(model, "penalty_gain_", None)
            scores.setdefault(method, []).append(
                (
                    log_loss(y_test, proba, labels=model.classes_),
                    accuracy_score(y_test, model.predict(X_test)),
                    elapsed,
                    np.nan if gain is None else gain,
                )
            )
            print(
                f"  {name} split {split} {method:22s} log-loss "
                f"{scores[method][-1][0]:.4f} ({elapsed:.1f}s)",
                file=sys.stderr,
                flush=True,
            )
    return X.shape, scores


def print_table(name, shape, scores):
    base = np.mean([s[0] for s in scores["one C"]]) if "one C" in scores else None
    base_time = np.mean([s[2] for s in scores["one C"]]) if base else None
    print(f"\n{name}: {shape[0]} rows x {shape[1]} features")
    print(
        f"{'method':22s} {'log-loss':>9s} {'vs one C':>9s} {'worst':>7s} "
        f"{'accuracy':>9s} {'time':>7s} {'x one C':>8s} {'gain_':>7s} {'kept':>5s}"
    )
    for method, rows in scores.items():
        rows = np.array(rows)
        loss, acc, elapsed, gain = rows.mean(axis=0)
        if base is not None:
            per_split = np.array([s[0] for s in scores["one C"]])
            relative = f"{100 * (loss / base - 1):+8.2f}%"
            worst = f"{100 * np.max(rows[:, 0] / per_split - 1):+6.1f}%"
            ratio = f"{elapsed / base_time:7.1f}x"
        else:
            relative = worst = ratio = "-"
        kept = "-" if np.isnan(gain) else f"{np.sum(rows[:, 3] > 0):.0f}/{len(rows)}"
        gain = "-" if np.isnan(gain) else f"{100 * gain:6.2f}%"
        print(
            f"{method:22s} {loss:9.4f} {relative:>9s} {worst:>7s} {acc:9.4f} "
            f"{elapsed:6.1f}s {ratio:>8s} {gain:>7s} {kept:>5s}",
            flush=True,
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--datasets",
        nargs="+",
        default=["synthetic", "scaled", "digits", "breast_cancer", "fashion"],
    )
    parser.add_argument("--methods", nargs="+", default=None)
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--max-rows", type=int, default=None)
    parser.add_argument("--enet-cs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads")
    args = parser.parse_args()
    if args.methods is None:
        args.methods = list(methods(None, None, 1))
    warnings.simplefilter("ignore", ConvergenceWarning)
    warnings.simplefilter("ignore", FutureWarning)
    print(
        f"{args.splits} random 70/30 splits, {args.folds}-fold CV on the 70%"
        + (f", at most {args.max_rows} rows" if args.max_rows else "")
    )
    with threadpool_limits(args.threads):
        for name in args.datasets:
            shape, scores = run(name, args)
            print_table(name, shape, scores)


if __name__ == "__main__":
    main()
