"""Array-API-generic L-BFGS that keeps its secant memory.

The inner problems of skbilevel are smooth and strongly convex (an L2 penalty of
strength ``exp(lambda) > 0``). L-BFGS solves them with about one evaluation of the
loss and its gradient per iteration, and its memory of secant pairs is an
inverse-Hessian estimate that SHINE reuses for the hypergradient. Two features
serve the bilevel loop:

* warm start: the memory of the previous inner solve (for neighbouring
  hyperparameters) is used from the first iteration on;
* outer-problem awareness (OPA, Ramzi et al. 2022): extra secant pairs along a
  direction given by the outer problem make the estimate accurate where the
  hypergradient needs it.

All arithmetic goes through the namespace of ``x0``: the same code runs on NumPy,
CuPy and any array-API library. 0-d arrays become Python floats only for the
scalar decisions (line search, stopping tests, curvature test).
"""

from typing import Any, NamedTuple

from ..utils._array_api import get_namespace, norm, vdot
from ._line_search import line_search_wolfe
from ._memory import LBFGSMemory, append_pair, empty_memory, inv_hessian_product
from ._stopping import GradientTest, check_iterations

__all__ = ["LBFGSResult", "minimize_lbfgs"]

# Strong Wolfe constants of Nocedal & Wright (Section 3.1) for quasi-Newton
# methods: c2 = 0.9 accepts the unit step in most iterations.
_C1 = 1e-4
_C2 = 0.9
# Round-off level of f, relative to |f|, for the approximate Wolfe test of the
# line search, as a power of eps. A loss summing many terms of either sign carries
# errors well above eps |f|; eps**0.5 bounds them (Hager & Zhang 2005 use 1e-6
# in float64, here 1.5e-8; 3.5e-4 in float32).
_VALUE_NOISE_POWER = 0.5
# When OPA follows a zero step, the secant probe has length 1e-3 * max(1, ||x||):
# long enough for the gradient difference to be well above round-off.
_OPA_FALLBACK_LENGTH = 1e-3


class LBFGSResult(NamedTuple):
    """Outcome of :func:`minimize_lbfgs`.

    Attributes
    ----------
    x : array of shape (n_params,)
        Solution.
    value : float
        ``f(x)``.
    grad : array of shape (n_params,)
        ``grad f(x)``.
    grad_norm : float
        Euclidean norm of ``grad``.
    n_iter : int
        Number of accepted L-BFGS steps.
    n_fun : int
        Number of calls to ``fun``, OPA probes included.
    converged : bool
        Whether a stopping test (gradient norm or relative decrease) was met.
    memory : LBFGSMemory
        Final secant pairs, for a warm start or for SHINE (those before the
        failed search when the line search fails).
    message : str
        Why the solver stopped.
    """

    x: Any
    value: float
    grad: Any
    grad_norm: float
    n_iter: int
    n_fun: int
    converged: bool
    memory: LBFGSMemory
    message: str


class _Iterate(NamedTuple):
    """A point with its value and gradient (arrays as returned by ``fun``)."""

    x: Any
    value: float
    grad: Any
    grad_norm: float


def minimize_lbfgs(
    fun,
    x0,
    *,
    tol=1e-4,
    gtol_scale=None,
    gtol_norm="l2",
    gtol_floor=None,
    max_iter=1000,
    min_iter=0,
    memory_size=10,
    memory=None,
    ftol=None,
    max_linesearch=20,
    secant_direction=None,
    secant_every=1,
    callback=None,
):
    """Minimize a smooth function with L-BFGS and a strong Wolfe line search.

    Parameters
    ----------
    fun : callable
        ``fun(x) -> (value, grad)`` with ``value`` a float or 0-d array and
        ``grad`` an array of shape (n_params,) in the namespace of ``x``. Neither
        ``x`` nor the returned arrays are modified.
    x0 : array of shape (n_params,)
        Starting point (floating dtype). Not modified.
    tol : float
        Stop when ``||grad f(x)|| <= tol * gtol_scale`` (in the norm
        ``gtol_norm``), or when no gradient entry exceeds ``gtol_floor``.
    gtol_scale : float or None
        Reference gradient norm for ``tol``. None uses ``||grad f(x0)||``; pass a
        fixed scale (e.g. the gradient norm at zero) so that a warm start does
        not make the test stricter.
    gtol_norm : {"l2", "max"}, default="l2"
        The norm of the gradient test: Euclidean, or the largest absolute
        component (L-BFGS-B's projected-gradient test, as scikit-learn's
        ``LogisticRegression(solver="lbfgs")`` applies it).
    gtol_floor : float or None, default=None
        Also stop when no gradient entry exceeds ``gtol_floor``: an accuracy
        the solve need not exceed, however small ``tol * gtol_scale`` is
        (None: none).
    max_iter : int
        Maximum number of L-BFGS steps. ``0`` only evaluates ``fun(x0)``.
    min_iter : int, default=0
        Steps at least before the gradient test may stop the solve (a warm
        start from another problem may pass a loose test with that
        problem's gradient); at most ``max_iter``.
    memory_size : int
        Maximum number of secant pairs kept.
    memory : LBFGSMemory or None
        Secant pairs of a previous solve, used from the first iteration on.
    ftol : float or None
        Also stop when an iteration decreases ``f`` by less than ``ftol`` times
        ``max(|f_old|, |f_new|)``. None uses ``10 * eps`` of the dtype of ``x0``:
        below that the decrease is round-off (it matters in float32). ``0``
        disables the test (to solve to a tight ``tol`` in float64).
    max_linesearch : int
        Maximum number of evaluations of ``fun`` per line search.
    secant_direction : callable or None
        OPA: ``secant_direction(x) -> array of shape (n_params,) or None``. After
        every ``secant_every``-th step, the pair ``(t d, grad f(x + t d) - grad
        f(x))`` with ``||t d||`` equal to the step just taken is added to the
        memory (one extra call to ``fun``); the iterate does not move.
    secant_every : int
        Period, in iterations, of the OPA pairs.
    callback : callable or None
        ``callback(x, grad)`` after each iteration; a truthy return stops.

    Returns
    -------
    LBFGSResult

    Notes
    -----
    Directions come from the two-loop recursion on the memory
    (:func:`inv_hessian_product`), first tried at the unit step; without memory,
    or when the memory gives no descent direction, from ``-grad`` at a first step
    of length at most 1. Steps satisfy the strong Wolfe conditions
    (``c1 = 1e-4``, ``c2 = 0.9``), with the approximate sufficient-decrease test
    of :func:`~skbilevel.solvers._line_search.line_search_wolfe` once changes of
    ``f`` are below ``sqrt(eps) |f|``. When a line search fails, the memory is
    dropped and the search retried along ``-grad``; a second failure stops.
    """
    xp = get_namespace(x0)
    eps = float(xp.finfo(x0.dtype).eps)
    ftol = 10.0 * eps if ftol is None else ftol
    value_noise = eps**_VALUE_NOISE_POWER
    min_iter = check_iterations(gtol_norm, min_iter, max_iter)

    current = _evaluate(fun, xp, x0)
    gtol = tol * (current.grad_norm if gtol_scale is None else gtol_scale)
    test = GradientTest(xp, gtol, gtol_norm, gtol_floor)

    def passes(point):
        return test.passes(point.grad, point.grad_norm)

    memory = empty_memory() if memory is None else memory
    n_fun = 1

    def result(n_iter, converged, message):
        return LBFGSResult(
            current.x, current.value, current.grad, current.grad_norm,
            n_iter, n_fun, converged, memory, message,
        )  # fmt: skip

    if min_iter <= 0 and passes(current):
        return result(0, True, "gradient norm below tol")
    for n_iter in range(1, max_iter + 1):
        search, search_memory, n_eval = _search(
            fun, xp, current, memory, max_linesearch, value_noise * abs(current.value)
        )
        n_fun += n_eval
        if not search.success:
            # The pairs are still valid secants: keep them for SHINE.
            if search.point is not None and search.value < current.value:
                current = search.point
            # a point that passes already (a step min_iter forced from it)
            # is a solution all the same
            return result(n_iter - 1, passes(current), "line search failed")
        memory = search_memory
        previous, current = current, search.point
        step = current.x - previous.x
        y = current.grad - previous.grad
        # The probe pair goes before the step pair: the newest pair sets the
        # initial scaling gamma = s'y / y'y of the two-loop recursion, which the
        # step estimates better than an arbitrary probe direction.
        if secant_direction is not None and n_iter % secant_every == 0:
            memory, n_eval = _add_opa_pair(
                fun, xp, current, step, secant_direction, memory, memory_size, eps
            )
            n_fun += n_eval
        memory = _add_pair(xp, memory, step, y, memory_size, eps)
        if callback is not None and callback(current.x, current.grad):
            return result(n_iter, False, "stopped by callback")
        if n_iter >= min_iter and passes(current):
            return result(n_iter, True, "gradient norm below tol")
        scale = max(abs(previous.value), abs(current.value))
        if ftol > 0 and previous.value - current.value <= ftol * scale:
            return result(n_iter, True, "relative decrease of f below ftol")
    return result(max_iter, False, "max_iter reached")


def _evaluate(fun, xp, x):
    value, grad = fun(x)
    return _Iterate(x, float(value), grad, float(norm(xp, grad)))


def _search(fun, xp, current, memory, max_linesearch, value_tol):
    """Line search along the quasi-Newton direction, then along ``-grad``.

    ``value_tol`` is the round-off level of ``f`` below which the line search
    tests sufficient decrease on slopes (see :func:`line_search_wolfe`).

    Returns
    -------
    search : LineSearchResult
        Its ``point`` is an ``_Iterate``.
    memory : LBFGSMemory
        ``memory``, or an empty one when it gave no usable direction.
    n_eval : int
        Calls to ``fun``.
    """
    failed = None
    if len(memory) > 0:
        direction = -inv_hessian_product(xp, memory, current.grad)
        slope = float(vdot(xp, current.grad, direction))
        if slope < 0.0:  # also rejects nan
            search = _line_search(
                fun, xp, current, direction, slope, 1.0, max_linesearch, value_tol
            )
            if search.success:
                return search, memory, search.n_eval
            failed = search
        memory = empty_memory()
    # Steepest descent: a first step of length at most 1.
    step_init = min(1.0, 1.0 / current.grad_norm)
    search = _line_search(
        fun, xp, current, -current.grad, -current.grad_norm**2, step_init,
        max_linesearch, value_tol,
    )  # fmt: skip
    if failed is None:
        return search, memory, search.n_eval
    n_eval = failed.n_eval + search.n_eval
    if not search.success and failed.value < search.value:
        search = failed
    return search, memory, n_eval


def _line_search(fun, xp, current, direction, slope, step_init, max_eval, value_tol):
    def evaluate(step):
        trial = _evaluate(fun, xp, current.x + step * direction)
        return trial.value, float(vdot(xp, trial.grad, direction)), trial

    return line_search_wolfe(
        evaluate, current.value, slope, step_init,
        c1=_C1, c2=_C2, value_tol=value_tol, max_eval=max_eval,
    )  # fmt: skip


def _add_pair(xp, memory, s, y, memory_size, eps):
    """Append ``(s, y)`` when it satisfies the curvature test ``s'y > eps y'y``.

    ``s'y / y'y`` is the step length the pair assigns along ``y``; a pair where
    it is at round-off level would make the two-loop recursion divide by a
    noise-dominated ``s'y``.
    """
    sy = vdot(xp, s, y)
    if float(sy) > eps * float(vdot(xp, y, y)):
        return append_pair(memory, s, y, sy, memory_size)
    return memory


def _add_opa_pair(fun, xp, current, step, secant_direction, memory, size, eps):
    """Add the OPA secant pair along ``secant_direction(current.x)``.

    Returns the updated memory and the number of calls to ``fun`` (0 or 1).
    """
    direction = secant_direction(current.x)
    if direction is None:
        return memory, 0
    direction_norm = float(norm(xp, direction))
    if not direction_norm > 0.0:
        return memory, 0
    length = float(norm(xp, step))
    if length == 0.0:
        length = _OPA_FALLBACK_LENGTH * max(1.0, float(norm(xp, current.x)))
    s = (length / direction_norm) * direction
    _, grad = fun(current.x + s)
    return _add_pair(xp, memory, s, grad - current.grad, size, eps), 1
