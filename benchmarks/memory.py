"""Peak memory of a search against the data's own footprint, and its wall time.

Run ``python benchmarks/memory.py`` (``--quick`` for 10000 x 5000, ``--repeat
N`` for the median of N timed runs). On the sparse problem of
:func:`make_sparse_classification` (50000 x 20000 CSR, density 0.002, about
24 MB of data, indices and row pointers), with the same 5 stratified folds
and one BLAS thread, for

- ``HOAGLogisticRegression(cv=folds)``;
- ``BilevelSearchCV(LogisticRegression(), {"C": (1e-4, 1e4)}, cv=folds)``;
- both again with every fold's rows copied (``fold copies``: the storage
  ``materialize_folds`` chooses for small data, forced here);
- ``LogisticRegressionCV(Cs=20, cv=folds)``;
- ``GridSearchCV(LogisticRegression(), 20 C, cv=folds)``;
- the oracle (``cross_validate`` at the chosen C plus one refit),

the table gives the peak of the memory allocated by Python and NumPy during
``fit`` (``tracemalloc``: what the call allocates on top of what exists
before it; the input counts in the "data" line, not in the peaks), that peak
over the data's size, and the wall time of a separate, untraced fit
(``tracemalloc`` slows allocations).
"""

import argparse
import contextlib
import os
import sys
import tracemalloc
import warnings

import numpy as np
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from threadpoolctl import threadpool_limits

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(_HERE), _HERE]
from _common import median_time, oracle_fit  # noqa: E402
from _datasets import make_sparse_classification  # noqa: E402

import skbilevel.search._folds as folds_module  # noqa: E402
from skbilevel import BilevelSearchCV, HOAGLogisticRegression  # noqa: E402
from skbilevel.utils._array_api import nbytes  # noqa: E402


def _peak(call):
    """Peak bytes allocated during ``call()`` above what existed before it."""
    tracemalloc.start()
    try:
        result = call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, result


def _seconds(call, repeat):
    """Median wall time of ``repeat`` untraced calls."""
    return median_time(call, repeat)[1]


@contextlib.contextmanager
def _fold_copies():
    """Every fold's rows copied, whatever their size (the small-data storage)."""
    threshold = folds_module._VIEW_BYTES_PER_SLOWDOWN
    folds_module._VIEW_BYTES_PER_SLOWDOWN = float("inf")
    try:
        yield
    finally:
        folds_module._VIEW_BYTES_PER_SLOWDOWN = threshold


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    n, p = (10000, 5000) if args.quick else (50000, 20000)
    X, y = make_sparse_classification(n, p, random_state=0)
    data = nbytes(X)
    folds = list(StratifiedKFold(5).split(X, y))
    Cs = np.logspace(-4, 4, 20)

    def hoag():
        return HOAGLogisticRegression(cv=folds).fit(X, y)

    def bilevel():
        search = BilevelSearchCV(LogisticRegression(), {"C": (1e-4, 1e4)}, cv=folds)
        return search.fit(X, y)

    rows = []
    with threadpool_limits(1):
        hoag_peak, model = _peak(hoag)
        C = model.C_

        def oracle():
            return oracle_fit(X, y, folds, C)

        methods = [
            ("HOAGLogisticRegression", hoag, None),
            ("BilevelSearchCV", bilevel, None),
            ("HOAG, fold copies", hoag, _fold_copies),
            ("BilevelSearchCV, fold copies", bilevel, _fold_copies),
            (
                "LogisticRegressionCV (20)",
                lambda: LogisticRegressionCV(Cs=Cs, cv=folds).fit(X, y),
                None,
            ),
            (
                "GridSearchCV (20)",
                lambda: GridSearchCV(LogisticRegression(), {"C": Cs}, cv=folds).fit(
                    X, y
                ),
                None,
            ),
            ("oracle", oracle, None),
        ]
        for name, call, setting in methods:
            with setting() if setting is not None else contextlib.nullcontext():
                peak = hoag_peak if call is hoag and setting is None else None
                if peak is None:
                    peak = _peak(call)[0]
                rows.append((name, peak, _seconds(call, args.repeat)))
    print(f"sparse {n} x {p} CSR, 5 folds, data {data / 1e6:.1f} MB")
    print(f"{'method':>29s}  {'peak MB':>8s}  {'x data':>6s}  {'wall s':>7s}")
    for name, peak, seconds in rows:
        print(f"{name:>29s}  {peak / 1e6:8.1f}  {peak / data:6.2f}  {seconds:7.2f}")


if __name__ == "__main__":
    main()
