"""Peak memory of a search against the data's own footprint.

Run ``python benchmarks/memory.py`` (``--quick`` for 10000 x 5000). On the
sparse problem of :func:`make_sparse_classification` (50000 x 20000 CSR,
density 0.002, about 24 MB of data, indices and row pointers), with the
same 5 stratified folds and one BLAS thread, the peak of the memory
allocated by Python and NumPy during ``fit`` (``tracemalloc``: what the
call allocates on top of what exists before it, the input included in the
"data" column, not in the peaks) of

- ``HOAGLogisticRegression(cv=folds)``;
- ``BilevelSearchCV(LogisticRegression(), {"C": (1e-4, 1e4)}, cv=folds)``;
- ``LogisticRegressionCV(Cs=20, cv=folds)``;
- ``GridSearchCV(LogisticRegression(), 20 C, cv=folds)``;
- the oracle (``cross_validate`` at the chosen C plus one refit).

Wall times are not measured here (``tracemalloc`` slows allocations); see
``run.py`` and ``search_profile.py``.
"""

import argparse
import os
import sys
import tracemalloc
import warnings

import numpy as np
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_validate
from threadpoolctl import threadpool_limits

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(_HERE), _HERE]
from _datasets import make_sparse_classification  # noqa: E402

from skbilevel import BilevelSearchCV, HOAGLogisticRegression  # noqa: E402


def _peak(call):
    """Peak bytes allocated during ``call()`` above what existed before it."""
    tracemalloc.start()
    try:
        result = call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    n, p = (10000, 5000) if args.quick else (50000, 20000)
    X, y = make_sparse_classification(n, p, random_state=0)
    data = X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
    folds = list(StratifiedKFold(5).split(X, y))
    Cs = np.logspace(-4, 4, 20)
    with threadpool_limits(1):
        hoag_peak, hoag = _peak(lambda: HOAGLogisticRegression(cv=folds).fit(X, y))
        C = hoag.C_

        def oracle():
            cross_validate(LogisticRegression(C=C), X, y, cv=folds)
            return LogisticRegression(C=C).fit(X, y)

        rows = [("HOAGLogisticRegression", hoag_peak)]
        for name, call in [
            (
                "BilevelSearchCV",
                lambda: BilevelSearchCV(
                    LogisticRegression(), {"C": (1e-4, 1e4)}, cv=folds
                ).fit(X, y),
            ),
            (
                "LogisticRegressionCV (20)",
                lambda: LogisticRegressionCV(Cs=Cs, cv=folds).fit(X, y),
            ),
            (
                "GridSearchCV (20)",
                lambda: GridSearchCV(LogisticRegression(), {"C": Cs}, cv=folds).fit(
                    X, y
                ),
            ),
            ("oracle", oracle),
        ]:
            rows.append((name, _peak(call)[0]))
    print(f"sparse {n} x {p} CSR, data {data / 1e6:.1f} MB; peak allocated during fit")
    print(f"{'method':>26s}  {'peak MB':>8s}  {'x data':>6s}")
    for name, peak in rows:
        print(f"{name:>26s}  {peak / 1e6:8.1f}  {peak / data:6.2f}")


if __name__ == "__main__":
    main()
