"""The hyperparameter space (search/_space.py): log-space box and start, the
penalty of each structure, broadcasting to the number of hyperparameters."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from skbilevel.objectives import L2Penalty
from skbilevel.search import STRUCTURES, HyperSpace


@pytest.mark.parametrize(
    "log_sign, low, high, start", [(-1, 1e-2, 1e2, 3.0), (1, 1e-3, 10.0, 0.5)]
)
def test_from_values_gives_an_ordered_box_in_lambda(log_sign, low, high, start):
    space = HyperSpace.from_values("clf__C", low, high, log_sign=log_sign, start=start)
    ends = sorted([log_sign * np.log(low), log_sign * np.log(high)])
    assert space.lam_low.shape == space.lam_high.shape == space.lam_start.shape == (1,)
    assert_allclose(space.lam_low, [ends[0]], rtol=1e-15)
    assert_allclose(space.lam_high, [ends[1]], rtol=1e-15)
    assert_allclose(space.lam_start, [log_sign * np.log(start)], rtol=1e-15)
    assert space.lam_low[0] < space.lam_start[0] < space.lam_high[0]
    assert (space.name, space.log_sign) == ("clf__C", log_sign)
    assert (space.structure, space.groups) == ("scalar", None)
    # C = 1e-2 is the strongest penalty: the upper end of lambda = -log C.
    if log_sign == -1:
        assert space.lam_high[0] == pytest.approx(np.log(100.0))


def test_from_values_takes_arrays_and_no_start():
    space = HyperSpace.from_values(
        "alpha", [1e-3, 1e-1], 10.0, log_sign=1, structure="outputs"
    )
    assert space.lam_start is None
    assert_allclose(space.lam_low, np.log([1e-3, 1e-1]))
    assert_allclose(space.lam_high, np.log([10.0, 10.0]))
    assert space.structure == "outputs"


GROUPS = np.array(["b", "a", "b", "c", "a", "c"])  # sorted labels: a=0, b=1, c=2


@pytest.mark.parametrize("n_outputs", [1, 3])
@pytest.mark.parametrize("structure", STRUCTURES)
def test_n_hyper_and_penalty_of_each_structure(structure, n_outputs):
    n_features = GROUPS.size
    groups = GROUPS if structure in ("groups", "output-groups") else None
    space = HyperSpace("C", -1, np.zeros(1), np.ones(1), None, structure, groups)
    penalty = space.penalty(n_features, n_outputs)
    assert isinstance(penalty, L2Penalty)
    # Coefficients of shape (n_features, n_outputs), flattened row-major:
    # coefficient j * n_outputs + k belongs to feature j and output k.
    feature = np.repeat(np.arange(n_features), n_outputs)
    output = np.tile(np.arange(n_outputs), n_features)
    expected_map = {
        "scalar": None,
        "features": feature,
        "groups": np.array([1, 0, 1, 2, 0, 2])[feature],
        "outputs": output,
        # output-major: output k's group g is hyperparameter k * n_groups + g
        "output-groups": output * 3 + np.array([1, 0, 1, 2, 0, 2])[feature],
    }[structure]
    expected_n_hyper = {
        "scalar": 1,
        "features": 6,
        "groups": 3,
        "outputs": n_outputs,
        "output-groups": 3 * n_outputs,
    }
    assert space.n_hyper(n_features, n_outputs) == expected_n_hyper[structure]
    assert penalty.n_hyper == expected_n_hyper[structure]
    if expected_map is None:
        assert penalty.group_map is None
    else:
        assert_array_equal(penalty.group_map, expected_map)
    # The penalty value 1/2 sum_j exp(lambda_g(j)) coef_j^2, computed by hand.
    rng = np.random.default_rng(0)
    coef = rng.standard_normal(n_features * n_outputs)
    lam = rng.standard_normal(penalty.n_hyper)
    strength = np.exp(lam[0] if expected_map is None else lam[expected_map])
    assert float(penalty.value(np, coef, lam)) == pytest.approx(
        0.5 * np.sum(strength * coef**2), rel=1e-14
    )


def test_groups_of_the_wrong_length_raise():
    space = HyperSpace("C", -1, np.zeros(1), np.ones(1), structure="groups")
    space = space._replace(groups=GROUPS)
    with pytest.raises(ValueError, match=r"one group label per feature.*\(5,\)"):
        space.penalty(5, 1)


def test_resize_broadcasts_and_copies():
    space = HyperSpace.from_values("C", 1e-2, [1e1, 1e2, 1e3], log_sign=-1, start=1.0)
    resized = space.resize(3)
    assert resized.lam_low.shape == resized.lam_high.shape == (3,)
    assert_allclose(resized.lam_low, -np.log([1e1, 1e2, 1e3]))
    assert_allclose(resized.lam_high, np.full(3, np.log(100.0)))
    assert_allclose(resized.lam_start, np.zeros(3))
    resized.lam_start[0] = 5.0  # a copy, writable, not a view of the original
    assert space.lam_start[0] == 0.0
    assert space.resize(3).lam_start is not None
    no_start = HyperSpace.from_values("C", 1e-2, 1e2, log_sign=-1)
    assert no_start.resize(4).lam_start is None
    assert no_start.resize(4).lam_low.shape == (4,)


@pytest.mark.parametrize("what", ["lower bound", "upper bound", "start"])
def test_resize_to_another_size_raises(what):
    ends = {"lower bound": np.zeros(1), "upper bound": np.ones(1), "start": [0.5]}
    ends[what] = np.full(2, 0.5)
    space = HyperSpace("clf__C", -1, *(np.asarray(a) for a in ends.values()))
    match = f"The {what} of 'clf__C' has 2 values, but the search has 3 hyper"
    with pytest.raises(ValueError, match=match):
        space.resize(3)
    assert space.resize(2).lam_low.shape == (2,)


@pytest.mark.parametrize("log_sign", [-1, 1])
def test_values_and_describe_invert_from_values(log_sign):
    space = HyperSpace.from_values(
        "clf__C", [0.01, 0.5], 4.0, log_sign=log_sign, start=[0.25, 1.0]
    )
    assert_allclose(space.values(space.lam_start), [0.25, 1.0], rtol=1e-14)
    ends = np.concatenate([space.values(space.lam_low), space.values(space.lam_high)])
    expected = [4.0, 4.0, 0.01, 0.5] if log_sign == -1 else [0.01, 0.5, 4.0, 4.0]
    assert_allclose(ends, expected, rtol=1e-14)
    # Named as on the final estimator, a range when the values differ.
    assert space.describe(space.lam_start) == "C=[0.25..1]"
    assert space.describe(log_sign * np.log([0.25])) == "C=0.25"
    assert space.describe(space.lam_start[:1]) == "C=0.25"
