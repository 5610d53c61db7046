"""Array-API helpers: one code path for NumPy, CuPy and any array-API namespace.

The engine never calls ``numpy`` directly on data. Entry points call
:func:`get_namespace` once and pass ``xp`` down. Sparse matrices (scipy.sparse on
the CPU, cupyx.scipy.sparse on the GPU) are not array-API objects: they only
appear as the design matrix ``X`` and are used through ``X @ dense`` and
``X.T @ dense``, which both libraries implement.
"""

import array_api_compat
import numpy as np
import scipy.sparse as sp

__all__ = [
    "get_namespace",
    "is_sparse",
    "nbytes",
    "to_float",
    "to_numpy",
    "device_of",
    "same_placement",
    "describe_placement",
    "vdot",
    "norm",
]


def is_sparse(X):
    """Return True for a scipy.sparse or cupyx.scipy.sparse matrix or array."""
    if sp.issparse(X):
        return True
    module = type(X).__module__
    return module.startswith("cupyx.scipy.sparse")


def nbytes(X):
    """Bytes of a dense array or of a sparse matrix's three arrays."""
    if is_sparse(X):
        return X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
    return X.nbytes


def _dense_like(X):
    """A dense array with the namespace of the sparse matrix ``X``."""
    if sp.issparse(X):
        return np.empty(0, dtype=X.dtype)
    import cupy  # only reached for cupyx sparse input

    return cupy.empty(0, dtype=X.dtype)


_NUMPY = array_api_compat.array_namespace(np.empty(0))


def _host(a):
    """Whether ``a`` is None, an exact NumPy array or a scipy.sparse matrix."""
    return a is None or type(a) is np.ndarray or sp.issparse(a)


def get_namespace(*arrays):
    """Return the array-API namespace shared by ``arrays``.

    ``None`` entries are ignored and sparse matrices stand for the dense namespace
    of their library (NumPy for scipy.sparse, CuPy for cupyx.scipy.sparse).
    """
    # NumPy / SciPy data, the common case, without array_api_compat's
    # inspection (a few microseconds a call, tens of calls per fold set-up)
    if all(map(_host, arrays)):
        return _NUMPY
    dense = [_dense_like(a) if is_sparse(a) else a for a in arrays if a is not None]
    if not dense:
        return array_api_compat.array_namespace(np.empty(0))
    return array_api_compat.array_namespace(*dense)


def device_of(x):
    """Device of a dense or sparse array (``"cpu"`` for NumPy / scipy.sparse)."""
    if type(x) is np.ndarray or sp.issparse(x):
        return "cpu"
    if is_sparse(x):
        x = _dense_like(x)
    return array_api_compat.device(x)


def same_placement(a, b):
    """Whether two arrays (dense or sparse) share their namespace and device."""
    return get_namespace(a) == get_namespace(b) and device_of(a) == device_of(b)


def describe_placement(x):
    """``"<namespace> on <device>"`` of an array, for error messages."""
    name = get_namespace(x).__name__.removeprefix("array_api_compat.")
    return f"{name} on {device_of(x)!r}"


def to_float(x):
    """Convert a 0-d array (any namespace) to a Python float (one device sync)."""
    return float(x)


def to_numpy(x):
    """Copy an array of any supported namespace to a NumPy array on the host."""
    if isinstance(x, np.ndarray):
        return x
    if array_api_compat.is_cupy_array(x):
        return x.get()
    if sp.issparse(x):
        return x.toarray()
    try:
        return np.from_dlpack(x)
    except (TypeError, RuntimeError, BufferError, AttributeError):
        return np.asarray(x)


def vdot(xp, a, b):
    """Inner product of two 1-d arrays, as a 0-d array of ``xp``.

    ``a @ b``: one call into the library (BLAS for NumPy), where
    ``sum(a * b)`` makes a temporary and goes through the reduction's Python
    wrapper, whose overhead dominated the inner loops on small problems.
    """
    return a @ b


def norm(xp, a):
    """Euclidean norm of a 1-d array, as a 0-d array of ``xp``."""
    return xp.sqrt(a @ a)
