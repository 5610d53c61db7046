"""The factorization of one fold's ridge system, for every alpha at once.

:class:`_FoldPath` factors a fold's system ``S`` (the Gram matrix ``A'A``,
or the kernel ``AA'``) once, ``S = Q T Q'``, and gives the fold's CV loss,
its derivatives in ``log alpha``, predictions and solutions at any alpha:
``T`` diagonal (the eigendecomposition) or tridiagonal (LAPACK ``sytrd``).
For one target, ``Q`` may instead span only the Krylov space of the
right-hand side (Lanczos), when that space gives every alpha of the search
to a set accuracy in fewer steps than the reduction costs.
:func:`choose_factorization` picks a fold's factorization from a cost model
whose constants are measured here. :class:`FoldProblem` holds what it shares
with the banded search's folds: the training rows and their means, the
validation data, the CV loss's derivatives from the predictions'.
"""

import numpy as np
import scipy.linalg
from scipy.linalg import lapack

from ..objectives.quadratic import quadratic_moments
from ..utils._array_api import to_numpy
from ._ridge_rows import (
    _centred_transpose,
    _column_means,
    _take,
    _training_rows,
    centre_kernel,
)

__all__ = ["choose_factorization"]

# The fold factorization: None lets choose_factorization decide by cost,
# "eigen", "tridiagonal" or "krylov" imposes one (a Krylov basis is tried
# for one target only, and kept only within its budget).
_FACTORIZATION = None
# Costs of a fold's factorizations of dimension m (n_val validation rows),
# in units of 5e-11 s, measured with one OpenBLAS thread for m from 50 to
# 2000: the tridiagonal reduction (sytrd) costs ~m^3, the eigendecomposition
# with vectors (syevd) ~4 m^3, and its read-out M = G U ~n_val m^2 (a
# matrix product). The reduction then pays for each alpha shared by the
# targets ~6e4 (~3 us of LAPACK calls: pttrf, pttrs), and for each target
# there ~500 m (the factorization and three solves) and ~5 m^2 (Q applied
# to the three columns, ormqr). A root search takes ~6 points (the best
# scan point's neighbours, 3-5 Newton steps).
_EIGEN_EXTRA = 3.0
_SYSTEM_COST = (6e4, 500.0, 5.0)
_ROOT_EVALUATIONS = 6
# The Krylov basis (one target): a Lanczos step of a system of dimension m
# costs ~8 (m^2 + 4 j m) units at step j (a product with S, then two
# Gram-Schmidt passes over the j vectors), and the steps stop once the
# solution at the smallest alpha of the search is known to _KRYLOV_TOL
# (relative). The attempt gives up (and the fold is reduced after all) when
# its steps would cost more than _KRYLOV_SHARE of the reduction's m^3, or
# when the error's decay over the last 2 * _KRYLOV_CHECK steps,
# extrapolated, reaches the tolerance only past that budget. Below _KRYLOV_MIN_SIZE the
# reduction costs less than the steps' calls.
_KRYLOV_TOL = 1e-10
_KRYLOV_SHARE = 0.6
_KRYLOV_CHECK = 10
_KRYLOV_MIN_SIZE = 500
# Folds whose compact forms cost at most this many multiply-adds each
# (n_val * rank^2) are evaluated together (CompactFolds).
_BATCH_SIZE = 1e6


def fold_training_data(fold):
    """``(X, Y, weight, one_target)`` of a fold's training problem: its data,
    its targets as a 2-D float array, its sample weights (None for ones) and
    whether the targets are 1-D."""
    inner = fold.inner
    y = np.asarray(to_numpy(inner.y), dtype=np.float64)
    weight = inner.sample_weight
    weight = None if weight is None else np.asarray(to_numpy(weight), float)
    return inner.model.X, y.reshape(len(y), -1), weight, y.ndim == 1


def fold_validation_data(fold):
    """``(Y_val, s_val, factor)`` of a fold's validation loss: the targets
    (2-D), the weights (ones by default) and the factor of
    ``F = factor * sum_i s_i ||r_i||^2`` (``scale / sum(s) / 2``)."""
    outer = fold.outer
    y_val = np.asarray(to_numpy(outer.y), dtype=np.float64)
    s_val = outer.sample_weight
    s_val = (
        np.ones(len(y_val))
        if s_val is None
        else np.asarray(to_numpy(s_val), dtype=np.float64)
    )
    return y_val.reshape(len(y_val), -1), s_val, outer.scale / s_val.sum() * 0.5


def diagonal_powers(d, C, alphas, n_powers):
    """``(diag(d) + alpha I)^{-k} C`` for ``k = 1..n_powers`` at each point
    (for each fold, when folds lead ``d`` and ``C``).

    Parameters
    ----------
    d : ndarray of shape ([K,] rank)
    C : ndarray of shape ([K,] rank, q)
    alphas : ndarray of shape (n_points, q)
        Each point's alpha of each column of ``C``.
    n_powers : int

    Returns
    -------
    ndarray of shape ([K,] rank, n_powers, n_points, q)
    """
    inverse = 1.0 / (d[..., None, None] + alphas)
    powers = [inverse * C[..., None, :]]
    for _ in range(n_powers - 1):
        powers.append(inverse * powers[-1])
    return np.stack(powers, axis=-3)


class FoldProblem:
    """What the closed-form folds share: a fold's training rows, the
    intercept's weighted means, its validation data, and the CV loss's
    derivatives from the validation predictions.

    Subclasses call :meth:`_training_data` first (it sets the attributes
    below, the means aside), then :meth:`_gram_system` or
    :meth:`_set_means` (the means).

    Attributes
    ----------
    one_target : bool
        Whether the targets are 1-D.
    fit_intercept : bool
    x_mean : ndarray of shape (n_features,)
        Weighted column means of the training rows (zeros without an
        intercept).
    y_mean : ndarray of shape (n_outputs,)
        Weighted means of the training targets (zeros without an intercept).
    Y_val : ndarray of shape (n_val, n_outputs)
    s_val : ndarray of shape (n_val,)
        Validation weights (ones by default).
    factor : float
        Factor of the fold's loss ``F = factor * sum_i s_i ||r_i||^2``.
    """

    def _training_data(self, fold, shared):
        """``(X, Y, weight, rows)``: the fold's data, its training targets
        (2-D) and weights (None for ones) on rows ``rows`` of ``X`` (None:
        all), those of ``shared`` (:meth:`SharedRows.products`) or, without
        it, the rows of positive weight."""
        X, Y, weight, self.one_target = fold_training_data(fold)
        self.fit_intercept = fold.inner.model.fit_intercept
        self.Y_val, self.s_val, self.factor = fold_validation_data(fold)
        rows = _training_rows(weight) if shared is None else shared[-1]
        if rows is not None:  # the fold's training rows of X
            Y, weight = Y[rows], weight[rows]
        if weight is not None and np.all(weight == 1.0):
            weight = None
        return X, Y, weight, rows

    def _set_means(self, X, rows, Y, weight):
        """Set the intercept's weighted means of rows ``rows`` of ``X`` and
        of ``Y`` (zeros without one); returns the weights (ones for None)."""
        s = np.ones(len(Y)) if weight is None else weight
        self.x_mean, self.y_mean = np.zeros(X.shape[1]), np.zeros(Y.shape[1])
        if self.fit_intercept:
            self.x_mean, self.y_mean = _column_means(X, rows, s), s @ Y / s.sum()
        return s

    def _gram_system(self, X, Y, weight, rows, shared):
        """``(A'A, A'B)`` of the centred, weighted training rows, and their
        means: the fold's share of the products of all rows (``shared`` of
        kind ``"gram"``), or the engine's quadratic moments (a sparse ``X``
        stays sparse)."""
        if shared is not None and shared[0] == "gram":
            self._set_means(X, rows, Y, weight)
            return shared[1], shared[2]
        moments = quadratic_moments(_take(X, rows), Y, weight, self.fit_intercept)
        self.x_mean, self.y_mean = np.zeros(X.shape[1]), np.zeros(Y.shape[1])
        if self.fit_intercept:
            self.x_mean, self.y_mean = moments.x_mean, moments.y_mean
        return moments.gram, moments.moment

    def loss_curve(self, alphas, every, residual, weight, extra=0.0, second=True):
        """``F`` and its first two derivatives in ``log alpha``, from the
        predictions' derivatives in alpha (:func:`loss_derivatives` with
        this fold's factor)."""
        return loss_derivatives(
            self.factor, alphas, every, residual, weight, extra, second
        )


def loss_derivatives(factor, alphas, every, residual, weight, extra=0.0, second=True):
    """``F = factor * sum_i s_i ||r_i||^2`` and its first two derivatives in
    ``log alpha``, from the predictions' derivatives in alpha.

    Parameters
    ----------
    factor : float or ndarray of shape (K, 1, 1)
        The factor of the loss (one per fold when folds lead the arrays).
    alphas : ndarray of shape (n_points, q)
    every : ndarray of shape ([K,] n_rows, n_parts, n_points, q)
        ``P``, ``-dP/dalpha`` and ``d2P/dalpha2 / 2`` (``n_parts`` 3, or
        2 without ``second``), in the coordinates of ``residual``.
    residual : ndarray of shape ([K,] n_rows, n_points, q)
        Residuals at the predictions ``P``.
    weight : ndarray of shape ([K,] n_rows, 1, 1) or float
        The rows' weights in the loss.
    extra : ndarray of shape ([K, 1,] q) or float, default=0.0
        The part of the weighted sum of squares no alpha reaches.
    second : bool, default=True
        False leaves the second derivative None.

    Returns
    -------
    Three arrays of shape ([K,] n_points, q), the last None unless
    ``second``.
    """
    weighted = weight * residual
    slope = -every[..., 1, :, :]
    values = factor * (np.sum(weighted * residual, axis=-3) + extra)
    first = 2 * factor * np.sum(weighted * slope, axis=-3)
    if not second:
        return values, alphas * first, None
    bend = 2 * every[..., 2, :, :]
    curvature = np.sum(weight * slope**2 + weighted * bend, axis=-3)
    curvature = 2 * factor * curvature
    # in log alpha: d/dt = alpha d/dalpha, d2/dt2 = alpha F' + alpha^2 F''
    return values, alphas * first, alphas * first + alphas**2 * curvature


def choose_factorization(size, n_val, n_targets, n_points, n_alphas, alpha_low=None):
    """``"krylov"``, ``"tridiagonal"`` or ``"eigen"`` for one fold's system.

    ``"krylov"`` (an attempt: :class:`_FoldPath` reduces the system when
    the Lanczos steps would cost more than a share of the reduction) for one
    target of a large system whose search stays above ``alpha_low``; else
    the cheaper of the reduction and the eigendecomposition.

    Parameters
    ----------
    size : int
        Dimension ``m`` of the fold's system (its Gram matrix or kernel).
    n_val : int
        Validation samples of the fold.
    n_targets : int
    n_points : int
        Points of the search at which every target shares one alpha (the
        scan).
    n_alphas : int
        1 for one alpha, ``n_targets`` for one per target (each target's
        root search then solves systems of its own).
    alpha_low : float or None, default=None
        The smallest alpha the search asks for; None rules out the Krylov
        basis (it is accurate above a given alpha only).
    """
    if size < 2:  # nothing to reduce
        return "eigen"
    if _FACTORIZATION is not None:
        return _FACTORIZATION
    if n_targets == 1 and alpha_low is not None and size >= _KRYLOV_MIN_SIZE:
        return "krylov"
    return _cheaper_factorization(size, n_val, n_targets, n_points, n_alphas)


def _cheaper_factorization(size, n_val, n_targets, n_points, n_alphas):
    """``"tridiagonal"`` or ``"eigen"``, by the cost model (the arguments
    of :func:`choose_factorization`)."""
    per_system, per_solve, per_lift = _SYSTEM_COST
    n_systems = n_points + _ROOT_EVALUATIONS * n_alphas
    columns = (n_points + _ROOT_EVALUATIONS) * n_targets
    eigen = _EIGEN_EXTRA * size**3 + n_val * size**2
    tridiagonal = n_systems * per_system + columns * size * (
        per_solve + per_lift * size
    )
    return "tridiagonal" if eigen > tridiagonal else "eigen"


def krylov_budget(size):
    """The most Lanczos steps worth trying on a system of dimension ``size``:
    the largest ``k`` with ``8 (k m^2 + 2 k^2 m) <= share * m^3`` (the cost
    model of ``_KRYLOV_SHARE``)."""
    share = _KRYLOV_SHARE
    return max(int(size * (np.sqrt(64.0 + 64.0 * share) - 8.0) / 32.0), 1)


def _krylov_error(diag, offdiag, alpha):
    """Ritz values and vectors of the Lanczos matrix ``T_k`` (``diag``,
    ``offdiag`` of length k, the last entry ``beta_k``), and the estimated
    relative error of the Krylov solution of ``(S + alpha I) x = b``.

    The Galerkin solution ``x_k = ||b|| Q_k y`` with ``y = (T_k + alpha
    I)^{-1} e_1`` leaves the residual ``||b|| beta_k |y_k|`` along the next
    Lanczos vector; the error ``(S + alpha I)^{-1} r`` is at most that over
    ``lambda_min + alpha``, estimated by the smallest Ritz value.
    """
    theta, Z = scipy.linalg.eigh_tridiagonal(diag, offdiag[:-1])
    theta = np.maximum(theta, 0.0)
    y = Z @ (Z[0] / (theta + alpha)) if theta[0] + alpha > 0 else None
    if y is None or not np.all(np.isfinite(y)):
        return theta, Z, np.inf
    error = offdiag[-1] * abs(y[-1]) / ((theta[0] + alpha) * np.linalg.norm(y))
    return theta, Z, error


def lanczos(system, b, alpha_low, max_steps, tol=_KRYLOV_TOL):
    """An orthonormal basis of the Krylov space of ``system`` from ``b`` in
    which ``(system + alpha I)^{-1} b`` is estimated to be known to ``tol``
    (relative, :func:`_krylov_error`) for every ``alpha >= alpha_low``.

    The Lanczos recurrence, each new vector orthogonalized against all the
    previous ones twice (classical Gram-Schmidt): the basis stays orthonormal
    to round-off, so ``T = Q' S Q`` and the shifted systems' residuals are
    what the recurrence says. The error is estimated every ``_KRYLOV_CHECK``
    steps at ``alpha_low`` (the worst conditioned shift; a Krylov space holds
    the solutions at larger alphas at least as accurately). The estimate
    divides the residual by the smallest Ritz value, which can lie far above
    an eigenvalue the space has not reached yet (one that ``b`` barely
    excites); the basis is accepted when two consecutive estimates pass
    (``_KRYLOV_CHECK`` more steps), or when the space is exhausted
    (``S Q = Q T``: exact).

    Parameters
    ----------
    system : ndarray of shape (m, m)
        Symmetric positive semi-definite.
    b : ndarray of shape (m,)
    alpha_low : float
        The smallest shift the basis must serve (0 allowed: the space must
        then be exhausted, or ``system`` well conditioned on it).
    max_steps : int
        The most steps worth taking (:func:`krylov_budget`).
    tol : float, default=_KRYLOV_TOL

    Returns
    -------
    basis : tuple or None
        ``(Q, theta, Z)``: the basis (k x m, its vectors as rows) and the
        eigendecomposition of ``T = Z diag(theta) Z'`` (``theta`` clipped at
        zero). None when the error would not reach ``tol`` within
        ``max_steps`` (extrapolated from its decay), or when ``b`` is zero or
        the recurrence meets a non-finite value.
    n_steps : int
        The steps taken (0 for a zero or non-finite ``b``).
    """
    norm = np.linalg.norm(b)
    if not (np.isfinite(norm) and norm > 0):
        return None, 0
    max_steps = min(max_steps, len(b))
    Q = np.empty((max_steps + 1, len(b)))
    diag, offdiag = np.empty(max_steps), np.empty(max_steps)
    Q[0] = b / norm
    errors, scale = {}, 0.0
    for j in range(max_steps):
        w = system @ Q[j]
        diag[j] = Q[j] @ w
        basis = Q[: j + 1]
        for _ in range(2):
            w -= basis.T @ (basis @ w)
        offdiag[j] = np.linalg.norm(w)
        k = j + 1
        if not (np.isfinite(diag[j]) and np.isfinite(offdiag[j])):
            return None, k
        scale = max(scale, abs(diag[j]), offdiag[j])
        exhausted = offdiag[j] <= np.finfo(float).eps * scale * np.sqrt(len(b))
        if exhausted or k % _KRYLOV_CHECK == 0:
            theta, Z, error = _krylov_error(diag[:k], offdiag[:k], alpha_low)
            confirmed = errors.get(k - _KRYLOV_CHECK, np.inf) <= tol
            if exhausted or (error <= tol and confirmed):
                return (Q[:k], theta, Z), k
            errors[k] = error
            # the estimate rises while the smallest Ritz value still falls:
            # judge its decay over two checks, from the third on
            previous = errors.get(k - 2 * _KRYLOV_CHECK)
            if previous is not None and error > tol:
                rate = np.log(error / previous) / (2 * _KRYLOV_CHECK)
                if not rate < 0 or k + np.log(tol / error) / rate > max_steps:
                    return None, k
        Q[k] = w / offdiag[j]
    return None, max_steps


def _eigh(system):
    """``(d, V)`` of a symmetric system (LAPACK ``syevd``, as
    ``numpy.linalg.eigh``, called directly: the wrapping costs more than the
    decomposition of a 10 x 10 system, five times per search on diabetes)."""
    system = np.asarray(system, dtype=np.float64)
    d, V, info = lapack.dsyevd(system, compute_v=1, lower=1)
    if info != 0:
        return np.linalg.eigh(system)  # numpy's error, or its own answer
    return d, V


def _below_diagonal(reduced):
    """The Householder reflectors of a lower ``sytrd`` of order m, in place.

    ``ormqr`` reads them from ``reduced[1:, :-1]``, a block that is not
    contiguous (copying it costs a sizeable share of the reduction: 30 ms of
    0.19 s for m = 1600). Read with the leading dimension m instead, the
    column-major buffer from its second element on is an m x (m - 1) matrix
    whose first m - 1 rows are that block: ``ormqr`` of an (m - 1)-row
    right-hand side never reads the last row.
    """
    m = reduced.shape[0]
    flat = reduced.ravel(order="F")  # a view: reduced is Fortran-ordered
    return flat[1 : 1 + m * (m - 1)].reshape((m, m - 1), order="F")


def _reflect(reflectors, tau, V, trans):
    """``Q V`` (``trans="N"``) or ``Q'V`` (``"T"``), ``Q = diag(1, H)`` the
    orthogonal factor of LAPACK's lower ``sytrd``, ``H`` the product of the
    Householder reflectors below its subdiagonal (applied as ``ormqr`` does)."""
    out = np.array(V, dtype=np.float64, order="F", ndmin=2)
    if out.shape[0] < 2 or out.shape[1] == 0:
        return out
    lwork = lapack.dormqr("L", trans, reflectors, tau, out[1:], -1)[1]
    part, _, info = lapack.dormqr(
        "L", trans, reflectors, tau, out[1:], int(np.ravel(lwork)[0])
    )
    if info != 0:  # pragma: no cover - argument errors only
        raise np.linalg.LinAlgError(f"ormqr failed (info={info})")
    out[1:] = part
    return out


class _FoldPath(FoldProblem):
    """The factorization of one fold: ``h`` and ``h'`` at any alpha.

    The fold's system ``S`` (``A'A`` of dimension p, or the kernel ``AA'`` of
    dimension n_train), right-hand sides ``R`` (``A'B``, or ``B``) and
    read-out ``G`` (the centred validation rows, or their weighted cross
    products with the training rows) give the centred validation predictions
    ``G (S + alpha I)^{-1} R``. One orthogonal factor ``S = Q T Q'`` serves
    every alpha: with ``C = Q'R`` computed once, the predictions are
    ``G Q (T + alpha I)^{-1} C``, and the derivatives in alpha take the next
    powers of the same inverse. ``T`` is

    - ``"eigen"``: diagonal (``S = U diag(d) U'``): any number of alphas,
      one per target included, at the price of a diagonal scaling and a
      product with ``M = G U``, formed once;
    - ``"tridiagonal"``: tridiagonal (LAPACK ``sytrd``, about a quarter of
      the eigendecomposition's work): each alpha then costs one Cholesky
      factorization of ``T + alpha I`` and a triangular solve per power, O(m)
      each, and ``Q`` (its Householder reflectors) is applied to the
      solutions (``G Q`` would cost more than the columns a search asks
      for). Should ``T + alpha I`` not be numerically positive definite
      (``S`` singular to round-off, alpha below it), ``T`` is
      eigendecomposed (a fraction of the work again) and the path continues
      as ``"eigen"``;
    - ``"krylov"`` (one target): ``Q`` spans the Krylov space of ``S`` from
      the right-hand side, as many Lanczos steps as give the solution at
      ``alpha_low`` to ``_KRYLOV_TOL`` (:func:`lanczos`), and ``T = Q'SQ``
      is diagonalized: then as ``"eigen"``, of that rank. The solutions at
      every alpha lie in that space (shifts keep Krylov spaces), so the
      path is exact to that tolerance for every alpha at or above
      ``alpha_low`` (not below it). Should the steps not reach the tolerance
      within :func:`krylov_budget`, the fold is reduced or eigendecomposed
      after all (the cheaper, as without the attempt).

    Parameters
    ----------
    fold : Fold
    shared : tuple or None, default=None
        The fold's products computed from all the rows
        (:meth:`SharedRows.products`), or None to compute the fold's own.
    factorization : {"eigen", "tridiagonal", "krylov"} or None, default=None
        None: :func:`choose_factorization` for ``workload``.
    workload : tuple of int, default=(25, 1)
        ``(n_points, n_alphas)`` of :func:`choose_factorization`.
    alpha_low : float or None, default=None
        The smallest alpha asked for (the Krylov basis's accuracy holds from
        there up). None: ``"krylov"`` is not chosen, and an imposed one
        holds for every alpha >= 0 (that is, gives up unless ``S`` is well
        conditioned on the targets' space).

    Attributes
    ----------
    factorization : str
        The factorization in use: ``"eigen"``, ``"tridiagonal"`` or
        ``"krylov"``.
    krylov_steps : int or None
        The Lanczos steps taken, kept or not (None: none tried).
    rank : int
        Dimension of the factorization's basis: the system's, or the
        Krylov basis's (fewer).
    """

    def __init__(
        self, fold, shared=None, factorization=None, workload=(25, 1), alpha_low=None
    ):
        X, Y, weight, rows = self._training_data(fold, shared)
        self._X = self._rows = self._root = None  # the kernel's training data
        if len(Y) >= X.shape[1]:
            system, right = self._gram_system(X, Y, weight, rows, shared)
            readout = to_numpy(fold.outer.model.X) - self.x_mean
        else:
            kernel = shared is not None and shared[0] == "kernel"
            blocks = shared[1:-1] if kernel else None
            system, right, readout = self._kernel_system(
                X, rows, fold.outer.model.X, Y, weight, blocks
            )
        if factorization is None or len(system) < 2:
            factorization = choose_factorization(
                len(system), len(readout), Y.shape[1], *workload, alpha_low
            )
        self.krylov_steps = None
        self.rank = len(system)
        self._basis = self._reflectors = self.d = None
        if factorization == "krylov":
            krylov = None
            if Y.shape[1] == 1:
                budget = krylov_budget(len(system))
                low = 0.0 if alpha_low is None else float(alpha_low)
                krylov, steps = lanczos(system, right[:, 0], low, budget)
                # (a zero target has no Krylov space: nothing was tried)
                self.krylov_steps = steps or None
            if krylov is None:  # the cheaper of the others
                factorization = _cheaper_factorization(
                    len(system), len(readout), Y.shape[1], *workload
                )
            else:
                Q, theta, Z = krylov
                self.d, self._basis = theta, Q.T @ Z
                self.rank = len(theta)
        self.factorization = factorization
        if factorization == "eigen":
            d, self._basis = _eigh(system)
            self.d = np.maximum(d, 0.0)
        if factorization in ("eigen", "krylov"):
            self.C = self._basis.T @ right
            self.M = readout @ self._basis
        elif factorization == "tridiagonal":
            # S symmetric: S' is S, Fortran-ordered, and S is the fold's own
            # array (overwritten by the reduction)
            system = np.asarray(system, dtype=np.float64)
            lwork = int(lapack.dsytrd_lwork(len(system), lower=1)[0])
            reduced, diag, offdiag, tau, info = lapack.dsytrd(
                system.T, lower=1, lwork=lwork, overwrite_a=1
            )
            if info != 0:  # pragma: no cover - argument errors only
                raise np.linalg.LinAlgError(f"sytrd failed (info={info})")
            self._tridiagonal = (diag, offdiag)
            self._reflectors = (_below_diagonal(reduced), tau)
            del system, reduced
            self.C = _reflect(*self._reflectors, right, "T")
            self.M, self._readout = None, readout  # G (Q z), never G Q
        else:
            raise ValueError(
                "factorization must be 'eigen', 'tridiagonal' or 'krylov', got "
                f"{factorization!r}."
            )
        # built when many points are asked at once (with M)
        self._compact = None if self.M is not None else False
        self._lifted = {}  # Q z of points evaluated, by alpha

    def _kernel_system(self, X, rows, X_val, Y, weight, blocks):
        """More features than samples: the fold's weighted kernel ``AA'``,
        ``B`` and the validation rows' weighted cross products.

        ``Z = X - centre`` (the fold's own mean, or the shared centre of all
        rows); the weighted fold mean of ``Z`` is ``m = Z's / S``, and the
        kernel of the fold-centred rows follows from ``ZZ'`` without another
        copy: ``(Z - 1m')(Z - 1m')' = ZZ' - u1' - 1u' + c`` with
        ``u = ZZ's / S``, ``c = s'u / S`` (the same for the validation
        rows' cross products, with ``v = Z_val Z's / S``).
        """
        s = self._set_means(X, rows, Y, weight)
        if blocks is None:
            Z = to_numpy(_take(X, rows)) - self.x_mean
            kernel, cross = Z @ Z.T, (to_numpy(X_val) - self.x_mean) @ Z.T
            del Z
        else:  # blocks of the shared kernel: copies of their own
            kernel, cross = blocks
        if self.fit_intercept:
            v = cross @ s / s.sum()
            u, c = centre_kernel(kernel, s)
            cross -= v[:, None]
            cross -= u[None, :] - c
        self._X, self._rows = X, rows
        right = Y - self.y_mean
        if weight is not None:
            self._root = root = np.sqrt(weight)
            kernel *= root[:, None]
            kernel *= root[None, :]
            cross *= root[None, :]
            right *= root[:, None]
        return kernel, right, cross

    def _powers(self, alphas, n_powers):
        """``(T + alpha I)^{-k} C`` for ``k = 1..n_powers`` at each point,
        shape (rank, n_powers, n_points, q); ``alphas`` of shape
        (n_points, q)."""
        n_points, q = alphas.shape
        if self.d is not None:
            return diagonal_powers(self.d, self.C, alphas, n_powers)
        diag, offdiag = self._tridiagonal
        out = np.empty((self.rank, n_powers, n_points, q))
        for i, row in enumerate(alphas):
            # targets that share an alpha share its factorization
            values, index = np.unique(row, return_inverse=True)
            for j, alpha in enumerate(values):
                columns = slice(None) if len(values) == 1 else index == j
                factor_d, factor_e, info = lapack.dpttrf(diag + alpha, offdiag)
                if info != 0:
                    self._diagonalize()
                    return self._powers(alphas, n_powers)
                z = self.C[:, columns]
                for k in range(n_powers):
                    z = lapack.dpttrs(factor_d, factor_e, z)[0]
                    out[:, k, i, columns] = z
        return out

    def _diagonalize(self):
        """``T = Z diag(d) Z'``: continue as the eigen path (``d`` clipped at
        zero, as there)."""
        d, Z = scipy.linalg.eigh_tridiagonal(*self._tridiagonal)
        self.d = np.maximum(d, 0.0)
        self.C, self._basis = Z.T @ self.C, Z
        self.M, self._readout = self._readout @ self._lift(np.eye(self.rank)), None
        self._compact = None
        self.factorization = "eigen"

    def _lift(self, V):
        """``Q V``: coordinates in the factorization's basis to those of ``S``."""
        if self._basis is not None:
            V = self._basis @ V
        if self._reflectors is not None:
            V = _reflect(*self._reflectors, V, "N")
        return V

    def _remember(self, alphas, lifted):
        """Keep ``Q z`` of each point, shape (m, n_points, q) (``m`` the
        system's dimension), for its predictions and solutions (asked for
        after the search)."""
        for row, column in zip(alphas, np.moveaxis(lifted, 1, 0)):
            self._lifted[row.tobytes()] = column

    def _lifted_columns(self, alphas):
        """``Q (T + alpha I)^{-1} C`` of every point side by side, shape
        (m, n_points * q) (``m`` the system's dimension): one matrix product
        then serves all points."""
        alphas = np.asarray(alphas, dtype=np.float64).reshape(len(alphas), -1)
        missing = [
            i for i, row in enumerate(alphas) if row.tobytes() not in self._lifted
        ]
        if missing:
            z = self._powers(alphas[missing], 1)[:, 0]
            lifted = self._lift(z.reshape(self.rank, -1))
            lifted = lifted.reshape((len(lifted),) + z.shape[1:])
            self._remember(alphas[missing], lifted)
        return np.concatenate([self._lifted[row.tobytes()] for row in alphas], axis=1)

    def curve(self, alphas, second=True):
        """``F_t`` and its first two derivatives in ``log alpha_t``, at many alphas.

        ``alphas`` has shape (n_points, q); returns three arrays of that shape
        (the second derivative None unless ``second``), from one matrix
        product for all points.
        """
        alphas = np.asarray(alphas, dtype=np.float64)
        n_points, q = alphas.shape
        # predictions P = M z1, dP/dalpha = -M z2, d2P/dalpha2 = 2 M z3 with
        # z_k = (T + alpha I)^{-k} C
        n_parts = 3 if second else 2
        stacked = self._powers(alphas, n_parts).reshape(self.rank, -1)
        rank, n_val = self.rank, len(self.Y_val)
        if self._compact is None and stacked.shape[1] > 2 * rank:
            self.compact()
        if self._compact:
            # weighted residuals in the basis of R: ||R z - u||^2 + the part
            # of the targets no alpha reaches (sums of squares: no cancellation)
            R, u, floor = self._compact
            every = (R @ stacked).reshape(rank, n_parts, n_points, q)
            residual = every[:, 0] - u[:, None, :]
            return self.loss_curve(alphas, every, residual, 1.0, floor, second)
        if self.M is not None:
            every = self.M @ stacked
        else:
            lifted = self._lift(stacked)
            self._remember(alphas, lifted.reshape(rank, n_parts, n_points, q)[:, 0])
            every = self._readout @ lifted
        every = every.reshape(n_val, n_parts, n_points, q)
        residual = every[:, 0] + self.y_mean - self.Y_val[:, None, :]
        weight = self.s_val[:, None, None]
        return self.loss_curve(alphas, every, residual, weight, 0.0, second)

    def compact(self):
        """The compact form of :meth:`_compact_form` (computed once), or None
        where it does not apply (a reduced fold, or no more validation rows
        than the rank)."""
        if self._compact is None and self.M is not None and len(self.Y_val) > self.rank:
            self._compact = self._compact_form()
        return self._compact or None

    def _compact_form(self):
        """``(R, u, floor)`` with ``sqrt(s_val) M = QR`` (reduced QR),
        ``u = Q' sqrt(s_val) (Y_val - y_mean)`` and ``floor`` the targets'
        weighted sum of squares outside ``range(M)``, per target.

        Then the weighted squared residuals at any alpha are
        ``||R z - u||^2 + floor`` with ``z = (T + alpha I)^{-1} C``: many points
        and targets cost ``rank^2`` each instead of ``n_val * rank``, after
        one QR (worth it when the columns outnumber twice the rank).

        One Householder QR of ``[sqrt(s_val) M, target]`` gives all three
        without forming ``Q``: its triangle is ``[[R, u], [0, V]]``, and the
        targets' parts outside ``range(M)`` have the norms of ``V``'s columns
        (sums of squares, as for a residual formed explicitly).
        """
        root = np.sqrt(self.s_val)[:, None]
        target = root * (self.Y_val - self.y_mean)
        rank = self.rank
        # LAPACK directly: numpy.linalg.qr(mode="r") gives the same triangle
        # (the same dgeqrf) in 21 us against 15 us on diabetes' folds (88 x
        # 12, timeit, session script at a36c070), on a path bound by overhead
        reduced, _, _, info = lapack.dgeqrf(np.hstack([root * self.M, target]))
        if info != 0:  # pragma: no cover - argument errors only
            raise np.linalg.LinAlgError(f"geqrf failed (info={info})")
        triangle = np.triu(reduced[: reduced.shape[1]])
        R, u = triangle[:rank, :rank], triangle[:rank, rank:]
        floor = np.sum(triangle[rank:, rank:] ** 2, axis=0)
        return R, u, floor

    def predictions(self, alphas):
        """Validation predictions at each of ``alphas`` (shape (n_points, q)),
        shape (n_points, n_val, q), from one matrix product for all points."""
        alphas = np.asarray(alphas, dtype=np.float64).reshape(len(alphas), -1)
        if self.M is not None:
            every = self.M @ self._powers(alphas, 1).reshape(self.rank, -1)
        else:
            every = self._readout @ self._lifted_columns(alphas)
        # the points' columns side by side: (n_val, n_points * q)
        every = every.reshape(len(every), len(alphas), -1).transpose(1, 0, 2)
        return every + self.y_mean

    def solutions(self, alphas):
        """``(coef, intercept)`` in the engine's layout at each of ``alphas``.

        ``alphas`` has shape (n_points, q); the coefficients of all points are
        computed with one matrix product.
        """
        q = self.C.shape[1]
        coefs = self._lifted_columns(alphas)
        if self._X is not None:  # the kernel's: A' coefs with A = root (X - x_mean)
            if self._root is not None:
                coefs = self._root[:, None] * coefs
            coefs = _centred_transpose(self._X, self.x_mean, coefs, self._rows)
        out = []
        for k in range(len(alphas)):
            coef = coefs[:, k * q : (k + 1) * q]
            intercept = self.y_mean - self.x_mean @ coef if self.fit_intercept else None
            out.append((coef[:, 0] if self.one_target else coef, intercept))
        return out


class CompactFolds:
    """Folds in compact form (:meth:`_FoldPath.compact`) of one rank and
    number of targets: their curves in one computation.

    With small systems (a few features), each fold's :meth:`_FoldPath.curve`
    costs more in calls than in arithmetic; stacked, the folds' diagonal
    scalings and products with ``R`` are one batched product per point set.
    :meth:`of` gives None where the folds do not qualify.
    """

    def __init__(self, paths, forms):
        self.d = np.stack([path.d for path in paths])  # (K, r)
        self.C = np.stack([path.C for path in paths])  # (K, r, q)
        self.R = np.stack([form[0] for form in forms])  # (K, r, r)
        self.u = np.stack([form[1] for form in forms])[:, :, None, :]
        self.floor = np.stack([form[2] for form in forms])[:, None, :]
        self.factor = np.array([path.factor for path in paths])[:, None, None]

    @classmethod
    def of(cls, paths):
        """The folds' batch, or None unless every fold has a compact form
        of one shape."""
        # the compact forms' QR factorizations cost n_val * rank^2 each: only
        # for folds small enough that calls, not flops, set the curves' cost
        small = all(
            path.M is not None and len(path.Y_val) * path.rank**2 <= _BATCH_SIZE
            for path in paths
        )
        forms = [path.compact() for path in paths] if small else [None]
        if any(form is None for form in forms):
            return None
        if len({(form[0].shape, form[1].shape) for form in forms}) != 1:
            return None
        return cls(paths, forms)

    def curves(self, alphas, second=True):
        """Every fold's ``F_t`` and derivatives in ``log alpha_t`` at
        ``alphas`` (shape (n_points, q)): three arrays of shape (K,
        n_points, q), the last None unless ``second``."""
        alphas = np.asarray(alphas, dtype=np.float64)
        K, rank = self.d.shape
        # (K, r, n_parts, n_points, q)
        stacked = diagonal_powers(self.d, self.C, alphas, 3 if second else 2)
        every = np.matmul(self.R, stacked.reshape(K, rank, -1))
        every = every.reshape(stacked.shape)
        residual = every[:, :, 0] - self.u
        return loss_derivatives(
            self.factor, alphas, every, residual, 1.0, self.floor, second
        )
