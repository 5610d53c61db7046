"""The search space: one continuous parameter, its bounds, in log space.

``param_space`` maps the parameter's name (scikit-learn style,
``"step__param"`` inside a Pipeline) to ``(low, high)`` or
``(low, high, start)``. The engine works on ``lambda``, the log penalty
strength given by the estimator's adapter (``-log C``, ``log alpha``), so the
box ``[low, high]`` becomes a box in ``lambda`` (reversed when ``lambda``
decreases with the parameter).

One value per output (``Ridge`` with one ``alpha`` per target) is asked for by
giving any of ``low``, ``high``, ``start`` as an array of shape (n_targets,);
scalars broadcast. This mirrors ``Ridge(alpha=array)`` itself and needs no
extra switch.
"""

from typing import NamedTuple

import numpy as np

__all__ = ["SearchSpace", "parse_param_space"]


class SearchSpace(NamedTuple):
    """A parsed ``param_space``.

    Attributes
    ----------
    name : str
        Parameter name as given (``"clf__C"``).
    param : str
        Its name on the final estimator (``"C"``).
    lam_low, lam_high : ndarray of shape (1,) or (n_values,)
        Box in log penalty strength.
    lam_start : ndarray of shape (1,) or (n_values,), or None
        Starting point, None for the default (a coarse bracket).
    per_output : bool
        Whether the parameter holds one value per output.
    """

    name: str
    param: str
    lam_low: np.ndarray
    lam_high: np.ndarray
    lam_start: object
    per_output: bool

    def resize(self, n_values):
        """Broadcast the box (and start) to ``n_values`` hyperparameters."""
        size = self.lam_low.size
        if size not in (1, n_values):
            raise ValueError(
                f"param_space[{self.name!r}] has bounds for {size} outputs, but y has "
                f"{n_values}."
            )

        def grow(a):
            return None if a is None else np.broadcast_to(a, (n_values,)).copy()

        return self._replace(
            lam_low=grow(self.lam_low),
            lam_high=grow(self.lam_high),
            lam_start=grow(self.lam_start),
        )


def parse_param_space(param_space, final_estimator, final_name, adapter):
    """Check ``param_space`` against the final estimator and its adapter.

    Parameters
    ----------
    param_space : dict
        ``{name: (low, high)}`` or ``{name: (low, high, start)}``.
    final_estimator : estimator instance
        The estimator whose parameter is searched (last Pipeline step).
    final_name : str or None
        Name of that step inside a Pipeline, None for a bare estimator.
    adapter : EstimatorAdapter

    Returns
    -------
    SearchSpace
    """
    estimator_name = type(final_estimator).__name__
    prefix = f"{final_name}__" if final_name else ""
    supported = ", ".join(repr(prefix + p) for p in adapter.params)
    if len(param_space) != 1:
        raise ValueError(
            "param_space must map exactly one continuous parameter to its bounds, "
            f"e.g. {{{supported.split(', ')[0]}: (1e-3, 1e3)}}; got "
            f"{sorted(param_space)}."
        )
    ((name, bounds),) = param_space.items()
    param = None
    if isinstance(name, str) and name.startswith(prefix):
        param = name[len(prefix) :]
    if param is None or "__" in param:
        raise ValueError(
            f"{name!r} is not a parameter that BilevelSearchCV can search here: the "
            f"final estimator is {estimator_name} and its searchable parameters are "
            f"{supported}."
        )
    adapter.check_estimator(final_estimator, param)
    low, high, start = _check_bounds(name, bounds)
    per_output = any(np.ndim(a) == 1 for a in (low, high, start) if a is not None)
    if per_output and not adapter.per_output:
        raise ValueError(
            f"param_space[{name!r}]: {estimator_name}.{param} takes a single value; "
            "give scalar bounds."
        )
    ends = np.stack(
        np.broadcast_arrays(adapter.to_lambda(low), adapter.to_lambda(high))
    )
    lam_start = None if start is None else np.atleast_1d(adapter.to_lambda(start))
    return SearchSpace(
        name=name,
        param=param,
        lam_low=np.atleast_1d(ends.min(axis=0)),
        lam_high=np.atleast_1d(ends.max(axis=0)),
        lam_start=lam_start,
        per_output=per_output,
    )


def _check_bounds(name, bounds):
    """``(low, high[, start])`` -> float arrays, with readable errors."""
    usage = (
        f"param_space[{name!r}] must be (low, high) or (low, high, start) with "
        "finite values 0 < low < high (searched in log space)"
    )
    if not isinstance(bounds, (tuple, list)) or len(bounds) not in (2, 3):
        raise ValueError(f"{usage}; got {bounds!r}.")
    try:
        values = [np.asarray(b, dtype=np.float64) for b in bounds]
        shape = np.broadcast_shapes(*(v.shape for v in values))
    except (TypeError, ValueError):
        raise ValueError(f"{usage}; got {bounds!r}.") from None
    if len(shape) > 1 or any(v.size == 0 for v in values):
        raise ValueError(f"{usage}, each a number or a 1-d array; got {bounds!r}.")
    if not all(np.all(np.isfinite(v)) and np.all(v > 0) for v in values):
        raise ValueError(f"{usage}; got non-positive or non-finite values {bounds!r}.")
    low, high = values[0], values[1]
    if np.any(low >= high):
        raise ValueError(f"{usage}; got low >= high in {bounds!r}.")
    start = values[2] if len(values) == 3 else None
    if start is not None and np.any((start < low) | (start > high)):
        raise ValueError(f"{usage}; the start {bounds[2]!r} is outside [low, high].")
    return low, high, start
