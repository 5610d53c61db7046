"""Where the folds' data live when a joblib backend runs them elsewhere.

The fold evaluations follow the active joblib backend, as
``GridSearchCV(n_jobs=...)`` does: threads when none is active, or whatever the
user activated with ``joblib.parallel_config`` (``parallel_backend``). The data
of a fold do not change during a search, so they are shipped once:

- threads and the sequential backend read the folds in place;
- joblib's dask backend: the backend's client scatters every fold, packed
  (:class:`PackedFold`), to the workers at the first evaluation; each call
  then carries the future, which dask resolves on the worker that runs it (a
  worker missing it fetches it once from another worker), and the worker
  unpacks it at its first call and keeps it;
- ray's backend (``ray.util.joblib.register_ray``): ``ray.put`` once into the
  object store; each call carries the reference and the worker fetches it
  (zero-copy for NumPy buffers on the same node);
- loky (joblib's process backend) receives the folds with every call; it
  memory-maps arrays above 1 MB to its workers instead of pickling them (so
  also a fold's state, which ships with every call: its solution and its
  curvature pairs, Newton-CG's as one matrix; read-only in the workers,
  where nothing writes into them);
- the multiprocessing backend pickles with the standard library, which refuses
  the objectives' namespace modules: the folds are packed once and their bytes
  sent with every call.
"""

import threading
from typing import NamedTuple

from joblib.parallel import BACKENDS, get_active_backend

__all__ = ["FoldPlacement", "PackedFold", "RayFold", "active_backend", "resolve"]


def _cloudpickle():
    try:
        import cloudpickle
    except ImportError:  # joblib < 1.5 vendors it instead of depending on it
        from joblib.externals import cloudpickle
    return cloudpickle


class RayFold(NamedTuple):
    """A fold in ray's object store."""

    ref: object

    def fetch(self):
        import ray

        return ray.get(self.ref)


_unpack_lock = threading.Lock()


class PackedFold:
    """A fold cloudpickled into one bytes object, unpacked once where it is used.

    Unpickling allocates every array afresh. Arrays that dask deserializes in
    place can start at any byte of a received message (seen: a float64 array
    at address 30 mod 64), and NumPy neither hands unaligned arrays to BLAS
    nor rounds the same way without it; the packed fold's arrays come out
    aligned, and the results equal the threads' to the bit.

    Parameters
    ----------
    payload : bytes
        ``cloudpickle.dumps(fold)``.
    """

    __slots__ = ("payload", "nbytes", "_fold")

    def __init__(self, payload):
        self.payload = payload
        self.nbytes = len(payload)
        self._fold = None

    @classmethod
    def pack(cls, fold):
        return cls(_cloudpickle().dumps(fold))

    def fetch(self):
        """The fold, unpacked at the first call (the bytes are then dropped)."""
        with _unpack_lock:
            if self._fold is None:
                self._fold = _cloudpickle().loads(self.payload)
                self.payload = None
            return self._fold

    def __reduce__(self):
        # a worker that sends its copy on (dask moves data between workers)
        # packs the fold again
        payload = self.payload
        if payload is None:
            payload = _cloudpickle().dumps(self._fold)
        return (PackedFold, (payload,))

    def __sizeof__(self):
        # what dask's memory and transfer accounting should see
        return self.nbytes


def resolve(fold):
    """The fold a call was given (a handle is fetched where the call runs)."""
    return fold.fetch() if isinstance(fold, (RayFold, PackedFold)) else fold


def active_backend():
    """The backend that ``Parallel(prefer="threads")`` runs on here and now."""
    return get_active_backend(prefer="threads")[0]


def _shipping(backend):
    """``(key, ship)``: ``ship(folds)`` puts the folds where ``backend`` runs calls
    and returns their handles; ``key`` names that place. ``(None, None)`` where
    the folds are passed as they are."""
    client = getattr(backend, "client", None)
    if client is not None and callable(getattr(client, "scatter", None)):
        # joblib's DaskDistributedBackend; hash=False as joblib scatters (hashing
        # would serialize the folds once more).
        def ship(folds):
            return client.scatter([PackedFold.pack(f) for f in folds], hash=False)

        return ("dask", client.id), ship
    if type(backend).__module__.split(".")[0] == "ray":
        import ray

        def ship(folds):
            return [RayFold(ray.put(fold)) for fold in folds]

        return ("ray", ray.get_runtime_context().get_job_id()), ship
    if isinstance(backend, BACKENDS["multiprocessing"]):
        return ("packed",), lambda folds: [PackedFold.pack(f) for f in folds]
    return None, None


class FoldPlacement:
    """The folds of a problem, shipped at most once to each cluster.

    Parameters
    ----------
    folds : list of Fold
    """

    def __init__(self, folds):
        self.folds = list(folds)
        self._key = None
        self._handles = None

    def handles(self, backend):
        """What to pass as each fold to a call that ``backend`` runs.

        The folds themselves in this process; futures or references on a
        cluster, created at the first call and kept while the cluster is the
        same (released with this object).
        """
        key, ship = _shipping(backend)
        if ship is None:
            return self.folds
        if key != self._key:
            self._handles, self._key = list(ship(self.folds)), key
        return self._handles
