"""Direct solve of a quadratic inner problem: one factorization per ``lambda``.

With the squared loss the inner problem of a fold is quadratic (see
:mod:`skbilevel.objectives.quadratic`): its minimizer and the hypergradient's
system ``H v = grad F`` are both solved by one factorization of the centred
Hessian ``Xc'SXc + diag(c)``, whose data part is computed once per fold. Per
evaluation that is ``p^3 / 3`` flops and triangular solves, against an
iterative fit of many passes over the data; the result is exact.

The penalty decides the factorization:

- one diagonal shared by every output (a scalar, per-feature or per-group
  strength): the blocks of ``H`` are identical, one Cholesky factor serves
  every output;
- one strength per output, ``c_k I`` (or a scalar): the spectrum of the centred
  Gram, computed once per fold, shifted by ``c_k`` for each output; an
  evaluation is then ``O(p^2 q)``.

Other maps (a strength per feature *and* output) keep the iterative engine.
"""

import threading
import weakref

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from ..objectives.penalties import L2Penalty
from ..objectives.quadratic import quadratic_moments

__all__ = ["MAX_DIRECT_FEATURES", "QuadraticFactor", "direct_factor"]

# Features (the order of the factored matrix) up to which a squared-loss fold is
# solved directly. Measured (one BLAS thread, 3 folds, 4 groups, one target,
# a warm-started 10-point path of lambda at inner_tol 1e-4, seconds per
# evaluation, direct against iterative): p = 500, n = 1000: 0.008 / 0.042;
# p = 1000, n = 2000: 0.047 / 0.12; p = 2000, n = 4000: 0.30 / 1.2; p = 2000,
# n = 1000: 0.45 / 0.58 (20 targets: 0.37 / 4.0); p = 3000, n = 3000: 3.3 / 3.7,
# even. Beyond 2000 the p^3 / 3 factorization per evaluation catches up with
# an iterative fit, and each fold keeps a p x p Gram (32 MB at p = 2000).
MAX_DIRECT_FEATURES = 2000

_cache_lock = threading.Lock()
# The lambda-free part of each fold's solve, kept where the fold's data are
# (a worker process keeps its own), released with the inner objective.
_prepared = weakref.WeakKeyDictionary()


def _layout(penalty, n_features, n_outputs):
    """``"uniform"`` (``c_k I`` per output), ``"shared"`` (one diagonal for every
    output) or None (neither) for the penalty's map of the coefficients."""
    if penalty.group_map is None:
        return "uniform"
    index = penalty.group_map.reshape(n_features, n_outputs)
    if np.all(index == index[:1, :]):
        return "uniform"
    if np.all(index == index[:, :1]):
        return "shared"
    return None


def _applies(inner):
    """Whether ``inner`` is a NumPy squared-loss fold small enough to factor."""
    model = inner.model
    return (
        getattr(inner.loss, "name", None) == "squared"
        and isinstance(inner.penalty, L2Penalty)
        # the matrix the rows are read from (``model.X`` copies shared rows)
        and (isinstance(model.source, np.ndarray) or sp.issparse(model.source))
        and isinstance(inner.y, np.ndarray)
        and (inner.sample_weight is None or isinstance(inner.sample_weight, np.ndarray))
        and model.n_features <= MAX_DIRECT_FEATURES
    )


class _PreparedFold:
    """The moments of one fold, and the Gram's spectrum where the layout uses it."""

    def __init__(self, inner, layout):
        model = inner.model
        self.layout = layout
        self.n_features, self.n_outputs = model.n_features, model.n_outputs
        self.fit_intercept = model.fit_intercept
        self.dtype = model.dtype
        self.index = None
        if inner.penalty.group_map is not None:
            index = inner.penalty.group_map.reshape(self.n_features, self.n_outputs)
            self.index = index[0, :] if layout == "uniform" else index[:, 0]
        self.moments = quadratic_moments(
            model.X, inner.y, inner.sample_weight, model.fit_intercept
        )
        self.rotated_moment = None
        if layout == "uniform":
            eigenvalues, eigenvectors = np.linalg.eigh(self.moments.gram)
            # the Gram is positive semi-definite: negative values are round-off
            self.eigenvalues = np.maximum(eigenvalues, 0.0)
            self.eigenvectors = eigenvectors
            self.rotated_moment = eigenvectors.T @ self.moments.moment
            self.moments = self.moments._replace(gram=None)

    def strengths(self, lam):
        """Per-output strengths (uniform) or the shared diagonal, float64."""
        lam = np.asarray(lam, dtype=np.float64)
        if self.index is None:
            size = self.n_outputs if self.layout == "uniform" else self.n_features
            return np.full(size, np.exp(lam[0]))
        return np.exp(lam[self.index])


class QuadraticFactor:
    """``H(lambda)^{-1}`` of one fold, applied to flat parameter vectors.

    Built by :func:`direct_factor`. Vectors follow the engine's layout: the
    coefficients of shape (n_features, n_outputs) flattened row-major, then
    the intercepts.
    """

    def __init__(self, prepared, strengths, cholesky=None):
        self._prepared = prepared
        self._strengths = strengths
        self._cholesky = cholesky

    def _solve_centred(self, rhs, rotated=None):
        """``(Xc'SXc + diag(c_k))^{-1} rhs_k`` for every column ``k`` of ``rhs``."""
        prepared = self._prepared
        if self._cholesky is not None:
            return scipy.linalg.cho_solve(self._cholesky, rhs, check_finite=False)
        if rotated is None:
            rotated = prepared.eigenvectors.T @ rhs
        shifted = prepared.eigenvalues[:, None] + self._strengths[None, :]
        return prepared.eigenvectors @ (rotated / shifted)

    def _flat(self, coef, intercept, dtype):
        parts = [coef.reshape(-1)]
        if intercept is not None:
            parts.append(intercept)
        return np.concatenate(parts).astype(dtype, copy=False)

    def minimizer(self):
        """The exact minimizer ``w(lambda)``, in the dtype of the fold's data."""
        prepared = self._prepared
        moments = prepared.moments
        coef = self._solve_centred(moments.moment, prepared.rotated_moment)
        intercept = None
        if prepared.fit_intercept:
            intercept = moments.y_mean - moments.x_mean @ coef
        return self._flat(coef, intercept, prepared.dtype)

    def solve(self, b):
        """``H^{-1} b`` for ``b`` of shape (n_params,), in the dtype of ``b``."""
        prepared = self._prepared
        moments = prepared.moments
        b64 = np.asarray(b, dtype=np.float64)
        n_coef = prepared.n_features * prepared.n_outputs
        rhs = b64[:n_coef].reshape(prepared.n_features, prepared.n_outputs)
        rhs_intercept = b64[n_coef:] if prepared.fit_intercept else None
        if rhs_intercept is not None:
            rhs = rhs - np.outer(moments.x_mean, rhs_intercept)
        coef = self._solve_centred(rhs)
        intercept = None
        if rhs_intercept is not None:
            intercept = rhs_intercept / moments.weight_total - moments.x_mean @ coef
        return self._flat(coef, intercept, b.dtype)


def _prepare(inner, layout):
    with _cache_lock:
        prepared = _prepared.get(inner)
    if prepared is None:
        # outside the lock: the folds of a problem prepare in parallel threads
        prepared = _PreparedFold(inner, layout)
        with _cache_lock:
            _prepared[inner] = prepared
    return prepared


def direct_factor(inner, lam):
    """:class:`QuadraticFactor` of ``inner`` at ``lam``, or None where the fold
    keeps the iterative engine.

    The direct path applies to the squared loss on NumPy or SciPy sparse data
    with at most :data:`MAX_DIRECT_FEATURES` features and an L2 penalty
    shared by the outputs or uniform within each; the first call for a fold
    computes its moments (and the Gram's spectrum for the uniform layout),
    later calls reuse them. None also when the factorization fails (a penalty
    too weak for the round-off of the Gram).

    Parameters
    ----------
    inner : InnerObjective
    lam : array-like of shape (n_hyper,)
        Log penalty strengths.

    Returns
    -------
    QuadraticFactor or None
    """
    if not _applies(inner):
        return None
    model = inner.model
    layout = _layout(inner.penalty, model.n_features, model.n_outputs)
    if layout is None:
        return None
    prepared = _prepare(inner, layout)
    strengths = prepared.strengths(lam)
    if layout == "uniform":
        return QuadraticFactor(prepared, strengths)
    hessian = prepared.moments.gram + np.diag(strengths)
    try:
        cholesky = scipy.linalg.cho_factor(hessian, check_finite=False)
    except np.linalg.LinAlgError:
        return None
    return QuadraticFactor(prepared, strengths, cholesky)
