"""param_space of BilevelSearchCV (model_selection/_space.py): one parameter,
``(low, high)`` or ``(low, high, start)`` in log space, and its errors."""

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skbilevel import BilevelSearchCV
from skbilevel.model_selection import LogisticRegressionAdapter, RidgeAdapter
from skbilevel.model_selection._space import estimator_params, parse_param_space


@pytest.mark.parametrize(
    "estimator, space, error, match",
    [
        (LogisticRegression(), {"C": (1, 2), "tol": (1, 2)}, ValueError, "exactly one"),
        (
            make_pipeline(StandardScaler(), LogisticRegression()),
            {"C": (1, 2)},
            ValueError,
            "'logisticregression__C'",
        ),
        (LogisticRegression(), {"C": (2.0, 1.0)}, ValueError, "low >= high"),
        (LogisticRegression(), {"C": (1.0, 1.0)}, ValueError, "low >= high"),
        (LogisticRegression(), {"C": (0.0, 1.0)}, ValueError, "non-positive"),
        (LogisticRegression(), {"C": (1.0, np.inf)}, ValueError, "non-finite"),
        (LogisticRegression(), {"C": (1.0, 2.0, 5.0)}, ValueError, "outside"),
        (LogisticRegression(), {"C": [1.0]}, ValueError, r"\(low, high\)"),
        (LogisticRegression(), {"C": ([1, 2], [3, 4])}, ValueError, "single value"),
        # Checked against y once it is encoded (model_selection/_search.py).
        (Ridge(), {"alpha": ([1, 2, 3], 10.0)}, ValueError, "3 outputs"),
    ],
)
def test_unsupported_configurations_raise_clear_errors(
    small_classification, estimator, space, error, match
):
    X, y = small_classification
    with pytest.raises(error, match=match):
        BilevelSearchCV(estimator, space, cv=3).fit(X, y)


# -- parse_param_space -> HyperSpace ---------------------------------------------------
def test_bounds_become_a_box_in_lambda():
    space = parse_param_space(
        {"clf__C": (0.01, 100, 3.0)}, LogisticRegression(), "clf",
        LogisticRegressionAdapter(),
    )  # fmt: skip
    assert (space.name, space.log_sign, space.structure) == ("clf__C", -1, "scalar")
    # lambda = -log C: C's upper bound is lambda's lower one.
    assert_allclose(space.lam_low, [-np.log(100)])
    assert_allclose(space.lam_high, [np.log(100)])
    assert_allclose(space.lam_start, [-np.log(3.0)])


def test_array_bounds_search_one_value_per_output():
    space = parse_param_space(
        {"alpha": ([1e-3, 1e-2], 10.0)}, Ridge(), None, RidgeAdapter()
    )
    assert (space.log_sign, space.structure, space.lam_start) == (1, "outputs", None)
    assert_allclose(space.lam_low, np.log([1e-3, 1e-2]))
    assert_allclose(space.lam_high, np.log([10.0, 10.0]))


@pytest.mark.parametrize(
    "bounds, error, match",
    [
        (1.0, TypeError, "must be \\(low, high\\) or \\(low, high, start\\)"),
        ("ab", TypeError, "got str 'ab'"),
        (("a", 2.0), TypeError, "with a str"),
        ((True, 2.0), TypeError, "with a bool"),
        (([1, 2], [3, 4, 5]), ValueError, "different lengths"),
        (([[1, 2]], 3.0), ValueError, "needs penalty_groups as an array"),
        (([[[1, 2]]], 3.0), ValueError, "each a number, a 1-d array"),
        ((1.0, 2.0, 1.5, 1.7), ValueError, "got 4 values"),
    ],
)
def test_bounds_of_the_wrong_type_or_shape_raise(bounds, error, match):
    with pytest.raises(error, match=match):
        parse_param_space({"alpha": bounds}, Ridge(), None, RidgeAdapter())


# -- penalty_groups: one value per feature or per group --------------------------------
def test_penalty_groups_give_the_vector_structures():
    adapter = LogisticRegressionAdapter()
    space = parse_param_space(
        {"C": (1e-2, [1e2, 1e3, 1e4])}, LogisticRegression(), None, adapter,
        penalty_groups=["b", "a", "c", "a"],
    )  # fmt: skip
    assert (space.structure, space.n_hyper(4, 1)) == ("groups", 3)
    assert_allclose(space.lam_low, -np.log([1e2, 1e3, 1e4]))
    space = parse_param_space(
        {"C": (1e-2, 1e2)}, LogisticRegression(), None, adapter,
        penalty_groups="features",
    )  # fmt: skip
    assert (space.structure, space.n_hyper(7, 3)) == ("features", 7)


def test_estimator_params_keep_vector_values_off_the_estimator():
    adapter = RidgeAdapter()
    space = parse_param_space(
        {"alpha": (1e-2, 1e2)}, Ridge(), None, adapter, penalty_groups="features"
    )
    assert estimator_params(space, {"alpha": np.array([2.0, 3.0])}) == {}
    same = estimator_params(space, {"alpha": np.array([2.0, 2.0])})
    assert same == {"alpha": 2.0} and isinstance(same["alpha"], float)
    per_output = parse_param_space({"alpha": ([1, 2], 10.0)}, Ridge(), None, adapter)
    values = {"alpha": np.array([2.0, 3.0])}
    assert estimator_params(per_output, values) is values
