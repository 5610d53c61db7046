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

One value per feature or per group of features is asked for by
``penalty_groups`` (as in ``HOAGLogisticRegression``): scalar bounds
broadcast, 1-d bounds give one value per feature or group (sorted labels).
With group labels and ``Ridge`` on several targets, 2-d bounds of shape
(n_targets, n_groups) give one value per target and per group (banded
ridge): the 2-d shape is the switch, as the 1-d shape is for one value per
target, and scalar or 1-d bounds keep their meaning.
The estimator itself cannot hold such a value: :func:`estimator_params` says
what the fold models and the refit set on it.
"""

from numbers import Real

import numpy as np

from ..search import VECTOR_STRUCTURES, HyperSpace

__all__ = [
    "MANY_PENALTIES",
    "check_vector_space",
    "estimator_params",
    "parse_param_space",
    "penalty_structure",
]


# Structures whose values the estimator cannot hold (one per feature, group,
# or target and group): the fold models and the refit carry the engine's
# solution.
MANY_PENALTIES = VECTOR_STRUCTURES + ("output-groups",)


def parse_param_space(
    param_space, final_estimator, final_name, adapter, penalty_groups=None
):
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
    penalty_groups : None, "features" or array-like of shape (n_features,), \
            default=None
        One value per feature or per group of features of the final step
        (see :func:`penalty_structure`).

    Returns
    -------
    HyperSpace
        Named as given (``"clf__C"``); structure ``"output-groups"`` with
        group labels and a bound of shape (n_targets, n_groups), else
        ``"features"`` or ``"groups"`` with ``penalty_groups``, else
        ``"outputs"`` when a bound is an array (one value per output), else
        ``"scalar"``.
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
    structure = penalty_structure(penalty_groups)
    if structure and not getattr(adapter, "per_feature", True):
        raise ValueError(
            f"penalty_groups={_describe_groups(penalty_groups)} needs one "
            f"{param} per feature or group, which {estimator_name}'s adapter "
            f"({type(adapter).__name__}) does not support; use penalty_groups=None."
        )
    low, high, start = _check_bounds(name, bounds)
    if any(np.ndim(a) == 2 for a in (low, high, start) if a is not None):
        return _output_groups_space(
            name, (low, high, start), structure, adapter, estimator_name, param
        )
    if structure:
        # 1-d bounds give one value per feature or group, checked once the
        # final step's features are known (check_vector_space)
        return HyperSpace.from_values(
            name, low, high, log_sign=adapter.log_sign, start=start, **structure
        )
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


def _output_groups_space(name, bounds, structure, adapter, estimator_name, param):
    """The space of one value per output and per group (2-d bounds)."""
    low, high, start = bounds
    if structure.get("structure") != "groups":
        given = "None" if not structure else "'features'"
        raise ValueError(
            f"param_space[{name!r}] has bounds of shape (n_targets, n_groups): one "
            f"{param} per target and per group of features, which needs "
            f"penalty_groups as an array of group labels (one per feature); got "
            f"penalty_groups={given}. Give 1-d bounds of shape (n_targets,) for "
            "one value per target."
        )
    if not adapter.per_output:
        raise ValueError(
            f"param_space[{name!r}]: bounds of shape (n_targets, n_groups) give "
            f"one {param} per output and per group, but {estimator_name}.{param} "
            "takes one value for all outputs; this needs Ridge (a regressor) with "
            "y of shape (n_samples, n_targets)."
        )
    if start is not None:
        raise ValueError(
            f"param_space[{name!r}]: a start is not supported with one {param} per "
            "target and per group (the search starts from the best value of each "
            "target); give (low, high)."
        )
    shape = np.broadcast_shapes(low.shape, high.shape)
    return HyperSpace.from_values(
        name,
        np.broadcast_to(low, shape),
        np.broadcast_to(high, shape),
        log_sign=adapter.log_sign,
        structure="output-groups",
        groups=structure["groups"],
    )


def penalty_structure(penalty_groups):
    """``penalty_groups`` -> the ``structure`` (and ``groups``) of a HyperSpace.

    Parameters
    ----------
    penalty_groups : None, "features" or array-like of shape (n_features,)
        ``"features"``: one value per feature; an array: the group label of
        each feature of the final step, one value per label.

    Returns
    -------
    dict
        Empty for None (the structure follows the bounds), else the keyword
        arguments of :meth:`HyperSpace.from_values`.
    """
    if penalty_groups is None:
        return {}
    if isinstance(penalty_groups, str):  # "features": the constraints checked it
        return {"structure": "features"}
    groups = np.asarray(penalty_groups)
    if groups.ndim != 1:
        raise ValueError(
            "penalty_groups must be 'features' or a 1-d array of group labels, one "
            f"per feature of the final step; got an array of shape {groups.shape}."
        )
    if any(_is_number(label) and not np.isfinite(label) for label in groups.tolist()):
        raise ValueError(
            "penalty_groups must not contain NaN or infinite labels: every "
            "feature needs a group."
        )
    try:
        n_groups = np.unique(groups).size
    except TypeError:
        raise ValueError(
            "penalty_groups labels must be comparable (all numbers or all "
            "strings) to be sorted into groups."
        ) from None
    if n_groups < 2:
        raise ValueError(
            f"penalty_groups has a single group ({n_groups and groups[0]!r}): it "
            "would search one value for all features; use penalty_groups=None."
        )
    return {"structure": "groups", "groups": groups}


def _describe_groups(penalty_groups):
    if isinstance(penalty_groups, str):
        return repr(penalty_groups)
    return f"<array of {len(penalty_groups)} group labels>"


def check_vector_space(space, n_features, n_outputs, estimator_name):
    """Check a "features" or "groups" space against the final step's data.

    Parameters
    ----------
    space : HyperSpace
        From :func:`parse_param_space` with ``penalty_groups`` (structure
        "features", "groups" or "output-groups").
    n_features : int
        Features the final step sees (after a Pipeline's earlier steps).
    n_outputs : int
        Raw predictions per sample (targets of ``Ridge``, classes).
    estimator_name : str
        Class of the final step, for the messages.
    """
    if space.structure in ("groups", "output-groups") and space.groups.shape != (
        n_features,
    ):
        raise ValueError(
            f"penalty_groups has {space.groups.shape[0]} group labels, but "
            f"{estimator_name} sees {n_features} features (after the Pipeline's "
            "earlier steps, if any): give one label per feature of the final step."
        )
    if space.structure == "output-groups":
        n_groups = np.unique(space.groups).size
        if space.lam_low.shape != (n_outputs, n_groups):
            raise ValueError(
                f"param_space[{space.name!r}] has bounds of shape "
                f"{space.lam_low.shape}, but y has {n_outputs} targets and "
                f"penalty_groups {n_groups} groups: give arrays of shape "
                f"(n_targets, n_groups) = ({n_outputs}, {n_groups}), or of shape "
                f"({n_groups},) broadcast over the targets."
            )
        return
    n_hyper = space.n_hyper(n_features, n_outputs)
    if n_hyper < 2:
        raise ValueError(
            f"penalty_groups='features' with a single feature: {estimator_name} "
            "sees one feature, so there is one value to search; use "
            "penalty_groups=None."
        )
    for what, lam in (("bounds", space.lam_low), ("start", space.lam_start)):
        size = 1 if lam is None else lam.size
        if size == 1 or size == n_hyper:
            continue
        per_output = ""
        if n_outputs > 1:
            per_output = (
                f" One value per output ({n_outputs}) and per "
                f"{space.structure[:-1]} needs bounds of shape (n_targets, "
                f"n_groups) = ({n_outputs}, {n_hyper}) (group labels only); or "
                "give penalty_groups=None with bounds of shape (n_targets,) for "
                "one value per target."
            )
        raise ValueError(
            f"param_space[{space.name!r}] has {what} of {size} values, but "
            f"penalty_groups gives {n_hyper} {space.structure} (one value each): "
            f"give scalars or arrays of shape ({n_hyper},).{per_output}"
        )


def estimator_params(space, params):
    """What an evaluated point sets on the user's estimator.

    One value, or one per output, is a value of the estimator's parameter. One
    value per feature or per group is not (``LogisticRegression(C=array)``
    does not fit, ``Ridge(alpha=array)`` means one per target), nor one per
    target and group: the estimator
    keeps its own value and carries the solution only, except where every
    entry is equal, which is the scalar parameter.

    Parameters
    ----------
    space : HyperSpace
    params : dict
        ``{space.name: value}``, a row's ``params`` in ``cv_results_``.

    Returns
    -------
    dict
        Parameters for ``set_params`` (possibly empty).
    """
    if space.structure not in MANY_PENALTIES:
        return params
    values = np.asarray(params[space.name])
    if np.all(values == values.flat[0]):
        return {space.name: float(values.flat[0])}
    return {}


def _is_number(value):
    return isinstance(value, (Real, np.number)) and not isinstance(value, bool)


def _as_bound(value, usage, bounds):
    """One bound: a real number or a 1-d or 2-d array-like of real numbers."""
    if _is_number(value):
        return np.asarray(value, dtype=np.float64)
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        raise TypeError(f"{usage}; got {bounds!r}, with a {type(value).__name__}.")
    array = np.asarray(value)
    if array.ndim not in (1, 2) or array.size == 0:
        raise ValueError(
            f"{usage}, each a number, a 1-d array or (one value per target and "
            f"group) a 2-d array; got {bounds!r}."
        )
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
