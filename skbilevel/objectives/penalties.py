"""The L2 penalty with log-space strengths: the hyperparameters live here.

``P(coef, lambda) = 1/2 sum_j exp(lambda_{g(j)}) coef_j^2`` where ``g`` maps each
coefficient to its hyperparameter: every coefficient to 0 (one strength for all,
scikit-learn's ``1 / C``), feature ``j`` to ``j`` (one per feature), or a
user-given group id. For multinomial and multi-target models the coefficients
form a ``(n_features, n_outputs)`` array, flattened row-major; a per-feature or
per-group strength is shared by the outputs of a feature, a per-output strength
(``Ridge`` with one ``alpha`` per target) by the features of an output.

Keeping ``lambda`` in log space makes it unconstrained and puts the geometric
grids of scikit-learn (``np.logspace``) on an even footing.
"""

import numpy as np

from ..utils._array_api import device_of, get_namespace

__all__ = ["L2Penalty"]


class L2Penalty:
    """L2 penalty ``1/2 sum_j exp(lambda_{g(j)}) w_j^2`` on flattened coefficients.

    Parameters
    ----------
    group_map : array-like of int of shape (n_coef,) or None
        Hyperparameter index of each (flattened) coefficient. ``None`` means one
        hyperparameter for all coefficients.
    n_hyper : int or None
        Number of hyperparameters; ``max(group_map) + 1`` by default. Every
        index in ``range(n_hyper)`` must be used by at least one coefficient.

    Notes
    -----
    The methods take ``coef`` (the flattened coefficients, without intercepts)
    and ``lam`` (array of shape (n_hyper,)) in the array namespace of the data;
    :meth:`strength`, the diagonal of ``d2P / dcoef2``, depends on ``lam`` only.
    Use the constructors :meth:`scalar`, :meth:`per_feature`, :meth:`per_output`
    and :meth:`from_groups` rather than building a map by hand.
    """

    def __init__(self, group_map=None, n_hyper=None):
        if group_map is None:
            self.group_map = None
            self.n_hyper = 1
            self._identity = False
            return
        group_map = np.asarray(group_map).reshape(-1)
        if group_map.size == 0 or not np.issubdtype(group_map.dtype, np.integer):
            raise ValueError("group_map must be a non-empty array of integers.")
        if group_map.min() < 0:
            raise ValueError("group_map must hold non-negative hyperparameter indices.")
        n_used = int(group_map.max()) + 1
        self.n_hyper = n_used if n_hyper is None else int(n_hyper)
        counts = np.bincount(group_map, minlength=self.n_hyper)
        if counts.size > self.n_hyper or np.any(counts == 0):
            raise ValueError(
                f"group_map must use every hyperparameter index in "
                f"range({self.n_hyper}) and no other."
            )
        self.group_map = group_map.astype(np.int64)
        self._identity = bool(np.array_equal(self.group_map, np.arange(group_map.size)))
        self._device_maps = {}

    # -- constructors -----------------------------------------------------------
    @classmethod
    def scalar(cls):
        """One strength for every coefficient."""
        return cls(None)

    @classmethod
    def per_feature(cls, n_features, n_outputs=1):
        """One strength per feature, shared by the outputs of that feature."""
        return cls(np.repeat(np.arange(n_features), n_outputs), n_features)

    @classmethod
    def per_output(cls, n_features, n_outputs):
        """One strength per output (class or target), shared by its features."""
        return cls(np.tile(np.arange(n_outputs), n_features), n_outputs)

    @classmethod
    def from_groups(cls, groups, n_outputs=1):
        """One strength per group; ``groups[j]`` is the group label of feature ``j``.

        Labels may be any sortable values; they are mapped to ``0..n_groups-1``
        in sorted order (``np.unique``).
        """
        labels, index = np.unique(np.asarray(groups), return_inverse=True)
        return cls(np.repeat(index.reshape(-1), n_outputs), labels.size)

    # -- internals ------------------------------------------------------------
    def _map_on(self, xp, like):
        """The group map as an index array of ``xp`` on the device of ``like``."""
        device = device_of(like)
        key = (xp.__name__, str(device))
        if key not in self._device_maps:
            self._device_maps[key] = xp.asarray(self.group_map, device=device)
        return self._device_maps[key]

    def strength(self, xp, lam):
        """Per-coefficient strength ``exp(lambda_{g(j)})`` (0-d when scalar)."""
        if self.group_map is None:
            return xp.exp(lam[0])
        strengths = xp.exp(lam)
        if self._identity:
            return strengths
        return xp.take(strengths, self._map_on(xp, lam))

    def _segment_sum(self, xp, values):
        """Sum ``values`` (shape (n_coef,)) within each hyperparameter's group."""
        if self.group_map is None:
            return xp.reshape(xp.sum(values), (1,))
        if self._identity:
            return values
        if hasattr(xp, "bincount"):  # NumPy and CuPy: exact, one pass
            return xp.bincount(
                self._map_on(xp, values), weights=values, minlength=self.n_hyper
            )
        # Any array-API namespace: one-hot reduction in blocks of hyperparameters
        # would cost n_coef * n_hyper; sorting once and differencing a cumulative
        # sum costs n_coef.
        order, ends = self._sorted_segments(xp, values)
        cumulative = xp.cumulative_sum(xp.take(values, order), include_initial=True)
        return xp.take(cumulative, ends[1:]) - xp.take(cumulative, ends[:-1])

    def _sorted_segments(self, xp, like):
        device = device_of(like)
        key = ("sorted", xp.__name__, str(device))
        if key not in self._device_maps:
            order = np.argsort(self.group_map, kind="stable")
            ends = np.concatenate([[0], np.cumsum(np.bincount(self.group_map))])
            self._device_maps[key] = (
                xp.asarray(order, device=device),
                xp.asarray(ends, device=device),
            )
        return self._device_maps[key]

    # -- the penalty and its derivatives ----------------------------------------
    def value(self, xp, coef, lam):
        """``P(coef, lam)`` as a 0-d array."""
        return 0.5 * xp.sum(self.strength(xp, lam) * coef * coef)

    def gradient(self, xp, coef, lam):
        """``dP / dcoef``, shape (n_coef,)."""
        return self.strength(xp, lam) * coef

    def value_and_gradient(self, xp, coef, lam):
        """``(value, gradient)``, the strengths computed once (the same
        numbers as :meth:`value` and :meth:`gradient`)."""
        gradient = self.gradient(xp, coef, lam)
        return 0.5 * xp.sum(gradient * coef), gradient

    def gradient_lambda(self, xp, coef, lam):
        """``dP / dlambda_g = 1/2 exp(lambda_g) ||coef_g||^2``, shape (n_hyper,)."""
        return self._segment_sum(xp, 0.5 * self.strength(xp, lam) * coef * coef)

    def cross(self, xp, coef, lam, direction):
        """``(d2P / dlambda dcoef) @ direction``: ``exp(lambda_g) sum_{j in g} coef_j v_j``."""
        return self._segment_sum(xp, self.strength(xp, lam) * coef * direction)

    def curvature_floor(self, lam):
        """Smallest strength ``min_g exp(lambda_g)`` (a lower bound on the penalty's
        curvature), as a Python float."""
        xp = get_namespace(lam)
        return float(xp.exp(xp.min(lam)))
