"""Derivatives of the inner and outer objectives against central finite differences."""

import pickle

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.special import expit

from skbilevel.objectives import L2Penalty, linear
from skbilevel.outer._placement import _cloudpickle

from ._problems import LOSS_NAMES, STRUCTURES, make_data, make_fold, make_penalty


def central_difference(f, x, direction, eps=1e-6):
    return (f(x + eps * direction) - f(x - eps * direction)) / (2 * eps)


def _applicable(loss_name, structure):
    return not (structure == "per_output" and loss_name in ("binary", "squared"))


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("structure", STRUCTURES)
@pytest.mark.parametrize("loss_name", LOSS_NAMES)
def test_inner_derivatives_match_finite_differences(
    loss_name, structure, sparse, fit_intercept, weighted
):
    if not _applicable(loss_name, structure):
        pytest.skip("per-output penalty needs several outputs")
    inner, outer, n_hyper = make_fold(
        loss_name,
        structure,
        sparse=sparse,
        fit_intercept=fit_intercept,
        weighted=weighted,
    )
    rng = np.random.default_rng(3)
    w = 0.3 * rng.standard_normal(inner.n_params)
    lam = rng.uniform(-1, 1, n_hyper)
    direction = rng.standard_normal(inner.n_params)

    value, grad = inner.value_and_grad(w, lam)
    assert_allclose(value, inner.value(w, lam), rtol=1e-12)
    fd = central_difference(lambda x: float(inner.value(x, lam)), w, direction)
    assert_allclose(grad @ direction, fd, rtol=1e-6, atol=1e-8)

    hvp = inner.hessp(w, lam)(direction)
    fd_hvp = central_difference(lambda x: inner.value_and_grad(x, lam)[1], w, direction)
    assert_allclose(hvp, fd_hvp, rtol=1e-5, atol=1e-6)

    # dG/dlambda and the cross product (d2G / dlambda dw) @ v, one lambda at a time
    g_lam = inner.gradient_lambda(w, lam)
    cross = inner.cross(w, lam, direction)
    for k in range(n_hyper):
        e_k = np.zeros(n_hyper)
        e_k[k] = 1.0
        fd_lam = central_difference(
            lambda lm: float(inner.value(w, lm)), lam, e_k, eps=1e-4
        )
        assert_allclose(g_lam[k], fd_lam, rtol=1e-6, atol=1e-9)
        fd_cross = central_difference(
            lambda lm: inner.value_and_grad(w, lm)[1] @ direction, lam, e_k, eps=1e-4
        )
        assert_allclose(cross[k], fd_cross, rtol=1e-6, atol=1e-8)

    # the dense Hessian is the Hessian-vector product applied to the identity
    H = inner.hessian(w, lam)
    assert_allclose(H, H.T, rtol=1e-12, atol=1e-12)
    assert_allclose(H @ direction, hvp, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("loss_name", LOSS_NAMES)
def test_outer_gradient_matches_finite_differences(loss_name, sparse):
    inner, outer, _ = make_fold(loss_name, sparse=sparse, weighted=True)
    rng = np.random.default_rng(4)
    w = 0.3 * rng.standard_normal(inner.n_params)
    direction = rng.standard_normal(inner.n_params)
    value, grad = outer.value_and_grad(w)
    assert_allclose(value, outer.value(w), rtol=1e-12)
    fd = central_difference(lambda x: float(outer.value(x)), w, direction)
    assert_allclose(grad @ direction, fd, rtol=1e-6, atol=1e-9)


def test_outer_loss_is_sklearn_metric():
    from sklearn.metrics import log_loss, mean_squared_error

    from skbilevel.objectives import ValidationLoss

    for loss_name, metric in [
        ("multinomial", log_loss),
        ("squared_multi", None),
        ("binary", log_loss),
    ]:
        inner, outer, _ = make_fold(loss_name, weighted=True)
        rng = np.random.default_rng(5)
        w = 0.3 * rng.standard_normal(inner.n_params)
        raw = outer.model.raw(w)
        sw = outer.sample_weight
        if loss_name == "squared_multi":
            expected = mean_squared_error(outer.y, raw, sample_weight=sw)
        elif loss_name == "binary":
            proba = 1 / (1 + np.exp(-raw))
            expected = metric(outer.y, proba, sample_weight=sw, labels=[0, 1])
        else:
            proba = np.exp(raw - raw.max(1, keepdims=True))
            proba /= proba.sum(1, keepdims=True)
            expected = metric(outer.y.argmax(1), proba, sample_weight=sw)
        assert isinstance(outer, ValidationLoss)
        assert_allclose(outer.value(w), expected, rtol=1e-10)


def test_logistic_loss_is_stable_for_large_raw():
    from skbilevel.objectives import BinaryLogisticLoss, MultinomialLogisticLoss

    raw = np.array([-800.0, -30.0, 0.0, 30.0, 800.0])
    y = np.array([1.0, 0.0, 1.0, 1.0, 0.0])

    loss = BinaryLogisticLoss()
    value, grad = loss.value_and_gradient(np, y, raw)
    assert np.all(np.isfinite(value)) and np.all(np.isfinite(grad))
    assert_allclose(value[[0, 4]], [800.0, 800.0])
    # the probabilities and the gradient against SciPy's expit
    assert_allclose(loss.mean(np, raw), expit(raw), rtol=1e-13)
    assert_allclose(grad, expit(raw) - y, atol=2e-15)
    raw2 = np.stack([raw, -raw], axis=1)
    Y = np.stack([y, 1 - y], axis=1)
    value2, _ = MultinomialLogisticLoss().value_and_gradient(np, Y, raw2)
    assert_allclose(value2[[0, 4]], [1600.0, 1600.0])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_binary_logistic_loss_is_precise_over_the_whole_range(dtype):
    # log(1 + exp(raw)) and expit(raw) against a reference computed in
    # extended precision (np.longdouble, by the textbook formulas on each
    # side of 0), on both sides of 0, near 0 and where exp(raw) under- or
    # overflows in the dtype
    from skbilevel.objectives import BinaryLogisticLoss

    raw = np.concatenate(
        [np.linspace(-120.0, 120.0, 4801), [0.0, -0.0, 1e-30, -1e-30, 5e-8, -5e-8]]
    ).astype(dtype)
    if np.finfo(np.longdouble).eps >= np.finfo(np.float64).eps:
        pytest.skip("no extended precision on this platform")
    exact = raw.astype(np.longdouble)
    log1pexp = np.logaddexp(np.longdouble(0), exact)
    expit_ = np.exp(exact - log1pexp)
    loss = BinaryLogisticLoss()
    eps = np.finfo(dtype).eps
    # y = 0: the value is log(1 + exp(raw)) itself, to a few ulps
    zeros = np.zeros_like(raw)
    value, grad, proba = loss.value_gradient_and_mean(np, zeros, raw)
    assert value.dtype == grad.dtype == proba.dtype == dtype
    # (relative precision down to the smallest normal number of the dtype)
    tiny = float(np.finfo(dtype).smallest_normal)
    assert_allclose(value, log1pexp.astype(np.float64), rtol=4 * eps, atol=tiny)
    assert_allclose(proba, expit_.astype(np.float64), rtol=4 * eps, atol=tiny)
    assert_array_equal(grad, proba)
    assert_array_equal(loss.mean(np, raw), proba)
    assert_array_equal(loss.value(np, zeros, raw), value)
    # y = 1: log(1 + exp(-raw)), whose subtraction is exact to ulps of raw
    ones = np.ones_like(raw)
    value, grad, _ = loss.value_gradient_and_mean(np, ones, raw)
    scale = np.maximum(np.abs(raw), 1).astype(np.float64)
    assert np.all(np.abs(value - (log1pexp - exact)) <= 4 * eps * scale)
    assert_allclose(grad, (expit_ - 1).astype(np.float64), rtol=0, atol=2 * eps)


def test_penalty_maps_and_validation():
    assert L2Penalty.per_feature(4, 3).group_map.tolist() == list(
        np.repeat(range(4), 3)
    )
    assert L2Penalty.per_output(2, 3).group_map.tolist() == [0, 1, 2, 0, 1, 2]
    groups = L2Penalty.from_groups(["b", "a", "b"])
    assert groups.n_hyper == 2 and groups.group_map.tolist() == [1, 0, 1]
    with pytest.raises(ValueError, match="every hyperparameter index"):
        L2Penalty(np.array([0, 2]))
    with pytest.raises(ValueError, match="non-negative"):
        L2Penalty(np.array([0, -1]))


@pytest.mark.parametrize(
    "penalty",
    [
        L2Penalty.scalar(),
        L2Penalty.per_feature(5),
        L2Penalty.from_groups([0, 1, 0, 2, 1]),
    ],
    ids=["scalar", "per_feature", "groups"],
)
def test_penalty_value_and_gradient_are_value_and_gradient(penalty):
    rng = np.random.default_rng(4)
    coef, lam = rng.standard_normal(5), rng.uniform(-2, 2, penalty.n_hyper)
    value, gradient = penalty.value_and_gradient(np, coef, lam)
    assert value == penalty.value(np, coef, lam)
    assert np.array_equal(gradient, penalty.gradient(np, coef, lam))
    strengths = (
        np.exp(lam)[penalty.group_map]
        if penalty.group_map is not None
        else np.exp(lam[0])
    )
    assert_allclose(value, 0.5 * np.sum(strengths * coef**2), rtol=1e-14)
    assert_allclose(gradient, strengths * coef, rtol=1e-14)


def test_objectives_do_not_modify_inputs():
    inner, outer, n_hyper = make_fold("multinomial", "per_feature", weighted=True)
    w = np.linspace(-1, 1, inner.n_params)
    lam = np.zeros(n_hyper)
    w0, lam0, y0 = w.copy(), lam.copy(), inner.y.copy()
    inner.value_and_grad(w, lam)
    inner.hessp(w, lam)(w)
    inner.cross(w, lam, w)
    outer.value_and_grad(w)
    assert_allclose(w, w0)
    assert_allclose(lam, lam0)
    assert_allclose(inner.y, y0)


@pytest.mark.parametrize("structure", ["scalar", "per_feature", "groups"])
@pytest.mark.parametrize("loss_name", LOSS_NAMES)
def test_array_api_strict_matches_numpy(loss_name, structure):
    xps = pytest.importorskip("array_api_strict")
    from skbilevel.objectives import InnerObjective, ValidationLoss

    inner, outer, n_hyper = make_fold(loss_name, structure, weighted=True)
    rng = np.random.default_rng(6)
    w = 0.3 * rng.standard_normal(inner.n_params)
    lam = rng.uniform(-1, 1, n_hyper)
    v = rng.standard_normal(inner.n_params)

    def strict(a):
        return None if a is None else xps.asarray(a)

    inner_s = InnerObjective(
        strict(inner.model.X),
        strict(inner.y),
        inner.loss,
        inner.penalty,
        inner.model.n_outputs,
        inner.model.fit_intercept,
        strict(inner.sample_weight),
    )
    outer_s = ValidationLoss(
        strict(outer.model.X),
        strict(outer.y),
        outer.loss,
        outer.model.n_outputs,
        outer.model.fit_intercept,
        strict(outer.sample_weight),
        scale=outer.scale,
    )
    ws, lams, vs = strict(w), strict(lam), strict(v)
    for got, expected in [
        (inner_s.value_and_grad(ws, lams)[1], inner.value_and_grad(w, lam)[1]),
        (inner_s.hessp(ws, lams)(vs), inner.hessp(w, lam)(v)),
        (inner_s.cross(ws, lams, vs), inner.cross(w, lam, v)),
        (inner_s.gradient_lambda(ws, lams), inner.gradient_lambda(w, lam)),
        (outer_s.value_and_grad(ws)[1], outer.value_and_grad(w)[1]),
    ]:
        assert_allclose(np.asarray(got), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("loss_name", LOSS_NAMES)
def test_float32_follows_float64(loss_name):
    inner64, _, n_hyper = make_fold(loss_name, "per_feature")
    inner32, _, _ = make_fold(loss_name, "per_feature", dtype=np.float32)
    rng = np.random.default_rng(7)
    w = 0.3 * rng.standard_normal(inner64.n_params)
    lam = rng.uniform(-1, 1, n_hyper)
    value32, grad32 = inner32.value_and_grad(
        w.astype(np.float32), lam.astype(np.float32)
    )
    value64, grad64 = inner64.value_and_grad(w, lam)
    assert grad32.dtype == np.float32
    assert_allclose(value32, value64, rtol=1e-5)
    assert_allclose(grad32, grad64, rtol=1e-4, atol=1e-4 * np.abs(grad64).max())


@pytest.mark.parametrize("weighted", [False, True])
def test_weight_total_is_the_number_or_the_sum_of_the_weights(weighted):
    inner, _, _ = make_fold("binary", n_samples=40, weighted=weighted)
    # the training part of the 40 samples: its rows, or its weights' sum
    expected = inner.sample_weight.sum() if weighted else inner.model.X.shape[0]
    assert (inner.sample_weight is None) != weighted
    assert inner.weight_total == pytest.approx(expected)


@pytest.mark.parametrize("loss_name", ["binary", "multinomial"])
def test_raw_predictions_are_reused_at_the_same_values_only(loss_name, monkeypatch):
    # hessp at the point of the last gradient reuses what that gradient
    # computed (one product with X fewer), also through another array of the
    # same values; any other point gets its own. The results are those of a
    # fresh objective.
    inner, _, n_hyper = make_fold(loss_name)
    fresh, _, _ = make_fold(loss_name)
    lam = np.zeros(n_hyper)
    calls = []
    raw = inner.model.raw
    monkeypatch.setattr(inner.model, "raw", lambda w: calls.append(w) or raw(w))
    w = np.random.default_rng(0).normal(size=inner.n_params)
    v = np.random.default_rng(1).normal(size=inner.n_params)
    value, grad = inner.value_and_grad(w, lam)
    product = inner.hessp(w.copy(), lam)(v)
    assert len(calls) == 2  # raw(w) once, raw(v) for the product
    assert_allclose(product, fresh.hessp(w, lam)(v), rtol=1e-14)
    moved = w + 0.5
    assert_allclose(inner.hessp(moved, lam)(v), fresh.hessp(moved, lam)(v))
    assert calls[-2] is moved
    copy = w.copy()  # not the last point's values: computed again
    inner.value(copy, lam)
    assert calls[-1] is copy
    n_calls = len(calls)
    assert_allclose(inner.value(w, lam), fresh.value(w, lam), rtol=1e-14)
    assert len(calls) == n_calls


@pytest.mark.parametrize("loss_name", LOSS_NAMES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_cold_start_takes_no_forward_product(loss_name, dtype, monkeypatch):
    # X @ 0 is 0: at w = 0 (where every cold solve starts, and the scale of
    # its gradient test is taken) the raw predictions are zeros without a
    # product, in the product's dtype (float32 data, float64 w: float64);
    # a gradient there is a fresh objective's at a point it has to compute.
    inner, _, n_hyper = make_fold(loss_name, weighted=True, dtype=dtype)
    fresh, _, _ = make_fold(loss_name, weighted=True, dtype=dtype)
    calls = []
    raw = inner.model.raw
    monkeypatch.setattr(inner.model, "raw", lambda w: calls.append(w) or raw(w))
    zero, lam = np.zeros(inner.n_params), np.full(n_hyper, 0.5)
    value = inner.value(zero, lam)
    expected = raw(zero)
    assert calls == []
    assert inner._last_point.raw.dtype == expected.dtype == np.float64
    assert_array_equal(inner._last_point.raw, expected)
    value_again, grad = inner.value_and_grad(zero, lam)
    assert calls == [] and value_again == value
    tiny = np.full(inner.n_params, 1e-300)  # not zero: its own product
    expected_value, expected_grad = fresh.value_and_grad(tiny, lam)
    rtol = 1e-14 if dtype == np.float64 else 1e-6
    assert float(value) == pytest.approx(float(expected_value), rel=rtol)
    assert_allclose(grad, expected_grad, rtol=rtol * 10, atol=1e-300)


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("structure", ["scalar", "features"])
@pytest.mark.parametrize("loss_name", LOSS_NAMES)
def test_the_point_of_a_gradient_keeps_its_probabilities_only(
    loss_name, structure, fit_intercept, monkeypatch
):
    # after a gradient of a logistic loss, the point keeps the probabilities
    # the curvature needs, not the raw predictions beside them (an array of
    # the fold's rows less per fold), and the data part of the value and of
    # the gradient: a value or a gradient at that point, at any lambda,
    # takes no product. The squared loss's mean is its raw predictions: one
    # array, kept. Every result is a fresh objective's.
    inner, _, n_hyper = make_fold(loss_name, structure, fit_intercept=fit_intercept)
    fresh, _, _ = make_fold(loss_name, structure, fit_intercept=fit_intercept)
    logistic = not getattr(inner.loss, "constant_curvature", False)
    lam = np.linspace(-1.0, 1.0, n_hyper)
    w = np.random.default_rng(2).normal(size=inner.n_params)
    v = np.random.default_rng(3).normal(size=inner.n_params)
    calls, adjoints = [], []
    raw, adjoint = inner.model.raw, inner.model.adjoint
    monkeypatch.setattr(inner.model, "raw", lambda x: calls.append(x) or raw(x))
    monkeypatch.setattr(
        inner.model, "adjoint", lambda *a: adjoints.append(1) or adjoint(*a)
    )

    def kept():
        point = inner._last_point
        assert point.mean is not None and point.data_grad is not None
        if logistic:
            assert point.raw is None
        else:
            assert point.raw is point.mean
        return point

    def same_gradient(lam):
        value, grad = inner.value_and_grad(w, lam)
        expected_value, expected_grad = fresh.value_and_grad(w.copy(), lam)
        assert float(value) == pytest.approx(float(expected_value), rel=1e-14)
        assert_allclose(grad, expected_grad, rtol=1e-13, atol=1e-14)

    same_gradient(lam)
    kept()
    # a gradient at another lambda, same point; the values
    same_gradient(lam + 1.0)
    kept()
    for shift in (0.0, 1.0):
        expected = fresh.value(w.copy(), lam + shift)
        assert_allclose(inner.value(w, lam + shift), expected, rtol=1e-14)
    assert_allclose(inner.hessp(w, lam)(v), fresh.hessp(w.copy(), lam)(v), rtol=1e-13)
    same_gradient(lam)
    kept()
    assert len(calls) == 2  # raw(w) once, raw(v) for the product
    assert len(adjoints) == 2  # the first gradient's, the product's


@pytest.mark.parametrize("loss_name", LOSS_NAMES)
def test_validation_rows_of_a_shared_matrix_read_the_training_products(loss_name):
    # On a matrix the folds share, the training loss covers every row (zero
    # weights off its own): at the point of its last gradient, the
    # validation loss reads its rows of those raw predictions (kept with the
    # gradient) instead of a product. Anywhere else it computes its own; the
    # results are those of a validation loss alone.
    from skbilevel.objectives import InnerObjective, ValidationLoss

    X, y, loss, n_outputs, n_classes = make_data(loss_name, 50, 6, 4)
    classes = np.arange(n_classes) if n_classes else None
    y_enc = loss.encode(np, y, classes, X.dtype)
    rows = np.arange(50)[::5]
    weights = np.ones(50)
    weights[rows] = 0.0
    penalty = make_penalty("scalar", 6, n_outputs)
    inner = InnerObjective(
        X, y_enc, loss, penalty, n_outputs, sample_weight=weights, shared=True
    )
    outer = ValidationLoss(X, y_enc[rows], loss, n_outputs, rows=rows, sibling=inner)
    alone = ValidationLoss(X[rows], y_enc[rows], loss, n_outputs)
    calls = []
    raw = outer.model.raw
    outer.model.raw = lambda x: calls.append(x) or raw(x)
    rng = np.random.default_rng(5)
    w, other = rng.normal(size=(2, inner.n_params))
    inner.value_and_grad(w, np.zeros(1))
    # the validation rows' raw predictions kept with the gradient (only
    # those: the fold's rows, X's, are not kept beside the probabilities)
    assert inner._last_point.shared.shape[0] == rows.size
    logistic = not getattr(loss, "constant_curvature", False)
    assert (inner._last_point.raw is None) == logistic
    for objective_point in (w.copy(), other):
        value, grad = outer.value_and_grad(objective_point)
        expected_value, expected_grad = alone.value_and_grad(objective_point)
        assert float(value) == pytest.approx(float(expected_value), rel=1e-13)
        assert_allclose(grad, expected_grad, rtol=1e-12, atol=1e-14)
        assert_allclose(outer.value(objective_point), expected_value, rtol=1e-13)
    assert len(calls) == 2 and calls[0] is other  # value_and_grad, value
    for sibling, intercept in ((alone, True), (inner, False)):
        with pytest.raises(ValueError, match="sibling"):
            ValidationLoss(
                X, y_enc[rows], loss, n_outputs, intercept, rows=rows, sibling=sibling
            )
    with pytest.raises(ValueError, match="shared matrix"):
        make_fold(loss_name)[0].share_rows(rows)
    own_rows = InnerObjective(
        X, y_enc[:40], loss, penalty, n_outputs, rows=np.arange(40), shared=True
    )
    with pytest.raises(ValueError, match="sibling"):
        ValidationLoss(X, y_enc[rows], loss, n_outputs, rows=rows, sibling=own_rows)
    with pytest.raises(ValueError, match="every row"):
        own_rows.share_rows(rows)


def _on_the_array_api_path(monkeypatch, *objectives):
    """Make ``objectives`` compute their products by the array-API path."""
    for objective in objectives:
        monkeypatch.setattr(objective.model, "_in_place", lambda: False)


@pytest.mark.parametrize("with_ones", [True, False], ids=["with-ones", "split"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("structure", ["scalar", "per_feature"])
@pytest.mark.parametrize("loss_name", LOSS_NAMES)
def test_in_place_products_match_the_array_api_path(
    loss_name, structure, fit_intercept, weighted, with_ones, monkeypatch
):
    # Dense NumPy folds compute their products by NumPy's own operations
    # (LinearPredictor._in_place), small ones with the intercept as a column
    # of ones: the same objectives on the array-API path agree to round-off,
    # and the Hessian product is the derivative of the gradient.
    if not with_ones:
        monkeypatch.setattr(linear, "_WITH_ONES_MAX_SIZE", 0)
    options = dict(fit_intercept=fit_intercept, weighted=weighted)
    inner, outer, n_hyper = make_fold(loss_name, structure, **options)
    generic, generic_outer, _ = make_fold(loss_name, structure, **options)
    _on_the_array_api_path(monkeypatch, generic, generic_outer)
    assert inner.model._in_place() and outer.model._in_place()
    fused = with_ones and fit_intercept
    assert (inner.model._with_ones is not None) == fused
    assert (inner.model._ones is not None) == (fit_intercept and not fused)
    rng = np.random.default_rng(11)
    w = 0.3 * rng.standard_normal(inner.n_params)
    lam = rng.uniform(-1, 1, n_hyper)
    v = rng.standard_normal(inner.n_params)

    value, grad = inner.value_and_grad(w, lam)
    expected_value, expected_grad = generic.value_and_grad(w, lam)
    assert_allclose(value, expected_value, rtol=1e-13)
    scale = np.abs(expected_grad).max()
    assert_allclose(grad, expected_grad, rtol=1e-12, atol=1e-14 * scale)
    hvp = inner.hessp(w, lam)(v)
    expected_hvp = generic.hessp(w, lam)(v)
    assert_allclose(hvp, expected_hvp, rtol=1e-12, atol=1e-14 * np.abs(hvp).max())
    fd_hvp = central_difference(lambda x: inner.value_and_grad(x, lam)[1], w, v)
    assert_allclose(hvp, fd_hvp, rtol=1e-5, atol=1e-6)
    outer_grad = outer.value_and_grad(w)[1]
    assert_allclose(outer_grad, generic_outer.value_and_grad(w)[1], rtol=1e-12)
    # float32 data with float64 parameters: NumPy's promotion, either path
    inner32, _, _ = make_fold(loss_name, structure, dtype=np.float32, **options)
    generic32, _, _ = make_fold(loss_name, structure, dtype=np.float32, **options)
    _on_the_array_api_path(monkeypatch, generic32)
    hvp32 = inner32.hessp(w, lam)(v)
    expected32 = generic32.hessp(w, lam)(v)
    assert hvp32.dtype == expected32.dtype
    assert_allclose(hvp32, expected32, rtol=1e-5, atol=1e-6 * np.abs(hvp32).max())
    # float32 data and parameters, float64 lam: the penalty's terms promote
    # the results on both paths
    w32, v32 = w.astype(np.float32), v.astype(np.float32)
    for got, want in [
        (inner32.value_and_grad(w32, lam)[1], generic32.value_and_grad(w32, lam)[1]),
        (inner32.hessp(w32, lam)(v32), generic32.hessp(w32, lam)(v32)),
    ]:
        assert got.dtype == want.dtype
        assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())


def test_a_shipped_predictor_makes_its_column_of_ones_again():
    # [X, 1] doubles the data of a small fold: it is not shipped to a worker
    # (folds travel cloudpickled, see skbilevel.outer._placement) but made
    # again there, and the products agree
    inner, _, _ = make_fold("multinomial", n_samples=600, n_features=50)
    model = inner.model
    assert model._with_ones is not None
    payload = _cloudpickle().dumps(model)
    assert len(payload) < model.source.nbytes + model._with_ones.nbytes / 2
    again = pickle.loads(payload)
    assert_array_equal(again._with_ones, model._with_ones)
    rng = np.random.default_rng(0)
    w = rng.standard_normal(model.n_params)
    # a strided w, as a column of a block of parameters
    strided = np.stack([w, w], axis=1)[:, 0]
    assert not strided.flags.c_contiguous
    assert_array_equal(again.raw(strided), model.raw(w))
    r = rng.standard_normal((model.n_samples, model.n_outputs))
    assert_array_equal(again.adjoint(r, 0.5), model.adjoint(r, 0.5))


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("loss_name", LOSS_NAMES)
def test_single_precision_hessian_products_where_their_error_allows(
    loss_name, weighted
):
    # A small dense fold with an intercept: the first product is the double
    # one (it measures the single one's error), the next ones single, within
    # float32 round-off of the double products.
    # (large enough for the single path: SINGLE_MIN_SIZE)
    inner, _, n_hyper = make_fold(
        loss_name, n_samples=6000, n_features=16, weighted=weighted
    )
    assert inner.model.n_samples * inner.n_params >= linear.SINGLE_MIN_SIZE
    rng = np.random.default_rng(5)
    w = 0.3 * rng.standard_normal(inner.n_params)
    lam = np.zeros(n_hyper)
    exact = inner.hessp(w, lam)
    single = inner.hessp(w, lam, single=True)
    first, second = rng.standard_normal((2, inner.n_params))
    assert_array_equal(single(first), exact(first))
    product, reference = single(second), exact(second)
    assert product.dtype == np.float64
    assert not np.array_equal(product, reference)
    assert_allclose(product, reference, rtol=1e-5, atol=1e-5 * np.abs(reference).max())


def test_badly_scaled_data_keep_double_precision_hessian_products():
    # Columns scaled from 1e-3 to 1e3: the single products' error, next to
    # the penalty's curvature, is far above SINGLE_MAX_ERROR; every product
    # stays the double one.
    inner, _, n_hyper = make_fold("multinomial", n_samples=6000, n_features=8)
    X = inner.model.source * np.logspace(-3, 3, 8)
    scaled = type(inner)(X, inner.y, inner.loss, inner.penalty, inner.model.n_outputs)
    # a fold the single path serves, but for its error
    assert scaled.model.single_operand() is not None
    assert scaled.model.n_samples * scaled.n_params >= linear.SINGLE_MIN_SIZE
    rng = np.random.default_rng(6)
    w = 0.01 * rng.standard_normal(scaled.n_params)
    lam = np.zeros(n_hyper)
    exact, single = scaled.hessp(w, lam), scaled.hessp(w, lam, single=True)
    for v in rng.standard_normal((3, scaled.n_params)):
        assert_array_equal(single(v), exact(v))


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_single_precision_only_on_small_dense_folds_with_an_intercept(
    fit_intercept,
):
    # Without the [X, 1] products (no intercept, sparse data) there is no
    # single-precision path: the products are the double ones.
    for sparse in (False, True):
        inner, _, n_hyper = make_fold(
            "binary",
            sparse=sparse,
            fit_intercept=fit_intercept,
            n_samples=6000,
            n_features=20,
        )
        # large enough for the single path, were there one
        n_entries = inner.model.n_samples * (inner.model.n_features + 1)
        assert n_entries >= linear.SINGLE_MIN_SIZE
        fused = fit_intercept and not sparse
        assert (inner.model.single_operand() is not None) == fused
        if fused:
            continue
        rng = np.random.default_rng(7)
        w, lam = rng.standard_normal(inner.n_params), np.zeros(n_hyper)
        exact, single = inner.hessp(w, lam), inner.hessp(w, lam, single=True)
        for v in rng.standard_normal((2, inner.n_params)):
            assert_array_equal(single(v), exact(v))


def test_products_a_router_serves_are_asked_of_it():
    # the products of a fold in lockstep go to the router of its thread,
    # not to NumPy's own operations
    from skbilevel.objectives._products import routing

    inner, _, n_hyper = make_fold("multinomial", weighted=True)
    fresh, _, _ = make_fold("multinomial", weighted=True)
    X = inner.model.source

    class Router:
        asks = []

        def serves(self, source):
            return source is X

        def ask(self, kind, operand):
            self.asks.append(kind)
            return X @ operand if kind == "forward" else X.T @ operand

    rng = np.random.default_rng(12)
    w, v = rng.standard_normal((2, inner.n_params))
    lam = np.zeros(n_hyper)
    with routing(Router()) as router:
        assert not inner.model._in_place()
        value, grad = inner.value_and_grad(w, lam)
        hvp = inner.hessp(w, lam)(v)
    assert router.asks == ["forward", "adjoint", "forward", "adjoint"]
    assert inner.model._in_place()
    expected_value, expected_grad = fresh.value_and_grad(w, lam)
    assert_allclose(value, expected_value, rtol=1e-13)
    assert_allclose(grad, expected_grad, rtol=1e-12, atol=1e-14)
    assert_allclose(hvp, fresh.hessp(w, lam)(v), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("loss_name", ["binary", "multinomial"])
def test_hessp_reuses_the_probabilities_of_its_point_only(loss_name, monkeypatch):
    # The curvature at the point of the last gradient comes from that
    # gradient's probabilities (no softmax again). Another lambda at that
    # point reuses them rightly, and so does another array of the same
    # values; another point, or the same array modified in place, computes
    # its own. Each
    # product is a fresh objective's at a new array (which it cannot reuse).
    inner, _, n_hyper = make_fold(loss_name, weighted=True)
    fresh, _, _ = make_fold(loss_name, weighted=True)
    computed = []
    curvature = inner.loss.curvature
    monkeypatch.setattr(
        inner.loss, "curvature", lambda *args: computed.append(1) or curvature(*args)
    )
    rng = np.random.default_rng(13)
    w = rng.normal(size=inner.n_params)
    v = rng.normal(size=inner.n_params)
    lam = np.zeros(n_hyper)

    def expected(point, lam):
        return fresh.hessp(point.copy(), lam)(v)

    inner.value_and_grad(w, lam)
    assert_allclose(inner.hessp(w, lam)(v), expected(w, lam), rtol=1e-14)
    assert_allclose(inner.hessp(w, lam + 1.0)(v), expected(w, lam + 1.0), rtol=1e-14)
    assert computed == []  # the gradient's probabilities, twice
    # (a shift of every raw prediction alike leaves a softmax as it is)
    change = rng.normal(size=inner.n_params)
    moved = w + change
    assert_allclose(inner.hessp(moved, lam)(v), expected(moved, lam), rtol=1e-14)
    assert len(computed) == 1
    inner.value_and_grad(moved, lam)
    assert_allclose(inner.hessp(w, lam)(v), expected(w, lam), rtol=1e-14)
    inner.value_and_grad(w, lam)
    # another array of the same values: the same point
    assert_allclose(inner.hessp(w.copy(), lam)(v), expected(w, lam), rtol=1e-14)
    assert len(computed) == 2
    # modified in place after its gradient: not the point of that gradient
    inner.value_and_grad(w, lam)
    before = expected(w, lam)
    w += change
    after = expected(w, lam)
    assert not np.allclose(after, before, rtol=1e-3)
    assert_allclose(inner.hessp(w, lam)(v), after, rtol=1e-14)
    assert_allclose(inner.value(w, lam), fresh.value(w.copy(), lam), rtol=1e-14)


def test_shipped_objectives_leave_the_reused_predictions_behind():
    cloudpickle = pytest.importorskip("cloudpickle")
    inner, _, _ = make_fold("binary")
    w, lam = np.ones(inner.n_params), np.zeros(1)
    inner.value_and_grad(w, lam)
    assert inner._last_point is not None
    shipped = cloudpickle.loads(cloudpickle.dumps(inner))
    assert shipped._last_point is None
    assert_allclose(shipped.value(w, lam), inner.value(w, lam))


@pytest.mark.parametrize("n_classes", [3, 40])  # the column loop, and xp.max
def test_multinomial_loss_is_the_softmax_cross_entropy(n_classes):
    from scipy.special import logsumexp, softmax

    from skbilevel.objectives import MultinomialLogisticLoss

    rng = np.random.default_rng(0)
    raw = rng.standard_normal((50, n_classes))
    # rows whose largest entry (in every column in turn) overflows exp unshifted
    raw[:n_classes] += 1000.0 * np.eye(n_classes)
    labels = rng.integers(n_classes, size=50)
    Y = np.eye(n_classes)[labels]
    loss = MultinomialLogisticLoss()
    expected = logsumexp(raw, axis=1) - raw[np.arange(50), labels]
    value, gradient = loss.value_and_gradient(np, Y, raw)
    assert_allclose(value, expected, rtol=1e-12, atol=1e-12)
    assert_allclose(loss.value(np, Y, raw), expected, rtol=1e-12, atol=1e-12)
    proba = softmax(raw, axis=1)
    assert_allclose(gradient, proba - Y, atol=1e-14)
    direction = rng.standard_normal(raw.shape)
    curvature = loss.curvature(np, Y, raw)
    # (diag(p) - p p') r, row by row
    expected_product = np.stack(
        [(np.diag(p) - np.outer(p, p)) @ r for p, r in zip(proba, direction)]
    )
    assert_allclose(
        loss.hessian_product(np, curvature, direction), expected_product, atol=1e-12
    )
