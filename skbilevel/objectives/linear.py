"""Losses composed with a linear model: the inner and outer objectives of one fold.

Parameters are one flat vector ``w`` (what L-BFGS and the linear solvers see):
the coefficients of shape ``(n_features,)`` or ``(n_features, n_outputs)``
flattened row-major, followed by the intercepts (one per output) when
``fit_intercept``. ``raw = X @ coef + intercept``.

- :class:`InnerObjective` is the regularized training loss of scikit-learn,
  ``G(w, lambda) = sum_i s_i loss(y_i, raw_i) + 1/2 sum_j exp(lambda_{g(j)}) coef_j^2``
  (a sum, not a mean, so that ``C = exp(-lambda)`` means what it means in
  ``LogisticRegression`` and ``alpha = exp(lambda)`` what it means in ``Ridge``).
  The intercept is never penalized.
- :class:`ValidationLoss` is the outer criterion ``F(w)``, the weighted mean loss
  on held-out samples (log-loss; mean squared error for regression).

Both take their samples as a matrix of their own or, with ``rows``, as rows of
a matrix that several folds share (no copy): ``raw = (X @ coef)[rows]`` and
the adjoint ``X' scatter(r)``, where ``scatter`` puts ``r_j`` on row
``rows[j]`` (summing repeated rows). The products then run over every row of
``X``: memory saved, time paid (:func:`skbilevel.search.materialize_folds`
chooses).
"""

from functools import cached_property
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from ..utils._array_api import device_of, get_namespace, is_sparse, to_numpy
from ._products import adjoint as _adjoint_product
from ._products import forward as _forward_product
from ._products import routed

__all__ = ["LinearPredictor", "InnerObjective", "ValidationLoss", "take_rows"]


def take_rows(X, rows):
    """Rows ``rows`` (host integers) of a dense or sparse matrix, as a copy.

    Parameters
    ----------
    X : array or sparse matrix of shape (n_samples, ...)
        NumPy, SciPy sparse, CuPy, cupyx sparse or any array-API array.
    rows : ndarray of int of shape (n_rows,)

    Returns
    -------
    array or sparse matrix of shape (n_rows, ...)
    """
    if is_sparse(X):
        return X[rows]
    xp = get_namespace(X)
    return xp.take(X, xp.asarray(rows, device=device_of(X)), axis=0)


def _is_cupy(X):
    return type(X).__module__.split(".")[0] in ("cupy", "cupyx")


# The training side of a fold with small dense NumPy data of its own and an
# intercept is also kept with a column of ones: ``[X, 1] @ [coef; intercept]``
# is one product, where adding the intercept to ``X @ coef`` and summing the
# cotangent's columns for its adjoint cost as much as a fifth of the product
# on small data. The flat ``w`` is the stacked matrix already (coefficients
# row-major, then the intercepts). Measured with one BLAS thread, forward and
# adjoint product, microseconds: digits' training fold (1078 x 64, 10
# classes) 41 -> 33 and 40 -> 35; 340 x 30, one output, 3.9 -> 3.2 and
# 6.8 -> 4.7; at 1600 x 196 5% faster; at 9600 x 784 the same.
# HOAGLogisticRegression on the digits folds of benchmarks/run.py: 0.162 ->
# 0.151 s, the same points (medians of 5 processes alternating with the
# parent commit, 4341041). The copy is made up to this many entries of X
# (4 MiB of float64), where it costs little memory next to its gain; it is
# not pickled (a fold shipped to a worker makes it again there).
_WITH_ONES_MAX_SIZE = 2**19

# Hessian products of such a fold may also run in single precision, for the
# conjugate-gradient solves of a search, whose tolerances are loose (Newton's
# steps, whose gradient test stays in double precision, and the
# hypergradient's linear systems to 1e-2): the two products with [X, 1] take
# half the time or less, and on small data they are most of a search (on the
# digits set of benchmarks/run.py, 900 Hessian products a search). The error
# is checked at each Hessian, on its first product (computed both ways):
# single precision serves the next ones only where that error is at most this
# fraction of the product's size at the penalty's curvature (the smallest of
# the Hessian's coefficient block). An empirical gate, not a bound on the
# solves' error: the unpenalized intercept couples with nearly constant
# features into directions weaker than the penalty (there the gate can pass
# an error ten times larger relative to the weakest curvature, which a solve
# to 1e-2 does not resolve either), and where the data dominate the penalty
# it is stricter than it need be. Measured on a digits training fold (raw
# pixels, 10 classes) at the search's optimum, C = 1.9: 2.3e-3 along the
# gradient; at C = 100, 7.6e-2; with the pixels scaled by 1e-2 to 1e2, 3.2e-2
# at C = 0.01; raw breast_cancer, 31; standardized, 6e-6 (a session script
# at d719920). Where it fails the double-precision products are kept: on
# badly scaled data single precision slowed the conjugate gradients down.
SINGLE_MAX_ERROR = 5e-3
# ... and only on folds whose products are large enough for the gain to
# outweigh the conversions and the check (entries of X times the outputs,
# intercept column included): breast_cancer's folds (340 x 31, one output)
# were 11% slower with them, digits' (1078 x 65 x 10) 12 to 17% faster, a
# 1600 x 197 binary Fashion-MNIST subset 17% (session scripts at d719920).
SINGLE_MIN_SIZE = 2**16


def _scatter_matrix(X, rows):
    """``(rows, S)``: the row indices in the library of ``X`` and the sparse
    ``(n_samples, n_rows)`` matrix with ``S[rows[j], j] = 1``.

    ``S @ r`` scatters (and sums over repeated rows) in one sparse product, a
    kernel SciPy and cupyx both have for vectors and matrices alike.
    """
    rows = np.asarray(rows, dtype=np.int64)
    n_samples, n_rows = X.shape[0], rows.size
    if rows.ndim != 1 or (n_rows and not (0 <= rows.min() and rows.max() < n_samples)):
        raise ValueError(
            f"rows must be a 1-d array of indices in [0, {n_samples}), got shape "
            f"{rows.shape}."
        )
    if isinstance(X, np.ndarray) or sp.issparse(X):
        xp, library = np, sp
    elif _is_cupy(X):
        import cupy as xp
        import cupyx.scipy.sparse as library
    else:
        raise TypeError(
            "rows of a shared matrix need NumPy / SciPy or CuPy / cupyx data, got "
            f"{type(X).__name__}: pass the rows' own matrix instead."
        )
    take = xp.asarray(rows)
    # cuSPARSE indexes with int32; so does SciPy below 2**31 entries
    index = xp.int32 if max(n_samples, n_rows) < 2**31 else xp.int64
    scatter = library.csc_matrix(
        (
            xp.ones(n_rows, dtype=X.dtype),
            take.astype(index),
            xp.arange(n_rows + 1, dtype=index),
        ),
        shape=(n_samples, n_rows),
    )
    return take, scatter


class LinearPredictor:
    """``w -> raw = X @ coef + intercept`` and its adjoint, on dense or sparse ``X``.

    Parameters
    ----------
    X : array or sparse matrix of shape (n_rows_of_X, n_features)
    n_outputs : int
        Raw predictions per sample (1 for binary and single-target models).
    fit_intercept : bool
    rows : ndarray of int of shape (n_samples,) or None, default=None
        The samples are these rows of ``X`` (host indices; repeats allowed),
        read in place: NumPy / SciPy or CuPy / cupyx ``X`` only. None: every
        row of ``X``, in order.
    with_ones : bool, default=False
        Also keep ``[X, 1]`` for the products when ``X`` is a small dense
        NumPy array read whole and there is an intercept (see
        ``_WITH_ONES_MAX_SIZE``): for data of the predictor's own, not a
        matrix other folds share.

    Attributes
    ----------
    source : array or sparse matrix
        The ``X`` given, which the products read (through its copy with a
        column of ones with ``with_ones``).
    rows : array of int or None
        ``rows`` in the library of ``X``.
    n_samples : int
        Number of samples (of ``rows`` when given).
    device : object
        Device of ``X``.
    """

    def __init__(self, X, n_outputs=1, fit_intercept=True, rows=None, with_ones=False):
        if X.ndim != 2:
            raise ValueError(f"X must be 2-dimensional, got shape {X.shape}.")
        self.source = X
        self.rows, self._scatter = None, None
        self.n_samples, self.n_features = X.shape
        if rows is not None:
            self.rows, self._scatter = _scatter_matrix(X, rows)
            self.n_samples = self.rows.shape[0]
        self.n_outputs = int(n_outputs)
        self.fit_intercept = bool(fit_intercept)
        self.n_coef = self.n_features * self.n_outputs
        self.n_params = self.n_coef + (self.n_outputs if fit_intercept else 0)
        self.xp = get_namespace(X)
        self.dtype = X.dtype
        self.device = device_of(X)
        # A sparse matrix's transpose is a new object at each ``X.T`` (its
        # format checked each time): made once, sharing X's arrays.
        self._XT = X.T if is_sparse(X) else None
        # Dense NumPy data read whole: see _in_place
        self._host_dense = isinstance(X, np.ndarray) and rows is None
        # The intercept there: [X, 1] for small data (see _WITH_ONES_MAX_SIZE),
        # with the shape that makes the flat w its operand; else its adjoint
        # is a product with ones, made once per predictor (a cache shared by
        # the process would keep arrays of every data size seen for good).
        self._ones = None
        self._with_ones, self._stacked_shape = None, None
        self._with_ones_single = None
        if self._host_dense and self.fit_intercept:
            if with_ones and X.size <= _WITH_ONES_MAX_SIZE:
                self._stacked_shape = (self.n_features + 1,) + (
                    (self.n_outputs,) if self.n_outputs > 1 else ()
                )
                self._with_ones = self._make_with_ones()
            else:
                self._ones = np.ones(self.n_samples, dtype=X.dtype)

    def _make_with_ones(self):
        """``[X, 1]``, a new array."""
        X = self.source
        with_ones = np.empty((self.n_samples, self.n_features + 1), X.dtype)
        with_ones[:, :-1] = X
        with_ones[:, -1] = 1
        return with_ones

    def single_operand(self):
        """``[X, 1]`` in single precision for Hessian products (made on first
        use), or None where the products do not read ``[X, 1]`` (none kept, or
        a router serves them) or ``X`` is not float64 (see
        ``SINGLE_MAX_ERROR``)."""
        if (
            self._with_ones is None
            or self._with_ones.dtype != np.float64
            or not self._in_place()
        ):
            return None
        if self._with_ones_single is None:
            self._with_ones_single = self._with_ones.astype(np.float32)
        return self._with_ones_single

    def __getstate__(self):
        # [X, 1] is made again where the predictor is unpickled (a worker):
        # shipping it would double the bytes of the fold's data
        state = self.__dict__.copy()
        state["_with_ones"] = state["_with_ones_single"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if self._stacked_shape is not None:
            self._with_ones = self._make_with_ones()

    @property
    def X(self):
        """The design matrix of the samples, shape (n_samples, n_features).

        ``X`` itself without ``rows``; with ``rows``, a copy of those rows made
        at each access, for code that needs the samples' own matrix (the
        products never make it).
        """
        if self.rows is None:
            return self.source
        return take_rows(self.source, to_numpy(self.rows))

    def split(self, w):
        """Flat ``w`` -> (coef as (n_features,) or (n_features, K), intercept or None)."""
        xp = self.xp
        coef = w[: self.n_coef]
        if self.n_outputs > 1:
            shape = (self.n_features, self.n_outputs)
            # NumPy's own reshape where it can: the compatibility layer's
            # costs a few microseconds in every product of the dense path
            coef = (
                coef.reshape(shape)
                if isinstance(coef, np.ndarray)
                else xp.reshape(coef, shape)
            )
        intercept = w[self.n_coef :] if self.fit_intercept else None
        return coef, intercept

    def _in_place(self):
        """Whether the products run on NumPy's own operations, writing into
        arrays of their own: dense NumPy data read whole, whose products
        this thread computes (a router's products are views of a block it
        shares with other folds, see :mod:`._products`).

        The same operations as the array-API path, less its allocations and
        concatenations: on digits (480 x 64, 10 classes, one BLAS thread) a
        Hessian-vector product takes 48 us, against 60 us by the array-API
        operations (its two products with ``X``: 27 us). Results agree with
        the array-API path to round-off (the intercept enters the products
        with ``[X, 1]`` or is added to ``X @ coef``, and its adjoint is a
        product with ones, not a pairwise sum).
        """
        return self._host_dense and not routed(self.source)

    def raw(self, w):
        """Raw predictions, shape (n_samples,) or (n_samples, K)."""
        if self._with_ones is not None and self._in_place():
            return self._with_ones @ w.reshape(self._stacked_shape)
        coef, intercept = self.split(w)
        if self._in_place():
            raw = self.source @ coef
            if intercept is not None:
                # in place: the product is an array of this call's own
                raw += intercept if self.n_outputs > 1 else intercept[0]
            return raw
        raw = _forward_product(self.source, coef)
        if self.rows is not None:
            raw = self.xp.take(raw, self.rows, axis=0)
        if intercept is not None:
            raw = raw + (intercept if self.n_outputs > 1 else intercept[0])
        return raw

    def adjoint(self, raw_cotangent, coef_term=None):
        """``d raw / d w`` transposed applied to a cotangent of the raw
        predictions, plus ``coef_term`` (shape (n_coef,), or a scalar) on the
        coefficients when given (a penalty's gradient or curvature product).

        Returns a new array of shape (n_params,).
        """
        if self._in_place():
            return self._adjoint_in_place(raw_cotangent, coef_term)
        xp = self.xp
        cotangent = raw_cotangent
        if self._scatter is not None:
            cotangent = self._scatter @ raw_cotangent
        XT = self.source.T if self._XT is None else self._XT
        coef_part = xp.reshape(_adjoint_product(self.source, XT, cotangent), (-1,))
        if coef_term is not None:
            coef_part = coef_part + coef_term
        if not self.fit_intercept:
            return coef_part
        intercept_part = xp.reshape(xp.sum(raw_cotangent, axis=0), (-1,))
        return xp.concat([coef_part, intercept_part])

    def _adjoint_in_place(self, raw_cotangent, coef_term):
        """:meth:`adjoint` by NumPy, written into one new array (see _in_place)."""
        X = self.source
        # the array-API path's dtype: the coefficient term's counts too
        dtype = np.result_type(
            X.dtype, raw_cotangent.dtype, *([] if coef_term is None else [coef_term])
        )
        out = np.empty(self.n_params, dtype=dtype)
        coef_part = out[: self.n_coef]
        if self._with_ones is not None:
            # the coefficients' and the intercepts' parts in one product
            np.matmul(
                self._with_ones.T, raw_cotangent, out=out.reshape(self._stacked_shape)
            )
            if coef_term is not None:
                coef_part += coef_term
            return out
        # (n_features,) or (n_features, K): a view of out, contiguous
        np.matmul(
            X.T, raw_cotangent, out=coef_part.reshape(-1, *raw_cotangent.shape[1:])
        )
        if coef_term is not None:
            coef_part += coef_term
        if self.fit_intercept:
            # the column sums as one matrix-vector product, where a reduction
            # over the samples is several times slower on few columns
            out[self.n_coef :] = self._ones @ raw_cotangent
        return out

    def zeros(self):
        """A zero parameter vector of the right size, dtype and device."""
        return self.xp.zeros(self.n_params, dtype=self.dtype, device=self.device)


def _weighted(xp, sample_weight, values):
    """``s_i * values_i`` for values of shape (n,) or (n, K); ``s = None`` is all ones."""
    if sample_weight is None:
        return values
    return (
        sample_weight * values if values.ndim == 1 else sample_weight[:, None] * values
    )


def _checked_single(exact, single, floor):
    """``v -> H v`` by ``single`` when its first product agrees with
    ``exact``'s to ``SINGLE_MAX_ERROR`` relative to ``floor * ||v||`` (the
    product's size along the Hessian's weakest penalized direction), else by
    ``exact``; the first product is ``exact``'s."""
    chosen = []

    def matvec(v):
        if chosen:
            return chosen[0](v)
        product = exact(v)
        error = float(np.linalg.norm(single(v) - product))
        bound = SINGLE_MAX_ERROR * floor * float(np.linalg.norm(v))
        chosen.append(single if error <= bound else exact)
        return product

    return matvec


def _check_inputs(X, y, sample_weight, n_outputs, rows=None, *, positive_total=False):
    """Raise a ValueError for non-finite data or mismatched shapes.

    ``y`` must have shape (n_samples,) when ``n_outputs == 1`` and
    (n_samples, n_outputs) otherwise: a column (n_samples, 1) would broadcast
    against the raw predictions (n_samples,) into an (n, n) array; there are
    ``len(rows)`` samples when ``rows`` is given. Sparse ``X`` is checked
    through its stored values.
    """
    if X.ndim != 2:
        raise ValueError(f"X must be 2-dimensional, got shape {tuple(X.shape)}.")
    n_samples = X.shape[0] if rows is None else len(rows)
    values = X.data if is_sparse(X) else X
    xp = get_namespace(values)
    if not bool(xp.all(xp.isfinite(values))):
        raise ValueError("X contains NaN or infinity.")
    expected = (n_samples,) if n_outputs == 1 else (n_samples, n_outputs)
    if tuple(y.shape) != expected:
        raise ValueError(
            f"y has shape {tuple(y.shape)}, expected {expected} for X with "
            f"{n_samples} samples and n_outputs={n_outputs}."
        )
    if not bool(xp.all(xp.isfinite(y))):
        raise ValueError("y contains NaN or infinity.")
    if sample_weight is None:
        return
    if tuple(sample_weight.shape) != (n_samples,):
        raise ValueError(
            f"sample_weight has shape {tuple(sample_weight.shape)}, expected "
            f"({n_samples},)."
        )
    if not bool(xp.all(xp.isfinite(sample_weight))):
        raise ValueError("sample_weight contains NaN or infinity.")
    if positive_total and not float(xp.sum(sample_weight)) > 0:
        raise ValueError("The validation sample weights must have a positive sum.")


def _owned(array):
    """``array``, or a copy of it where it is a view of a larger array (a
    fold's share of a grouped product, see :mod:`._products`): kept at a
    point, it would keep the whole block alive."""
    base = getattr(array, "base", None)
    if base is not None and getattr(base, "nbytes", 0) > array.nbytes:
        return array.copy()
    return array


class _Point(NamedTuple):
    """What an :class:`InnerObjective` computed at one ``w``.

    Attributes
    ----------
    values : array
        A copy of the values of ``w`` when the point was made (the key; see
        :meth:`InnerObjective._point`).
    raw : array or None
        The raw predictions ``model.raw(w)``. None after a gradient of a loss
        whose curvature varies (the logistic losses): the curvature products
        read the probabilities only, and not keeping both saves an array of
        the fold's rows per fold (a value at ``w`` reads the gradient's
        ``data``); kept once the objective made a :meth:`InnerObjective.tracker`
        (a Newton step's trial point starts from them). (The squared loss's
        mean is its raw predictions, kept.)
    mean : array or None
        The loss's mean prediction (the probabilities), once a gradient was
        taken at ``w``.
    data : array or None
        The data part of ``G`` (0-d), once a gradient was taken at ``w``.
    data_grad : array or None
        The data part's gradient (shape (n_params,)), with it: a gradient
        at ``w`` at any ``lambda`` adds the penalty's (no product with ``X``).
    shared : array or None
        On a matrix the folds share, the raw predictions at the rows a
        :class:`ValidationLoss` reads from this objective (its ``sibling``,
        see :meth:`InnerObjective.share_rows`), taken with the gradient: the
        validation loss at ``w`` then takes no product of its own.
    """

    values: object
    raw: object
    mean: object = None
    data: object = None
    data_grad: object = None
    shared: object = None


def _at(xp, point, w):
    """Whether ``point`` (a :class:`_Point` or None) is at ``w``'s values."""
    return (
        point is not None
        and point.values.shape == w.shape
        and bool(xp.all(point.values == w))
    )


class RawTracker:
    """Raw predictions of Newton's trial points without products with ``X``.

    The raw predictions are linear in ``w`` (``[X, 1] w``). A Newton step
    ``p`` is the sum of its conjugate gradient's steps ``alpha_k p_k``, and
    each Hessian product ``H p_k`` computes ``p_k``'s raw predictions on the
    way: their sum with the same coefficients is ``p``'s, and a trial point
    ``x + t p`` has ``raw(x) + t raw(p)``. The forward product of each trial
    point (one per Newton step, and per step back of its line search) is
    saved, at the price of keeping ``raw(x)`` and ``raw(p)`` (two arrays of
    the fold's rows). The predictions so combined differ from the product's
    by round-off (a few units in the last place per step).

    Made by :meth:`InnerObjective.tracker`; the protocol of ``tracker`` in
    :func:`~skbilevel.solvers.minimize_newton_cg`.
    """

    def __init__(self, inner, lam, single):
        self.inner, self.lam, self.single = inner, lam, single
        # (x, raw(x)) of the step being line-searched: a step back starts
        # from x again, after the trial point replaced it in the objective
        self._base = None

    def matvec(self, x):
        """``v -> (H v, raw(v))`` at ``x`` (``raw(v)`` None where unknown)."""
        self._base = None  # a new step: the last one's start is done with
        return self.inner.hessp(x, self.lam, single=self.single, image=True)

    def seed(self, trial, x, step_raw, t):
        """Give the objective ``trial = x + t p``'s raw predictions from
        ``x``'s (where it keeps them) and ``step_raw``, ``p``'s."""
        if self._base is not None and self._base[0] is x:
            base = self._base[1]
        else:
            base = self.inner.raw_at(x)
            self._base = None if base is None else (x, base)
        if base is not None:
            self.inner.seed(trial, base + t * step_raw)


class InnerObjective:
    """Regularized training loss ``G(w, lambda)`` of one fold.

    Parameters
    ----------
    X : array or sparse matrix of shape (n_samples, n_features)
        The samples' matrix, or the matrix ``rows`` are taken from.
    y : array of shape (n_samples,) or (n_samples, n_outputs)
        Targets already encoded by ``loss.encode``.
    loss : BinaryLogisticLoss, MultinomialLogisticLoss or SquaredLoss
    penalty : L2Penalty
    n_outputs : int
    fit_intercept : bool, default=True
    sample_weight : array of shape (n_samples,) or None
    rows : ndarray of int of shape (n_samples,) or None, default=None
        The samples as rows of ``X``, not copied (see :class:`LinearPredictor`).
    shared : bool, default=False
        Whether ``X`` is a matrix other folds read too (with zero weights off
        this fold's rows): no copy of it is made, and (with ``rows=None``) its
        products cover the fold's validation rows too, which the fold's
        :class:`ValidationLoss` can read (:meth:`share_rows`). Else small
        dense data is also kept with a column of ones for the products
        (``with_ones`` of :class:`LinearPredictor`).

    Notes
    -----
    ``lam`` arguments are arrays of shape (n_hyper,) in the namespace and dtype of
    ``X``; ``w`` is flat (see the module docstring). What was computed at the
    last ``w`` evaluated is reused when a ``w`` with the same values comes
    again: its raw predictions, or, once its gradient was taken, the
    probabilities (the curvature of a Newton step at the point whose gradient
    was just taken) and the data part of the gradient (the same point at
    another ``lambda``, or asked again); see :class:`_Point`.
    """

    # hessp takes ``single`` (objectives without the attribute are asked for
    # double-precision products only)
    single_hessian = True

    def __init__(
        self,
        X,
        y,
        loss,
        penalty,
        n_outputs=1,
        fit_intercept=True,
        sample_weight=None,
        rows=None,
        shared=False,
    ):
        _check_inputs(X, y, sample_weight, n_outputs, rows)
        self.model = LinearPredictor(
            X, n_outputs, fit_intercept, rows, with_ones=not shared
        )
        group_map = getattr(penalty, "group_map", None)
        if group_map is not None and group_map.shape[0] != self.model.n_coef:
            raise ValueError(
                f"The penalty maps {group_map.shape[0]} coefficients, but the model "
                f"has {self.model.n_coef} (n_features * n_outputs)."
            )
        self.y = y
        self.loss = loss
        self.penalty = penalty
        self.sample_weight = sample_weight
        self.xp = self.model.xp
        self.shared = shared
        self._shared_rows = None  # the rows a validation loss reads from here
        self._last_point = None
        self._weight_single = None  # float32 weights of single Hessian products
        # whether a point keeps its raw predictions with its gradient (set
        # by tracker(): the next Newton step's trial point is computed from
        # them)
        self._keep_raw = False

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_last_point"] = None  # a fold shipped to a worker leaves it behind
        state["_weight_single"] = None
        return state

    def _point(self, w):
        """What is known at ``w``: the last point's when ``w`` has its values,
        else a new point (one product with ``X``, none at ``w = 0``).

        A solver asks for the curvature (``hessp``) at the point whose
        gradient it just took, the hypergradient is taken at the solver's
        last point, a cold solve starts where the scale of its gradient test
        was taken (``w = 0``), and a re-solve where the last solve stopped:
        each reuse saves a product with ``X`` (and the probabilities: on
        digits, the softmax is half the cost of a gradient), the gradient's
        adjoint product too. The key is a copy of the values (one comparison
        of ``n_params`` values, against a product with ``X``): an array
        modified in place between the calls no longer matches. What is kept
        depends on ``w`` alone, not on ``lambda``.
        """
        xp = self.xp
        last = self._last_point
        if _at(xp, last, w):
            return last
        if bool(xp.any(w)):
            raw = self.model.raw(w)
        else:  # X @ 0: no product (the cold start)
            raw = self._zero_raw(w)
        point = _Point(xp.asarray(w, copy=True), _owned(raw))
        self._last_point = point
        return point

    def _zero_raw(self, w):
        """The raw predictions at ``w = 0``, in the product's dtype."""
        xp, model = self.xp, self.model
        shape = (model.n_samples,)
        if model.n_outputs > 1:
            shape += (model.n_outputs,)
        dtype = xp.result_type(model.dtype, w.dtype)
        return xp.zeros(shape, dtype=dtype, device=model.device)

    def raw_at(self, w):
        """The raw predictions at ``w`` where the last point has ``w``'s
        values and keeps them (see :meth:`tracker`; at ``w = 0`` they are
        zero), else None (no product). Not to be modified."""
        last = self._last_point
        if last is None or not _at(self.xp, last, w):
            return None
        if last.raw is None and not bool(self.xp.any(w)):
            return self._zero_raw(w)
        return last.raw

    def seed(self, w, raw):
        """Take ``raw`` as the raw predictions at ``w``, computed by the
        caller without a product (a linear combination of others, see
        :meth:`tracker`): the next value or gradient at ``w`` reads them.
        Nothing changes where the last point is at ``w`` already."""
        if _at(self.xp, self._last_point, w):
            return
        self._last_point = _Point(self.xp.asarray(w, copy=True), _owned(raw))

    def tracker(self, lam, single=False):
        """A :class:`RawTracker` of this objective at ``lam`` for
        :func:`~skbilevel.solvers.minimize_newton_cg`: each Newton step's
        trial points take their raw predictions from the step's conjugate
        gradient, not from a product with ``X``. From here on the points
        keep their raw predictions with their gradient (one array of the
        fold's rows more)."""
        self._keep_raw = True
        return RawTracker(self, lam, single)

    def share_rows(self, rows):
        """Keep, with each gradient, the raw predictions at rows ``rows`` of
        the shared matrix, for the validation loss on them (whose ``sibling``
        this objective is; see :meth:`shared_raw`). A call replaces the rows
        of an earlier one.

        Parameters
        ----------
        rows : array of int
            Rows of the shared matrix: the validation loss's own array,
            which :meth:`shared_raw` recognizes by identity.

        Raises
        ------
        ValueError
            If the objective was not built on every row of a shared matrix
            (``shared=True``, ``rows=None``).
        """
        if not self.shared or self.model.rows is not None:
            raise ValueError(
                "share_rows needs an objective built on every row of a shared "
                "matrix (shared=True, rows=None)."
            )
        self._shared_rows = rows
        self._last_point = None

    def shared_raw(self, w, rows):
        """The raw predictions at ``w`` on rows ``rows`` (the array given to
        :meth:`share_rows`) where the last point has ``w``'s values and its
        gradient was taken (see :class:`_Point`); else None.

        Parameters
        ----------
        w : array of shape (n_params,)
        rows : array of int

        Returns
        -------
        array of shape (len(rows),) or (len(rows), n_outputs), or None
            The array the point keeps: not to be modified.
        """
        last = self._last_point
        if rows is not self._shared_rows or not _at(self.xp, last, w):
            return None
        return last.shared

    def _curvature(self, w):
        """The loss's per-sample curvature at ``w``, from the probabilities of
        the gradient taken there when there was one (see :meth:`_point`)."""
        point = self._point(w)
        if point.mean is None:
            return self.loss.curvature(self.xp, self.y, point.raw)
        return self.loss.curvature_at_mean(self.xp, point.mean)

    @property
    def n_params(self):
        return self.model.n_params

    @property
    def n_hyper(self):
        return self.penalty.n_hyper

    @cached_property
    def weight_total(self):
        """Sum of the training weights (the number of samples without any):
        scikit-learn's objectives are this one divided by it. Computed once
        (a device synchronization on a GPU)."""
        if self.sample_weight is None:
            return float(self.y.shape[0])
        return float(self.xp.sum(self.sample_weight))

    def _coef(self, w):
        return w[: self.model.n_coef]

    def value(self, w, lam):
        """``G(w, lam)`` as a 0-d array."""
        xp = self.xp
        point = self._point(w)
        data = point.data  # a gradient's, taken at w
        if data is None:
            raw = point.raw
            if raw is None:  # a gradient there that did not finish
                raw = self.model.raw(w)
            losses = self.loss.value(xp, self.y, raw)
            data = xp.sum(_weighted(xp, self.sample_weight, losses))
        return data + self.penalty_value(w, lam)

    def penalty_value(self, w, lam):
        """The penalty's part of ``G(w, lam)`` (0-d array; no product with
        ``X``): with the data part of a previous evaluation at the same
        ``w``, ``G`` at another ``lam`` for free."""
        return self.penalty.value(self.xp, self._coef(w), lam)

    def value_and_grad(self, w, lam):
        """``G(w, lam)`` (0-d array) and ``dG/dw`` (shape (n_params,))."""
        xp = self.xp
        point = self._point(w)
        if point.data_grad is None:
            raw = self.model.raw(w) if point.raw is None else point.raw
            losses, raw_grad, mean = self.loss.value_gradient_and_mean(xp, self.y, raw)
            if getattr(self.loss, "constant_curvature", False):
                # the squared loss's mean is its raw predictions (one array),
                # and hessp reads neither
                kept = mean = _owned(raw)
            elif self._keep_raw:
                # a tracked solve's next trial point starts from them
                kept = _owned(raw)
            else:
                # hessp at w reads the probabilities only: the raw
                # predictions are not kept beside them, whether computed here
                # or kept
                kept = None
            shared = None
            if self._shared_rows is not None:  # the validation loss's rows
                shared = xp.take(raw, self._shared_rows, axis=0)
            # the raw predictions released (where not kept) before the
            # adjoint's arrays
            point = point._replace(raw=kept, mean=mean, shared=shared)
            self._last_point = point
            del raw, kept
            data = xp.sum(_weighted(xp, self.sample_weight, losses))
            data_grad = self.model.adjoint(_weighted(xp, self.sample_weight, raw_grad))
            point = point._replace(data=data, data_grad=_owned(data_grad))
            self._last_point = point
        penalty, penalty_grad = self.penalty.value_and_gradient(xp, self._coef(w), lam)
        data_grad, n_coef = point.data_grad, self.model.n_coef
        if n_coef == data_grad.shape[0]:
            grad = data_grad + penalty_grad
        else:  # the intercepts' part: the data's alone
            grad = xp.concat([data_grad[:n_coef] + penalty_grad, data_grad[n_coef:]])
        return point.data + penalty, grad

    def hessp(self, w, lam, single=False, image=False):
        """Return ``v -> d2G/dw2 @ v`` at ``(w, lam)``; per-sample curvature computed once.

        With ``single``, on small dense folds whose products read ``[X, 1]``,
        the products run in single precision where the first one shows an
        error of at most ``SINGLE_MAX_ERROR`` relative to the penalty's
        curvature (it is computed both ways and returned in double
        precision); elsewhere, and where the error is larger, in double
        precision. For conjugate-gradient solves with loose tolerances only.

        With ``image``, the operator returns ``(d2G/dw2 @ v, raw)``: ``raw``
        is ``v``'s raw predictions (``model.raw(v)``, linear in ``v``), which
        the product computes on the way, or None where the product ran in
        single precision (not exact enough to stand for them).
        """
        xp = self.xp
        model, loss, sample_weight = self.model, self.loss, self.sample_weight
        curvature = None
        if not getattr(loss, "constant_curvature", False):
            curvature = self._curvature(w)
        strength = self.penalty.strength(xp, lam)

        def imaged(v):
            raw_direction = model.raw(v)
            curvature_product = loss.hessian_product(xp, curvature, raw_direction)
            product = model.adjoint(
                _weighted(xp, sample_weight, curvature_product),
                strength * v[: model.n_coef],
            )
            return product, raw_direction

        def matvec(v):
            return imaged(v)[0]

        operand = None
        if single and model.n_samples * model.n_params >= SINGLE_MIN_SIZE:
            operand = model.single_operand()
        if operand is None:
            return imaged if image else matvec
        curvature32 = None if curvature is None else curvature.astype(np.float32)
        weight32 = None
        if sample_weight is not None:
            if self._weight_single is None:
                self._weight_single = sample_weight.astype(np.float32)
            weight32 = self._weight_single
        shape, n_coef = model._stacked_shape, model.n_coef

        def single_matvec(v):
            raw_direction = operand @ v.astype(np.float32).reshape(shape)
            curvature_product = loss.hessian_product(xp, curvature32, raw_direction)
            product = operand.T @ _weighted(xp, weight32, curvature_product)
            out = product.reshape(-1).astype(np.result_type(v.dtype, model.dtype))
            out[:n_coef] += strength * v[:n_coef]
            return out

        checked = _checked_single(matvec, single_matvec, self.curvature_floor(lam))
        if image:
            return lambda v: (checked(v), None)
        return checked

    def hessian(self, w, lam):
        """Dense Hessian ``d2G/dw2``, shape (n_params, n_params). Small problems only."""
        xp = self.xp
        model = self.model
        device = model.device
        if model.n_outputs == 1 and not is_sparse(model.source):
            curvature = self._curvature(w)
            c = (
                xp.ones(model.n_samples, dtype=model.dtype, device=device)
                if curvature is None
                else curvature
            )
            if self.sample_weight is not None:
                c = c * self.sample_weight
            design = model._with_ones  # [X, 1] where the products keep it
            if design is None:
                design = model.X
                if model.fit_intercept:
                    ones = xp.ones(
                        (model.n_samples, 1), dtype=model.dtype, device=device
                    )
                    design = xp.concat([design, ones], axis=1)
            H = design.T @ (c[:, None] * design)
            eye = xp.eye(model.n_params, dtype=model.dtype, device=device)
            return H + eye * self.penalty_curvature(lam)[None, :]
        matvec = self.hessp(w, lam)
        eye = xp.eye(model.n_params, dtype=model.dtype, device=device)
        return xp.stack([matvec(eye[i, :]) for i in range(model.n_params)], axis=1)

    def cross(self, w, lam, v):
        """``(d2G / dlambda dw) @ v``, shape (n_hyper,)."""
        n_coef = self.model.n_coef
        return self.penalty.cross(self.xp, w[:n_coef], lam, v[:n_coef])

    def gradient_lambda(self, w, lam):
        """Partial derivative ``dG / dlambda`` at fixed ``w``, shape (n_hyper,)."""
        return self.penalty.gradient_lambda(self.xp, self._coef(w), lam)

    def penalty_curvature(self, lam):
        """Diagonal of ``d2P/dw2`` over all parameters (zero on intercepts)."""
        xp = self.xp
        zeros = self.model.zeros()
        n_coef = self.model.n_coef
        coef_part = self.penalty.strength(xp, lam) + zeros[:n_coef]
        if n_coef == zeros.shape[0]:
            return coef_part
        return xp.concat([coef_part, zeros[n_coef:]])

    def curvature_floor(self, lam):
        """``min_g exp(lam_g)``: the Hessian's coefficient block is at least this."""
        return self.penalty.curvature_floor(lam)


class ValidationLoss:
    """Outer criterion ``F(w)``: weighted mean loss on held-out samples.

    Parameters
    ----------
    X, y, loss, n_outputs, fit_intercept, sample_weight
        As for :class:`InnerObjective`, on the validation samples.
    scale : float, default=1.0
        Factor applied to the mean loss (2 / n_outputs turns the half squared
        error into scikit-learn's mean squared error).
    rows : ndarray of int of shape (n_samples,) or None, default=None
        The validation samples as rows of ``X``, not copied.
    sibling : InnerObjective or None, default=None
        With ``rows``: the fold's training objective on the same shared
        matrix ``X`` (``shared=True``, every row). Its products cover these
        rows: while its last point is one whose gradient it took (the
        solution, where the hypergradient and the validation value are
        taken), the raw predictions on them are read from it instead of a
        product with ``X``. The constructor registers ``rows`` with it
        (:meth:`InnerObjective.share_rows`, which replaces the rows of an
        earlier validation loss).

    Raises
    ------
    ValueError
        If ``sibling`` is given without ``rows``, or is not an objective on
        every row of ``X`` with the same ``fit_intercept`` and ``n_outputs``.
    """

    def __init__(
        self,
        X,
        y,
        loss,
        n_outputs=1,
        fit_intercept=True,
        sample_weight=None,
        scale=1.0,
        rows=None,
        sibling=None,
    ):
        _check_inputs(X, y, sample_weight, n_outputs, rows, positive_total=True)
        if sibling is not None and (
            rows is None
            or not getattr(sibling, "shared", False)
            or sibling.model.source is not X
            or sibling.model.rows is not None
            or sibling.model.fit_intercept != bool(fit_intercept)
            or sibling.model.n_outputs != n_outputs
        ):
            raise ValueError(
                "A sibling objective must train on every row of the shared "
                "matrix the validation rows are taken from, with the same "
                "fit_intercept and n_outputs (shared=True, rows=None)."
            )
        self.sibling = sibling
        self.model = LinearPredictor(X, n_outputs, fit_intercept, rows)
        if sibling is not None:
            sibling.share_rows(self.model.rows)
        self.y = y
        self.loss = loss
        self.xp = self.model.xp
        xp = self.xp
        if sample_weight is None:
            total = float(self.model.n_samples)
        else:
            total = float(xp.sum(sample_weight))
        self.sample_weight = sample_weight
        self.scale = scale
        self._factor = scale / total

    def _raw(self, w):
        """Raw predictions at ``w``: the sibling's where it has them."""
        if self.sibling is not None:
            raw = self.sibling.shared_raw(w, self.model.rows)
            if raw is not None:
                return raw
        return self.model.raw(w)

    def value(self, w):
        """``F(w)`` as a 0-d array."""
        xp = self.xp
        losses = self.loss.value(xp, self.y, self._raw(w))
        return self._factor * xp.sum(_weighted(xp, self.sample_weight, losses))

    def value_and_grad(self, w):
        """``F(w)`` and ``dF/dw`` (shape (n_params,))."""
        xp = self.xp
        losses, raw_grad = self.loss.value_and_gradient(xp, self.y, self._raw(w))
        value = self._factor * xp.sum(_weighted(xp, self.sample_weight, losses))
        grad = self.model.adjoint(_weighted(xp, self.sample_weight, raw_grad))
        return value, self._factor * grad
