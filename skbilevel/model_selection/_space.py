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

from numbers import Real

import numpy as np

from ..search import HyperSpace

__all__ = ["parse_param_space"]


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
    HyperSpace
        Named as given (``"clf__C"``); structure ``"outputs"`` when a bound is
        an array (one value per output), else ``"scalar"``.
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
    return HyperSpace.from_values(
        name,
        low,
        high,
        log_sign=adapter.log_sign,
        start=start,
        structure="outputs" if per_output else "scalar",
    )


def _is_number(value):
    return isinstance(value, (Real, np.number)) and not isinstance(value, bool)


def _as_bound(value, usage, bounds):
    """One bound: a real number or a 1-d array-like of real numbers."""
    if _is_number(value):
        return np.asarray(value, dtype=np.float64)
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        raise TypeError(f"{usage}; got {bounds!r}, with a {type(value).__name__}.")
    array = np.asarray(value)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{usage}, each a number or a 1-d array; got {bounds!r}.")
    if not (np.issubdtype(array.dtype, np.number) and array.dtype != bool):
        raise TypeError(f"{usage}; got {bounds!r}, with {array.dtype} values.")
    return array.astype(np.float64)


def _check_bounds(name, bounds):
    """``(low, high[, start])`` -> float arrays, with readable errors.

    As in scikit-learn's parameter checks, a value of the wrong type (a
    number or a string instead of a pair, a string bound) raises TypeError,
    a value of the right type out of range raises ValueError.
    """
    usage = (
        f"param_space[{name!r}] must be (low, high) or (low, high, start) with "
        "finite values 0 < low < high (searched in log space)"
    )
    if isinstance(bounds, (str, bytes)) or not isinstance(
        bounds, (tuple, list, np.ndarray)
    ):
        raise TypeError(f"{usage}; got {type(bounds).__name__} {bounds!r}.")
    if len(bounds) not in (2, 3):
        raise ValueError(f"{usage}; got {len(bounds)} values in {bounds!r}.")
    values = [_as_bound(b, usage, bounds) for b in bounds]
    try:
        np.broadcast_shapes(*(v.shape for v in values))
    except ValueError:
        raise ValueError(
            f"{usage}; the arrays in {bounds!r} have different lengths."
        ) from None
    if not all(np.all(np.isfinite(v)) and np.all(v > 0) for v in values):
        raise ValueError(f"{usage}; got non-positive or non-finite values {bounds!r}.")
    low, high = values[0], values[1]
    if np.any(low >= high):
        raise ValueError(f"{usage}; got low >= high in {bounds!r}.")
    start = values[2] if len(values) == 3 else None
    if start is not None and np.any((start < low) | (start > high)):
        raise ValueError(f"{usage}; the start {bounds[2]!r} is outside [low, high].")
    return low, high, start
