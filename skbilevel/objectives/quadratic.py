"""The squared loss as a quadratic in ``w``: its ``lambda``-free moments.

With the squared loss the inner objective of a fold,

    G(w, lambda) = 1/2 sum_i s_i ||x_i' W + b - y_i||^2 + 1/2 sum_jk c_jk W_jk^2,

is quadratic in ``w = (W, b)`` (``W`` of shape (p, q), ``b`` of shape (q,),
``c_jk = exp(lambda_{g(j, k)})``). Its Hessian does not depend on ``w`` and is
block-diagonal over the outputs; the block of output ``k`` is

    H_k = [[X'SX + diag(c_k), X's], [s'X, s'1]].

Eliminating the unpenalized intercept (the Schur complement of ``s'1``) centres
the design at the weighted means ``xbar = X's / s'1``:
``X'SX - (s'1) xbar xbar' = Xc'SXc``, so ``H_k (v_W, v_b) = (r_W, r_b)`` is

    (Xc'SXc + diag(c_k)) v_W = r_W - xbar r_b,    v_b = r_b / s'1 - xbar' v_W,

and the minimizer of ``G`` is ``W_k = (Xc'SXc + diag(c_k))^{-1} Xc'S(y_k - ybar_k)``,
``b_k = ybar_k - xbar' W_k``. :func:`quadratic_moments` computes what does not
depend on ``lambda``, once per fold, in float64.
"""

from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

__all__ = ["QuadraticMoments", "centred_products", "quadratic_moments"]

# Rows of a dense X centred and multiplied at a time: 2**20 float64 values
# (8 MB) per block bounds the copy whatever n.
_BLOCK_VALUES = 2**20


class QuadraticMoments(NamedTuple):
    """The ``lambda``-free parts of a fold's squared-loss objective (float64).

    Attributes
    ----------
    gram : ndarray of shape (n_features, n_features)
        ``Xc'SXc``: the weighted Gram matrix of the design, centred at the
        weighted means when there is an intercept.
    moment : ndarray of shape (n_features, n_outputs)
        ``Xc'S(Y - ybar)`` (``X'SY`` without intercept).
    x_mean : ndarray of shape (n_features,) or None
        Weighted mean of the rows of ``X`` (None without intercept).
    y_mean : ndarray of shape (n_outputs,) or None
        Weighted mean of the targets (None without intercept).
    weight_total : float
        ``s'1``.
    """

    gram: np.ndarray
    moment: np.ndarray
    x_mean: object
    y_mean: object
    weight_total: float


def centred_products(X, centre, weight=None, targets=None):
    """``Z'SZ`` and ``Z'S targets`` with ``Z = X - centre``, for a dense ``X``.

    By blocks of rows: the centred copy of a block, never of all of ``X``
    (exact for any offset of the features; ``centre`` may be any vector, or
    None for no centring). Each block is scaled by ``sqrt(s)`` so that its
    Gram matrix is one symmetric product.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    centre : ndarray of shape (n_features,) or None
    weight : ndarray of shape (n_samples,) or None
        Non-negative sample weights ``s`` (None: all ones).
    targets : ndarray of shape (n_samples, n_outputs) or None

    Returns
    -------
    gram : ndarray of shape (n_features, n_features)
    cross : ndarray of shape (n_features, n_outputs) or None
        None without ``targets``.
    """
    n_samples, n_features = X.shape
    gram = np.zeros((n_features, n_features))
    cross = None if targets is None else np.zeros((n_features, targets.shape[1]))
    root = None if weight is None else np.sqrt(weight)[:, None]
    block = max(1, _BLOCK_VALUES // max(n_features, 1))
    for start in range(0, n_samples, block):
        rows = slice(start, start + block)
        Z = np.asarray(X[rows], dtype=np.float64)
        if centre is not None:
            Z = Z - centre
        if root is not None:
            Z = root[rows] * Z
        gram += Z.T @ Z
        if targets is not None:
            part = targets[rows] if root is None else root[rows] * targets[rows]
            cross += Z.T @ part
    return gram, cross


def _sparse_gram(X, weight, x_mean, weight_total):
    """``X'SX - (s'1) xbar xbar'`` of a sparse ``X`` (centring would densify it)."""
    X = sp.csr_matrix(X, dtype=np.float64)
    weighted = X if weight is None else sp.csr_matrix(X.multiply(weight[:, None]))
    gram = (X.T @ weighted).toarray()
    if x_mean is not None:
        gram -= weight_total * np.outer(x_mean, x_mean)
    return gram


def quadratic_moments(X, y, sample_weight=None, fit_intercept=True):
    """:class:`QuadraticMoments` of the squared loss on ``(X, y)``.

    Parameters
    ----------
    X : ndarray or scipy.sparse matrix of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
    sample_weight : ndarray of shape (n_samples,) or None
    fit_intercept : bool, default=True

    Returns
    -------
    QuadraticMoments
    """
    n_samples = X.shape[0]
    Y = np.asarray(y, dtype=np.float64).reshape(n_samples, -1)
    weight = None
    if sample_weight is not None:
        weight = np.asarray(sample_weight, dtype=np.float64)
    weight_total = float(n_samples) if weight is None else float(weight.sum())
    x_mean = y_mean = None
    if fit_intercept:
        ones = np.ones(n_samples) if weight is None else weight
        x_mean = np.asarray(X.T @ ones, dtype=np.float64).reshape(-1) / weight_total
        y_mean = ones @ Y / weight_total
        Y = Y - y_mean
    # s'(Y - ybar) = 0, so Xc'S(Y - ybar) = X'S(Y - ybar): no centred copy of X.
    weighted_Y = Y if weight is None else weight[:, None] * Y
    moment = np.asarray(X.T @ weighted_Y, dtype=np.float64)
    if sp.issparse(X):
        gram = _sparse_gram(X, weight, x_mean, weight_total)
    else:
        gram = centred_products(X, x_mean, weight)[0]
    return QuadraticMoments(gram, moment, x_mean, y_mean, weight_total)
