"""GPU (CuPy) against CPU (NumPy / SciPy): the same HOAGLogisticRegression fit.

Run ``python benchmarks/gpu_speedup.py`` on a machine where CuPy sees a CUDA
device (``--quick`` for smaller problems). Two problems, each fitted twice in
one run with the same code and parameters, ``device="cpu"`` then
``device="cuda"`` (the data moved to the GPU once, inside ``fit``):

- dense: ``n_samples x 1000`` float32 Gaussian features, logistic labels
  (1,000,000 samples by default, 100,000 with ``--quick``);
- sparse: ``make_sparse_classification`` of ``benchmarks/_datasets.py`` (CSR,
  10^5 features, density 1e-4).

The table gives wall times, the GPU speedup, and the chosen C on each device (it
must agree). Without CuPy or a device, the script says so and measures nothing.
"""

import argparse
import time
import warnings

import numpy as np
from _datasets import make_sparse_classification
from sklearn.exceptions import ConvergenceWarning

from skbilevel import HOAGLogisticRegression
from skbilevel.utils._device import check_device_available


def dense_problem(n_samples, n_features=1000, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_samples, n_features), dtype=np.float32)
    coef = rng.standard_normal(n_features).astype(np.float32) / np.sqrt(n_features)
    logits = 3 * (X @ coef)
    y = (rng.random(n_samples) < 1 / (1 + np.exp(-logits))).astype(int)
    return X, y


def fit_time(X, y, device):
    model = HOAGLogisticRegression(device=device, cv=5)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    return time.perf_counter() - start, model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    try:
        check_device_available()
    except ValueError as exc:
        print(f"No GPU measurement: {exc}")
        return
    n_dense = 100_000 if args.quick else 1_000_000
    n_sparse = (100_000, 20_000) if args.quick else (1_000_000, 100_000)
    problems = {
        f"dense {n_dense} x 1000 float32": dense_problem(n_dense),
        f"sparse {n_sparse[0]} x {n_sparse[1]} CSR": make_sparse_classification(
            *n_sparse, density=1e-4 if not args.quick else 5e-4, random_state=0
        ),
    }
    print(
        f"{'problem':36s} {'CPU s':>8s} {'GPU s':>8s} {'speedup':>8s} "
        f"{'C cpu':>9s} {'C gpu':>9s}"
    )
    for name, (X, y) in problems.items():
        fit_time(X[:2000], y[:2000], "cuda")  # CUDA context and kernel compilation
        cpu_seconds, cpu = fit_time(X, y, "cpu")
        gpu_seconds, gpu = fit_time(X, y, "cuda")
        print(
            f"{name:36s} {cpu_seconds:8.2f} {gpu_seconds:8.2f} "
            f"{cpu_seconds / gpu_seconds:8.1f} {cpu.C_:9.4g} {gpu.C_:9.4g}"
        )


if __name__ == "__main__":
    main()
