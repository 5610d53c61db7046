"""Tests for the coarse bracket that picks HOAG's starting point, and for the
line steps of a one-penalty search after it."""

from types import SimpleNamespace

import numpy as np
import pytest

from skbilevel.outer import hoag
from skbilevel.outer._bracket import FIRST_LOOSEN, FIRST_RETRY, LOOSEN, run_bracket
from skbilevel.outer._step import (
    DECREASE_STOP,
    EXPAND,
    hermite_minimizer,
    hermite_value,
    one_penalty_step,
)
from skbilevel.outer.hoag import _line_points
from skbilevel.outer.problem import Evaluation


class _ScriptedTrace:
    """Answers each bracket point with the next (value, slope) of a script."""

    def __init__(self, script):
        self.script, self.points = list(script), []
        self.loosen, self.retry = [], []

    def run(self, point, step, phase, *, accepted, loosen, retry=None):
        value, slope = self.script[len(self.points)]
        self.points.append(float(point[0]))
        self.loosen.append(loosen)
        self.retry.append(retry)
        evaluation = SimpleNamespace(lam=point, value=value, grad=np.array([slope]))
        return evaluation, {"accepted": accepted}

    def report(self, record):
        return None


def test_a_steepening_slope_takes_half_a_step_at_full_tolerance():
    # h' grows from the first point to the second: no secant curvature, so
    # the third point is half a full step further, solved at full tolerance
    low, high = np.array([-10.0]), np.array([10.0])
    trace = _ScriptedTrace([(1.0, 0.01), (0.8, 0.2), (0.5, -0.1)])
    bracket = run_bracket(trace, low, high, 5)
    spacing = 20.0 / 4
    assert trace.points[:2] == [10.0, 10.0 - spacing]
    # half of the full step of 5: from 5 to 2.5 (CONCAVE_STEP = 0.5)
    assert trace.points[2] == pytest.approx(2.5)
    # the flat end loosest, the full-width jump loose, the half step tight
    assert trace.loosen == [FIRST_LOOSEN, LOOSEN, 1.0]
    # a fold of the first point that is not in the flat end goes on
    assert trace.retry == [FIRST_RETRY, None, None] and FIRST_RETRY < FIRST_LOOSEN
    assert bracket.best.value == 0.5 and len(bracket.points) == 3


def test_a_flattening_slope_takes_the_secant_step():
    low, high = np.array([-10.0]), np.array([10.0])
    trace = _ScriptedTrace([(1.0, 0.4), (0.6, 0.1), (0.55, -0.01)])
    run_bracket(trace, low, high, 5)
    # secant root of h' through (10, 0.4) and (5, 0.1): 5 - 0.1 / 0.06
    assert trace.points[2] == pytest.approx(5.0 - 0.1 / 0.06)


def test_a_secant_point_that_passes_hoags_tests_ends_the_search():
    # the third point is reached by a secant step; its slope predicts a
    # decrease of 1e-7 (slope^2 / (2 * curvature)), below tol * |h| = 5e-5
    low, high = np.array([-10.0]), np.array([10.0])
    script = [(1.0, 0.4), (0.6, 0.1), (0.5, 1e-3), (0.55, -1e-4)]
    trace = _ScriptedTrace(script)
    bracket = run_bracket(trace, low, high, 5, tol=1e-4)
    assert len(trace.points) == 3
    assert bracket.converged == "predicted decrease of h below tol"
    assert bracket.best.value == 0.5
    # without tol, the bracket walks on (to a worse point)
    trace = _ScriptedTrace(script)
    assert run_bracket(trace, low, high, 5).converged is None
    assert len(trace.points) == 4


def test_hoags_tests_do_not_apply_in_the_flat_end():
    # a tiny hypergradient at full-width points (the strongly penalized end)
    # is no convergence: the bracket leaves it
    low, high = np.array([-10.0]), np.array([10.0])
    trace = _ScriptedTrace([(1.0, 1e-6), (0.99, 2e-6), (0.5, -0.1)])
    bracket = run_bracket(trace, low, high, 5, tol=1e-4)
    assert bracket.converged is None and len(trace.points) == 3


def test_a_point_reached_by_a_concave_half_step_is_no_convergence():
    # leaving the flat end: the slope steepens (no secant curvature), the
    # half step lands on a point whose hypergradient is still tiny; the
    # bracket goes on instead of declaring convergence there
    low, high = np.array([-10.0]), np.array([10.0])
    trace = _ScriptedTrace([(1.0, 1e-7), (0.99, 1e-6), (0.98, 5e-5), (0.5, -0.1)])
    bracket = run_bracket(trace, low, high, 5, tol=1e-4)
    assert trace.loosen[2] == 1.0  # the half step's point, at full tolerance
    assert bracket.converged is None and len(trace.points) == 4


def test_a_secant_point_with_a_small_hypergradient_ends_the_search():
    low, high = np.array([-10.0]), np.array([10.0])
    trace = _ScriptedTrace([(1.0, 0.4), (0.6, 0.1), (0.5, 5e-5)])
    bracket = run_bracket(trace, low, high, 5, tol=1e-4)
    assert bracket.converged == "projected hypergradient norm below tol"
    assert len(trace.points) == 3


class _ScriptedTrace2D(_ScriptedTrace):
    """Two penalties: each scripted slope is the gradient ``[a, b]``."""

    def run(self, point, step, phase, *, accepted, loosen, retry=None):
        value, grad = self.script[len(self.points)]
        self.points.append(float(point[0]))
        self.loosen.append(loosen)
        self.retry.append(retry)
        evaluation = SimpleNamespace(lam=point, value=value, grad=np.array(grad))
        return evaluation, {"accepted": accepted}


def test_the_predicted_decrease_along_the_diagonal_needs_one_penalty():
    # two penalties: the diagonal's slope sum(grad) is 1e-3 (a decrease of
    # 1e-5 predicted along it), but the gradient [0.5, -0.499] is large:
    # the search is not over
    low, high = np.full(2, -10.0), np.full(2, 10.0)
    script = [(1.0, [0.2, 0.2]), (0.6, [0.05, 0.05]), (0.5, [0.5, -0.499])]
    trace = _ScriptedTrace2D(script + [(0.55, [-0.1, -0.1])])
    bracket = run_bracket(trace, low, high, 5, tol=1e-4)
    assert bracket.converged is None and len(trace.points) == 4


# -- the steps of a one-penalty search --------------------------------------------


def _points(h, dh, ts):
    return [(t, h(t), dh(t)) for t in ts]


def _step(points, max_step=2.0):
    return one_penalty_step(min(points, key=lambda p: p[1]), points, max_step)


@pytest.mark.parametrize(
    "c, ts, larger",
    [(0.1, [3.0, 1.4, 0.5], "quadratic"), (0.1, [0.7, 1.6], "cubic")],
)
def test_one_penalty_step_lands_on_a_bracketed_cubics_minimum(c, ts, larger):
    # h is itself a cubic: the interpolation is exact (its minimizer and its
    # values), and the decrease kept is the larger of the one left from the
    # lowest point and the bracket's secant quadratic
    def h(t):
        return (t - 1.0) ** 2 + c * (t - 1.0) ** 3

    def dh(t):
        return 2 * (t - 1.0) + 3 * c * (t - 1.0) ** 2

    points = _points(h, dh, ts)
    step = _step(points)
    assert step.lam == pytest.approx(1.0, abs=1e-12)
    (t0, f0, d0), (t1, f1, d1) = sorted(points, key=lambda p: p[1])[:2]
    for t in (t0, 1.0, t1, 0.5 * (t0 + t1)):
        assert hermite_value(t0, f0, d0, t1, f1, d1, t) == pytest.approx(h(t))
    left, quadratic = f0 - h(1.0), d0 * d0 / (2 * (d1 - d0) / (t1 - t0))
    assert step.decrease == pytest.approx(max(left, quadratic))
    assert (left > quadratic) == (larger == "cubic")


def test_one_penalty_step_doubles_the_secant_step_before_a_bracket():
    # every point on the penalized side of the minimum (h' > 0 at both):
    # the secant step from the lowest point, twice over, capped
    def h(t):
        return np.exp(t) - 2 * t  # minimum at log 2, h' flattening towards it

    def dh(t):
        return np.exp(t) - 2

    points = _points(h, dh, [3.0, 2.0])
    secant = (dh(2.0) - dh(3.0)) / (2.0 - 3.0)
    step = _step(points, max_step=10.0)
    assert step.decrease is None
    assert step.lam == pytest.approx(2.0 - EXPAND * dh(2.0) / secant)
    # the secant step falls short where h' flattens; twice over goes further
    assert 2.0 - dh(2.0) / secant > step.lam > np.log(2)
    assert _step(points, max_step=0.5).lam == pytest.approx(1.5)


def test_one_penalty_step_over_a_wide_bracket_predicts_the_larger_decrease():
    # The far end lies in a flat stretch (a noiseless search's points on the
    # logistic problem of test_hoag.py): the cubic across the bracket
    # understates what is left next to the lowest point (the minimum is at
    # 2.46, h there 3.3e-5 lower), the bracket's secant quadratic does not.
    # At tol=1e-4 the cubic alone would stop the search; the larger does not.
    lowest, far = (2.515, 0.588566, 0.00131), (0.0, 0.62197, -0.01395)
    step = _step([lowest, far])
    exact = hermite_minimizer(*lowest, *far, margin=0.0)
    cubic = lowest[1] - hermite_value(*lowest, *far, exact)
    secant = (far[2] - lowest[2]) / (far[0] - lowest[0])
    assert step.decrease == pytest.approx(lowest[2] ** 2 / (2 * secant))
    assert cubic < 1e-4 * lowest[1] < step.decrease


@pytest.mark.parametrize(
    "points",
    [
        [(1.0, 0.5, 0.0), (2.0, 0.7, 0.1)],  # a zero slope: the gradient's test
        [(1.0, 0.5, 0.1)],  # nothing to compare with
        [(1.0, 0.5, 0.1), (2.0, 0.6, 0.05)],  # steepening: no secant curvature
        [(1.0, 0.5, 0.1), (2.0, np.nan, 0.2)],  # a failed evaluation
    ],
)
def test_one_penalty_step_leaves_other_cases_to_the_step_control(points):
    assert one_penalty_step(points[0], points, max_step=2.0) is None


def test_a_bracket_without_secant_curvature_predicts_no_decrease():
    # the slope grows towards the far end, which is higher: a cubic step
    # inside the bracket, but no decrease to stop on (a negative secant)
    lowest, far = (1.0, 0.5, 0.1), (0.0, 0.7, 0.3)
    step = one_penalty_step(lowest, [lowest, far], max_step=2.0)
    assert step.decrease is None
    assert step.lam == pytest.approx(hermite_minimizer(*lowest, *far))
    assert 0.05 <= step.lam <= 0.95


class _LineProblem:
    """``h(t) = cosh(t - 1)`` with hypergradients off by +-5e-4 in turn (the
    inexact solves' noise), for :func:`hoag` over one penalty."""

    n_hyper = 1

    def __init__(self):
        self.calls = 0

    def evaluate(self, lam, *, inner_tol, linear_tol, floor=None, retry_tol=None):
        t = float(np.asarray(lam)[0])
        self.calls += 1
        noise = 5e-4 * (-1) ** self.calls
        value = float(np.cosh(t - 1.0))
        grad = np.array([np.sinh(t - 1.0) + noise])
        return Evaluation(
            np.array([t]), value, grad, np.array([value]), 1, 1, 0, True, None, 0.0
        )


def test_a_one_penalty_search_stops_on_the_bracketed_decrease():
    # From t = 4 the line steps bracket the minimum at 1 and stop on the
    # decrease the bracket predicts, well before the noisy hypergradient
    # (|h'| >= 5e-4 - |sinh|) could pass the tolerance's norm test.
    problem = _LineProblem()
    tol = 1e-6
    result = hoag(problem, [4.0], bounds=(-5.0, 5.0), tol=tol, init_step=1.0)
    assert result.converged and result.message == DECREASE_STOP
    # within sqrt(2 tol |h| / h'') of the minimum, up to the noise's share
    assert abs(result.lam[0] - 1.0) <= np.sqrt(2 * tol) + 1e-3
    assert problem.calls <= 6  # 7 with gradient steps after the first
    # each line step left from the lowest point seen before it, to the
    # point one_penalty_step gives from all the points before it
    history = result.history
    line_steps = 0
    for k in range(2, len(history)):
        lowest = min(history[:k], key=lambda record: record["value"])
        assert history[k]["step_size"] == pytest.approx(
            abs(history[k]["lam"][0] - lowest["lam"][0]) / abs(lowest["grad"][0])
        )
        line = one_penalty_step(
            (float(lowest["lam"][0]), lowest["value"], float(lowest["grad"][0])),
            _line_points(history[:k]),
            max_step=2.0,
        )
        if line is not None:
            assert history[k]["lam"][0] == pytest.approx(line.lam, rel=1e-12)
            line_steps += 1
    assert line_steps >= 3
    # the stop: the decrease the last bracket predicts is below tol |h|
    best = min(history, key=lambda record: record["value"])
    final = one_penalty_step(
        (float(best["lam"][0]), best["value"], float(best["grad"][0])),
        _line_points(history),
        max_step=2.0,
    )
    assert final.decrease <= tol * abs(best["value"])
