"""Where the computation runs: follow the input, or move NumPy data to a GPU once.

The engine works in the namespace of its input. Estimators take ``device``:
``None`` follows the input (CuPy in, CuPy computation and CuPy fitted
attributes, as scikit-learn's array-API convention has it), ``"cpu"`` brings
any input to NumPy, and ``"cuda"`` moves NumPy / SciPy data to CuPy once at the
start of ``fit`` and returns NumPy fitted attributes.
"""

import array_api_compat
import numpy as np
import scipy.sparse as sp

from ._array_api import get_namespace, is_sparse, to_numpy

__all__ = [
    "DEVICES",
    "is_host_input",
    "check_device_available",
    "to_cuda",
    "validate_array_api_X",
    "to_host",
]

DEVICES = ("cpu", "cuda")


def is_host_input(X):
    """True for NumPy arrays, SciPy sparse matrices and anything NumPy converts
    (lists, pandas DataFrames); False for CuPy, torch and other array-API arrays."""
    if isinstance(X, (np.ndarray, np.generic)) or sp.issparse(X):
        return True
    if is_sparse(X):  # cupyx.scipy.sparse
        return False
    # array_api_compat also knows the arrays that have no __array_namespace__
    # (torch tensors, CuPy before 13).
    return not array_api_compat.is_array_api_obj(X)


def check_device_available():
    """Import CuPy and check that it sees a CUDA device; clear errors otherwise."""
    try:
        import cupy
    except ImportError:
        raise ValueError(
            "device='cuda' needs CuPy, which is not installed. Install it with "
            "pip install 'skbilevel[gpu]' (or the cupy wheel matching your CUDA "
            "version), or use device='cpu'."
        ) from None
    try:
        n_devices = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDA driver missing or broken
        raise ValueError(
            f"device='cuda' was requested but CuPy cannot reach a CUDA device ({exc}). "
            "Use device='cpu'."
        ) from None
    if n_devices < 1:
        raise ValueError(
            "device='cuda' was requested but no CUDA device is visible. "
            "Use device='cpu'."
        )
    return cupy


def to_cuda(X, dtype=None):
    """Copy a NumPy array or SciPy sparse matrix to the GPU (CuPy / cupyx).

    ``dtype``: converted on the GPU after the copy (None keeps the host's), so
    that float32 data travel as float32.
    """
    if X is None:
        return None
    cupy = check_device_available()
    if sp.issparse(X):
        import cupyx.scipy.sparse as cusp

        moved = cusp.csr_matrix(sp.csr_matrix(X))
    else:
        moved = cupy.asarray(X)
    if dtype is not None and moved.dtype != dtype:
        moved = moved.astype(dtype)
    return moved


def to_host(X):
    """NumPy copy of a dense array of any namespace; SciPy copy of cupyx sparse."""
    if X is None or isinstance(X, np.ndarray) or sp.issparse(X):
        return X
    if is_sparse(X):
        return X.get()
    return to_numpy(X)


def validate_array_api_X(X, *, ensure_min_samples=2):
    """Check a 2-d non-NumPy array: floating dtype, finite, enough samples."""
    xp = get_namespace(X)
    if X.ndim != 2:
        raise ValueError(f"Expected a 2D array, got an array of shape {X.shape}.")
    if X.shape[0] < ensure_min_samples:
        raise ValueError(
            f"Found array with {X.shape[0]} sample(s) (shape={X.shape}) while a "
            f"minimum of {ensure_min_samples} is required."
        )
    data = X.data if is_sparse(X) else X
    if not xp.isdtype(data.dtype, "real floating"):
        X = X.astype(xp.float64) if is_sparse(X) else xp.astype(X, xp.float64)
        data = X.data if is_sparse(X) else X
    if not bool(xp.all(xp.isfinite(data))):
        raise ValueError("Input X contains NaN or infinity.")
    return X
