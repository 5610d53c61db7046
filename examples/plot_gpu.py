"""
Fitting on a GPU
================

The engine of skbilevel (objectives, inner L-BFGS, hypergradient solvers) is
written once against the array API, so the same search runs on a CUDA GPU with
CuPy. :class:`~skbilevel.HOAGLogisticRegression` offers two ways in:

- ``device="cuda"``: give NumPy (or SciPy sparse) data as usual; ``fit`` copies
  it to the GPU once, runs the whole search and the refit there, and returns
  NumPy fitted attributes, so the model is used like any CPU model;
- CuPy input with the default ``device=None``: the fit follows its input, and
  ``coef_``, ``intercept_``, ``decision_function`` and ``predict_proba`` are
  CuPy arrays (``predict`` returns the labels as NumPy).

This example runs anywhere. It always fits on the CPU; the GPU fits run only
where CuPy is installed (``pip install "skbilevel[gpu]"``) and sees a CUDA
device, and the script says which it did. The documentation is built without
a GPU, so the output below shows the CPU part only.

The problem is kept small so that the CPU fit takes seconds; at this size the
GPU is not expected to win (transfers and kernel launches cost more than they
save). For a real measurement, on problems large enough for a GPU to pay off,
run ``python benchmarks/gpu_speedup.py`` on a machine with a GPU.
"""

import time

import numpy as np
from sklearn.datasets import make_classification

from skbilevel import HOAGLogisticRegression

# %%
# Is there a GPU?
# ---------------
# ``fit(device="cuda")`` needs CuPy and a visible CUDA device, and raises a
# ``ValueError`` that says which is missing. The same test, made up front,
# decides which parts of this example run.


def find_cuda_device():
    """CuPy's module if it sees a CUDA device, else None; and why, in words."""
    try:
        import cupy
    except ImportError:
        return None, "CuPy is not installed"
    try:
        n_devices = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # no driver, or a broken CUDA installation
        return None, f"CuPy cannot reach a CUDA device ({exc})"
    if n_devices < 1:
        return None, "CuPy sees no CUDA device"
    name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
    if isinstance(name, bytes):
        name = name.decode()
    return cupy, f"CUDA device 0: {name}"


def _library(array):
    """'numpy' or 'cupy': the package an array comes from."""
    return type(array).__module__.split(".")[0]


cupy, gpu_status = find_cuda_device()
print(f"GPU: {gpu_status}")

# %%
# A synthetic problem
# -------------------
# A dense binary classification problem; raise ``N_SAMPLES`` and
# ``N_FEATURES`` on a GPU machine to see where the GPU starts to pay off.
N_SAMPLES, N_FEATURES = 5_000, 100
X, y = make_classification(
    n_samples=N_SAMPLES,
    n_features=N_FEATURES,
    n_informative=N_FEATURES // 4,
    random_state=0,
)
print(f"X: {X.shape[0]} x {X.shape[1]}, {X.dtype}")

# %%
# On the CPU
# ----------
# NumPy input with the default ``device=None``: the fit runs on the CPU.
start = time.perf_counter()
cpu_model = HOAGLogisticRegression(cv=5).fit(X, y)
cpu_seconds = time.perf_counter() - start
print(
    f"CPU fit: {cpu_seconds:.2f} s, C_ = {cpu_model.C_:.4g}, "
    f"cv_loss_ = {cpu_model.cv_loss_:.5f}, "
    f"{len(cpu_model.history_)} evaluations of the CV loss"
)

# %%
# On the GPU, from NumPy data: ``device="cuda"``
# ----------------------------------------------
# The data are copied to the GPU once, inside ``fit``; ``coef_`` and
# ``intercept_`` come back as NumPy arrays. The chosen ``C`` must agree with
# the CPU's up to the search's tolerances. The first GPU fit of a process also
# pays for CuPy's start-up (CUDA context, kernel compilation), which the
# second fit below does not.
if cupy is None:
    print(f"Skipped the GPU fits: {gpu_status}.")
    try:
        HOAGLogisticRegression(device="cuda").fit(X, y)
    except ValueError as exc:
        print(f"HOAGLogisticRegression(device='cuda').fit raises: {exc}")
else:
    start = time.perf_counter()
    gpu_model = HOAGLogisticRegression(cv=5, device="cuda").fit(X, y)
    gpu_seconds = time.perf_counter() - start
    print(
        f"GPU fit (device='cuda', NumPy in): {gpu_seconds:.2f} s, "
        f"C_ = {gpu_model.C_:.4g}, cv_loss_ = {gpu_model.cv_loss_:.5f}"
    )
    print(
        f"  coef_ is a {_library(gpu_model.coef_)} array; "
        f"relative difference of C_ from the CPU fit: "
        f"{abs(gpu_model.C_ - cpu_model.C_) / cpu_model.C_:.1e}"
    )
    print(
        f"  predictions agree with the CPU model on "
        f"{np.mean(gpu_model.predict(X) == cpu_model.predict(X)):.2%} of samples"
    )

# %%
# On the GPU, from CuPy data
# --------------------------
# An array already on the GPU stays there: the fitted ``coef_`` and the
# probabilities are CuPy arrays, ``predict`` gives NumPy labels (``classes_``
# is a NumPy array).
if cupy is not None:
    X_gpu = cupy.asarray(X)
    start = time.perf_counter()
    cupy_model = HOAGLogisticRegression(cv=5).fit(X_gpu, y)
    cupy.cuda.Device().synchronize()
    cupy_seconds = time.perf_counter() - start
    proba = cupy_model.predict_proba(X_gpu)
    print(f"GPU fit (CuPy in): {cupy_seconds:.2f} s, C_ = {cupy_model.C_:.4g}")
    print(
        f"  coef_: {_library(cupy_model.coef_)} array, "
        f"predict_proba: {_library(proba)} array, "
        f"predict: {_library(cupy_model.predict(X_gpu))} array"
    )
    print(
        f"Times on this machine, this problem: CPU {cpu_seconds:.2f} s, "
        f"GPU {gpu_seconds:.2f} s (first) and {cupy_seconds:.2f} s (second)"
    )
else:
    print("Skipped the CuPy-input fit: no GPU. Only the CPU fit ran.")

# %%
# What to expect
# --------------
# The GPU pays off when the inner solves dominate: many samples and features,
# dense data, several folds. :class:`~skbilevel.BilevelSearchCV` converts its
# input to NumPy (its fold models and scorers are scikit-learn objects) and
# searches on the CPU. See :ref:`gpu` in the documentation, and
# ``benchmarks/gpu_speedup.py`` for the CPU-to-GPU comparison on large dense
# and sparse problems.
