"""The hyperparameter space of a search: log-space box, start, penalty structure.

The engine works on ``lambda``, the log of the penalty strength. A parameter
given as its inverse (``C``) has ``lambda = -log C`` (``log_sign = -1``), one
given as the strength (``alpha``) ``lambda = log alpha``. The structure says
how many hyperparameters there are and which coefficients each one penalizes:

=============  ==========================================  =====================
structure      penalized coefficients                      hyperparameters
=============  ==========================================  =====================
``"scalar"``   all                                         1
``"features"`` the outputs of one feature                  ``n_features``
``"groups"``   the features of one group (labels sorted)   number of labels
``"outputs"``  the features of one output (target, class)  ``n_outputs``
``"output-     the features of one group, in one output    ``n_outputs *
groups"``                                                  n_groups``
=============  ==========================================  =====================

``"output-groups"`` hyperparameters are ordered output-major: index
``t * n_groups + g`` penalizes group ``g`` (sorted labels) of output ``t``.
"""

from typing import NamedTuple

import numpy as np

from ..objectives import L2Penalty
from ._progress import describe_values

__all__ = ["HyperSpace", "STRUCTURES"]

STRUCTURES = ("scalar", "features", "groups", "outputs", "output-groups")


class HyperSpace(NamedTuple):
    """Where a search looks, in log penalty strength.

    Attributes
    ----------
    name : str
        Name of the parameter as the user knows it (``"C"``, ``"clf__alpha"``).
    log_sign : {1, -1}
        ``lambda = log_sign * log(value)``.
    lam_low, lam_high : ndarray of shape (1,) or (n_hyper,)
        Box in ``lambda`` (broadcast to ``n_hyper`` by :meth:`resize`);
        ``"output-groups"``: of shape (n_outputs, n_groups) until resized.
    lam_start : ndarray of shape (1,) or (n_hyper,), or None
        Starting point; None starts with a coarse bracket.
    structure : {"scalar", "features", "groups", "outputs", "output-groups"}
        What each hyperparameter penalizes.
    groups : ndarray of shape (n_features,) or None
        Group label of each feature (``"groups"``, ``"output-groups"``).
    """

    name: str
    log_sign: int
    lam_low: np.ndarray
    lam_high: np.ndarray
    lam_start: object = None
    structure: str = "scalar"
    groups: object = None

    @classmethod
    def from_values(cls, name, low, high, *, log_sign, start=None, **structure):
        """The space of a parameter with values in ``[low, high]`` (either order
        of ``lambda``), scalars or arrays of shape (n_hyper,)."""
        ends = np.stack(
            np.broadcast_arrays(
                log_sign * np.log(np.asarray(low, dtype=np.float64)),
                log_sign * np.log(np.asarray(high, dtype=np.float64)),
            )
        )
        lam_start = (
            None
            if start is None
            else np.atleast_1d(log_sign * np.log(np.asarray(start, dtype=np.float64)))
        )
        return cls(
            name,
            log_sign,
            np.atleast_1d(ends.min(axis=0)),
            np.atleast_1d(ends.max(axis=0)),
            lam_start,
            **structure,
        )

    def n_hyper(self, n_features, n_outputs):
        """Number of hyperparameters for a model of this shape."""
        if self.structure == "features":
            return n_features
        if self.structure == "groups":
            return np.unique(self.groups).size
        if self.structure == "output-groups":
            return n_outputs * np.unique(self.groups).size
        if self.structure == "outputs":
            return n_outputs
        return 1

    def penalty(self, n_features, n_outputs):
        """The :class:`~skbilevel.objectives.L2Penalty` of this structure."""
        if self.structure == "features":
            return L2Penalty.per_feature(n_features, n_outputs)
        if self.structure == "groups":
            if self.groups.shape != (n_features,):
                raise ValueError(
                    f"penalty_groups must give one group label per feature: "
                    f"expected shape ({n_features},), got {self.groups.shape}."
                )
            return L2Penalty.from_groups(self.groups, n_outputs)
        if self.structure == "output-groups":
            labels, index = np.unique(self.groups, return_inverse=True)
            index = index.reshape(-1)
            # coefficient (j, t), flattened j * n_outputs + t: t * n_groups + g(j)
            group_map = np.arange(n_outputs)[None, :] * labels.size + index[:, None]
            return L2Penalty(group_map, n_outputs * labels.size)
        if self.structure == "outputs":
            return L2Penalty.per_output(n_features, n_outputs)
        return L2Penalty.scalar()

    def resize(self, n_hyper):
        """The box and start broadcast to ``n_hyper`` hyperparameters."""

        def grow(a, what):
            if a is None:
                return None
            a = a.reshape(-1)  # "output-groups": output-major
            if a.size not in (1, n_hyper):
                raise ValueError(
                    f"The {what} of {self.name!r} has {a.size} values, but the search "
                    f"has {n_hyper} hyperparameters."
                )
            return np.broadcast_to(a, (n_hyper,)).copy()

        return self._replace(
            lam_low=grow(self.lam_low, "lower bound"),
            lam_high=grow(self.lam_high, "upper bound"),
            lam_start=grow(self.lam_start, "start"),
        )

    @property
    def param(self):
        """The parameter's name on the estimator (``"C"``, not ``"clf__C"``)."""
        return self.name.rsplit("__", 1)[-1]

    def values(self, lam):
        """``lambda`` -> the parameter's value(s), an ndarray."""
        return np.exp(self.log_sign * np.asarray(lam, dtype=np.float64))

    def describe(self, lam):
        """``lambda`` as one token: ``C=0.25`` or a range ``C=[0.01..3.2]``."""
        return describe_values(self.param, self.values(lam))
