"""Helpers shared by the benchmark scripts: standardized data sets, timing, tables.

Run the scripts from the repository root (``python benchmarks/<name>.py``); they
import this module as ``_common``.
"""

import time

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.preprocessing import StandardScaler

from skbilevel.datasets import load_fashion_mnist

__all__ = [
    "load_breast_cancer_standardized",
    "load_fashion_mnist_binary",
    "best_time",
    "print_table",
]


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


def best_time(function, repeat=3):
    """``(result of the last call, shortest wall time in seconds)`` over ``repeat``
    calls."""
    best = np.inf
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return result, best


def print_table(rows, columns, title=None):
    """Print ``rows`` (dicts) as an aligned text table.

    ``columns`` is a list of ``(key, header, format)``; ``format`` is a format
    spec such as ``".2e"`` or ``"d"`` (``""`` for ``str``). Missing or None
    values print as ``-``.
    """
    cells = [
        [
            "-" if row.get(key) is None else format(row[key], spec)
            for key, _, spec in columns
        ]
        for row in rows
    ]
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
