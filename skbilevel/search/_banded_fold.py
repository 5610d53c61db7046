"""One fold of the banded ridge search: its CV curves under band weights.

Ridge with one penalty per target ``t`` and feature band ``b``,

    w_t = argmin ||A w - b_t||^2 + sum_b alpha_tb ||w_(b)||^2,

is plain ridge on rescaled columns when the band penalties of a target are
one scalar over band weights: ``alpha_tb = alpha_t / g_b``. With ``D`` the
diagonal of ``sqrt(g_(band of j))`` and ``Z = A D``, ``w_t = D v_t`` where
``v_t`` is the ridge solution of ``Z`` at ``alpha_t``. So one candidate
``g`` (shared by the targets) and one eigendecomposition of the fold's
scaled Gram ``D A'A D = V diag(d) V'`` (no new product over the data) give
every target's exact K-fold CV curve in its own ``alpha_t``, as
:class:`~skbilevel.search._ridge_factor._FoldPath` gives it for ``g = 1``.

The derivatives of a target's CV loss in its band log-penalties
``lambda_tb = log alpha_tb`` come from the same factorization. The fold's
Hessian ``H = A'A + diag(alpha_t(band))`` is ``D^{-1} (V diag(d + alpha_t)
V') D^{-1}``, so ``H^{-1} = B diag(1 / (d + alpha_t)) B'`` with ``B = D V``
(the candidate's ``basis``). With ``F`` the fold's validation loss, ``v =
H^{-1} grad_w F`` and ``P_b`` the projection on band ``b``:

    dF/dlambda_b = -alpha_b w'P_b v,
    d2F/dlambda_b dlambda_c = delta_bc dF/dlambda_b
        + alpha_b alpha_c (2 f (X q_b)'S(X q_c) + v'P_c q_b + v'P_b q_c),

with ``q_b = H^{-1} P_b w`` and ``F = f sum_i s_i r_i^2`` (``X`` the centred
validation rows, ``S`` their weights). Every ``H^{-1}`` is a diagonal
scaling in the candidate's basis.
"""

import numpy as np

from ..utils._array_api import to_numpy
from ._ridge_factor import FoldProblem, diagonal_powers

__all__ = ["BandedFold"]


class BandedFold(FoldProblem):
    """A fold's ``lambda``-free products, factored again for each candidate.

    Parameters
    ----------
    fold : Fold
        Engine fold of the squared loss (NumPy data).
    band_index : ndarray of int of shape (n_features,)
        Band (``0..n_bands-1``) of each feature.
    shared : tuple or None, default=None
        ``("gram", A'A, A'B, rows)`` from :meth:`SharedRows.products`, or None
        to compute the fold's own.
    """

    def __init__(self, fold, band_index, shared=None):
        X, Y, weight, rows = self._training_data(fold, shared)
        self.gram, self.moment = self._gram_system(X, Y, weight, rows, shared)
        self.readout = np.asarray(to_numpy(fold.outer.model.X), float) - self.x_mean
        p = X.shape[1]
        self.band_index = np.asarray(band_index)
        n_bands = int(self.band_index.max()) + 1
        self.bands = np.zeros((n_bands, p))
        self.bands[self.band_index, np.arange(p)] = 1.0
        self.band_rows = [np.flatnonzero(self.band_index == b) for b in range(n_bands)]

    def candidate(self, log_weights):
        """The fold factored at band weights ``exp(log_weights)`` (n_bands,)."""
        return _Candidate(self, np.asarray(log_weights, dtype=np.float64))


def scaled_eigh(gram, scale):
    """``D A'A D = V diag(d) V'`` with ``D = diag(scale)``: ``(d, D V)``,
    ``d`` clipped at zero (positive semi-definite: round-off below)."""
    system = gram * scale[:, None]
    system *= scale[None, :]
    d, V = np.linalg.eigh(system)
    return np.maximum(d, 0.0), scale[:, None] * V


class _Candidate:
    """One fold's scaled Gram ``D A'A D = V diag(d) V'`` at one band weighting.

    ``basis = D V`` maps the eigen-coordinates to the coefficients, ``C =
    V'D A'B`` and ``M = X basis`` (the centred validation rows): a target's
    coefficients at ``alpha`` are ``basis (C / (d + alpha))``, its centred
    validation predictions ``M (C / (d + alpha))``.
    """

    def __init__(self, fold, log_weights):
        self.fold, self.log_weights = fold, log_weights
        scale = np.exp(0.5 * log_weights[fold.band_index])
        self.d, self.basis = scaled_eigh(fold.gram, scale)
        self.C = self.basis.T @ fold.moment
        self.M = fold.readout @ self.basis

    def curve(self, alphas, second=True, targets=slice(None)):
        """The CV loss ``F_t`` of ``targets`` and its derivatives in ``log alpha_t``.

        ``alphas`` has shape (n_points, n) for the n targets; returns three
        arrays of that shape (the second derivative None unless ``second``).
        """
        fold = self.fold
        n_points, q = alphas.shape
        n_parts = 3 if second else 2
        powers = diagonal_powers(self.d, self.C[:, targets], alphas, n_parts)
        stacked = powers.reshape(len(self.d), -1)
        every = (self.M @ stacked).reshape(len(fold.Y_val), n_parts, n_points, q)
        Y_val = fold.Y_val[:, targets] - fold.y_mean[targets]
        residual = every[:, 0] - Y_val[:, None, :]
        weight = fold.s_val[:, None, None]
        return fold.loss_curve(alphas, every, residual, weight, 0.0, second)

    def solution(self, alpha, targets):
        """Coefficients (p, n) and centred validation predictions (n_val, n)
        of ``targets`` at their ``alpha`` (n,): what :meth:`band_derivatives`
        reads (with the same rounding: the inverse of ``d + alpha`` times
        ``C``, as its other products)."""
        z = 1.0 / (self.d[:, None] + alpha[None, :]) * self.C[:, targets]
        return self.basis @ z, self.M @ z

    def band_derivatives(self, alpha, targets, hessian=True, solution=None):
        """Gradient (n, n_bands) and Hessian (n, n_bands, n_bands) of the
        fold's loss of ``targets`` in their ``log alpha_tb`` (see the module
        docstring), at ``alpha_tb = alpha_t / g_b``.

        Parameters
        ----------
        alpha : ndarray of shape (n,)
        targets : ndarray of int of shape (n,) or slice
        hessian : bool, default=True
            False leaves the Hessian None.
        solution : tuple or None, default=None
            :meth:`solution` at the same point when the caller has it (None:
            computed here).
        """
        fold = self.fold
        w, centred = self.solution(alpha, targets) if solution is None else solution
        inverse = 1.0 / (self.d[:, None] + alpha[None, :])
        residual = centred + fold.y_mean[targets] - fold.Y_val[:, targets]
        weighted = fold.s_val[:, None] * residual
        u = 2 * fold.factor * inverse * (self.M.T @ weighted)
        v = self.basis @ u
        band_alpha = alpha[:, None] * np.exp(-self.log_weights)[None, :]  # (n, B)
        grad = -band_alpha * (fold.bands @ (w * v)).T
        if not hessian:
            return grad, None
        # Y_b = diag(1 / (d + alpha)) B'P_b w, and B'P_c v, for every band
        Y = np.stack([inverse * (self.basis[r].T @ w[r]) for r in fold.band_rows])
        Pv = np.stack([self.basis[r].T @ v[r] for r in fold.band_rows])
        XQ = self.M @ Y  # X q_b for every band, (B, n_val, n)
        data = 2 * fold.factor * np.einsum("bit,i,cit->tbc", XQ, fold.s_val, XQ)
        cross = np.einsum("ckt,bkt->tbc", Pv, Y)  # v'P_c q_b
        hess = (
            band_alpha[:, :, None]
            * band_alpha[:, None, :]
            * (data + cross + cross.transpose(0, 2, 1))
        )
        n_bands = grad.shape[1]
        hess[:, np.arange(n_bands), np.arange(n_bands)] += grad
        return grad, hess
