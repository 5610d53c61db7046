"""Truncated Newton (Newton-CG) for the tight re-solves near a known solution.

A search's fold fits stop loosely; the point it returns is re-solved to a tight
tolerance (the polish), and the final model is refit from the folds' mean
solution. Both start close to the optimum of a smooth, strongly convex
objective, where Newton's method converges quadratically: a few Newton steps,
each an inexact conjugate-gradient solve of ``H p = -g`` with Hessian-vector
products, replace the hundreds of L-BFGS iterations that a tolerance of 1e-8
takes (measured on a 10-class Fashion-MNIST subset, 5 folds: 1232 L-BFGS
iterations against 25 gradients and 1032 Hessian-vector products, 1.7x
faster; on digits 2.2x).

The CG tolerance follows the forcing sequence ``eta_k = min(0.5,
sqrt(||g_k|| / ||g_0||))`` (Nocedal & Wright, Algorithm 7.1, superlinear
convergence), but not below ``gtol / (10 ||g_k||)`` for tolerances of 1e-7
and above: a step whose model gradient is already well under the target does
not need a tighter solve (a polish to a loose tolerance is one cheap step).
With a test on the largest gradient entry (scikit-learn's,
``gtol_norm="max"``, or a floor, ``gtol_floor``) CG also stops once the
model gradient (the CG residual) has no entry above half that bound: folds
a search solved nearly that far are polished in a few products. The step is
accepted by backtracking on the Armijo condition, or whole when ``f`` moved
by round-off only and the gradient is smaller there. With ``xtol`` (the refits
from the folds' mean solution), the steps until a short one are solved to a
relative residual of 0.1 at most, without that early stop: such a step
measures the distance to the solution, which a gradient test cannot see
along directions of weak curvature.
"""

from ..hypergrad._krylov import preconditioned_cg
from ..hypergrad.base import check_positive_float
from ..utils._array_api import get_namespace, norm, vdot
from ._memory import empty_memory, stacked_memory
from ._stopping import GradientTest, check_iterations
from .lbfgs import LBFGSResult

__all__ = ["minimize_newton_cg"]

_C1 = 1e-4  # Armijo constant
_MAX_BACKTRACK = 30
_MAX_CG = 250
# Smallest relative tolerance whose steps are solved just enough for the test.
_LOOSE_TOL = 1e-7
# CG tolerance of the steps that measure the distance to the solution (xtol):
# the step is then that distance to within a tenth.
_MEASURING_FORCING = 0.1


def minimize_newton_cg(
    fun,
    hessp,
    x0,
    *,
    tol=1e-8,
    gtol_scale=None,
    gtol_norm="l2",
    gtol_floor=None,
    max_iter=100,
    min_iter=0,
    xtol=None,
    memory=None,
    memory_size=None,
    tracker=None,
):
    """Minimize a smooth strongly convex function by Newton-CG from ``x0``.

    Parameters
    ----------
    fun : callable
        ``fun(x) -> (value, grad)``.
    hessp : callable
        ``hessp(x) -> (v -> H(x) v)``: the Hessian at ``x`` as a matvec.
    x0 : array of shape (n_params,)
        Starting point (not modified).
    tol : float, default=1e-8
        Stop when ``||grad f(x)|| <= tol * gtol_scale`` (in the norm
        ``gtol_norm``), when no gradient entry exceeds ``gtol_floor``, or when
        a step decreases ``f`` by less than ``10 * eps`` relative
        (round-off; not a full Newton step taken on a smaller gradient where
        ``f`` rose by that much at most).
    gtol_scale : float or None, default=None
        Reference gradient norm for ``tol``; None uses ``||grad f(x0)||``.
    gtol_norm : {"l2", "max"}, default="l2"
        The norm of the gradient test: Euclidean, or the largest absolute
        component (the projected-gradient test of L-BFGS-B, which
        scikit-learn's ``LogisticRegression(solver="lbfgs")`` applies to its
        objective per unit of sample weight). The conjugate-gradient
        tolerances follow the Euclidean norm either way.
    gtol_floor : float or None, default=None
        Also stop when no gradient entry exceeds ``gtol_floor``: an accuracy
        the solve need not exceed, however small ``tol * gtol_scale`` is
        (None: none). Its step's conjugate gradient stops early as with
        ``gtol_norm="max"``.
    max_iter : int, default=100
        Newton steps at most.
    min_iter : int, default=0
        Newton steps at least, whatever the gradient test says (a warm
        start from another problem may pass a loose test, yet its gradient
        is the other problem's); at most ``max_iter``.
    xtol : float or None, default=None
        Also require a step: the gradient test ends the solve only after a
        full Newton step (not backtracked) no longer than ``xtol *
        max(||x||, ||x0||)`` (Euclidean), each step's conjugate gradient
        solved to a relative residual of 0.1 at most until then. A warm
        start from a neighbouring problem (the mean of the fold solutions,
        for the fit on all the data) can pass a loose gradient test far
        from the solution along directions of weak curvature; the Newton
        step measures that distance. None: the gradient test alone.
    memory : LBFGSMemory or None, default=None
        Returned in the result, that very object, when no Newton step was
        taken, or always when ``memory_size`` is None (so that a caller's
        L-BFGS warm start survives a polish); pairs of the solve's own are a
        new object (a caller may test ``result.memory is memory``).
    memory_size : int or None, default=None
        Return the newest ``memory_size`` curvature pairs ``(p, H p)`` of the
        last step's conjugate-gradient directions instead: Hessian products
        near the solution (as exact as ``hessp``'s), H-conjugate, so that the
        L-BFGS inverse
        built on them inverts the Hessian on that Krylov space (SHINE's
        estimate for the hypergradient system, and a warm start's memory).
    tracker : object or None, default=None
        A linear image ``L`` of the iterates that ``fun`` needs and the
        Hessian products compute on the way (the raw predictions of a linear
        model, :class:`~skbilevel.objectives.linear.RawTracker`): its
        ``matvec(x)`` replaces ``hessp(x)`` and returns ``v -> (H v, L v)``
        (``L v`` None where unknown), and ``seed(trial, x, L p, t)`` tells
        ``fun``'s owner ``L (x + t p)`` before ``fun(x + t p)``, the step
        ``p``'s image summed from its conjugate gradient's steps.

    Returns
    -------
    LBFGSResult
        ``n_iter`` Newton steps; ``n_fun`` counts evaluations of ``fun`` and
        Hessian-vector products.
    """
    min_iter = check_iterations(gtol_norm, min_iter, max_iter)
    xtol = check_positive_float("xtol", xtol, allow_none=True)
    xp = get_namespace(x0)
    x = x0
    value, grad = fun(x)
    value = float(value)
    grad_norm = float(norm(xp, grad))
    scale = grad_norm if gtol_scale is None else gtol_scale
    gtol = tol * scale
    test = GradientTest(xp, gtol, gtol_norm, gtol_floor)
    largest_entry = test.largest_entry
    ftol = 10 * float(xp.finfo(x0.dtype).eps)
    n_fun, converged, message = 1, False, f"max_iter={max_iter} reached"
    # Steps solved just enough for the test (see the module's docstring),
    # unless the target is near round-off: there the decrease of f along a
    # weak step is not resolved, and superlinear steps reach the target first.
    n_iter, loose_steps = 0, tol >= _LOOSE_TOL
    # whether a step short enough for xtol was taken (see xtol); the length
    # is relative to the larger of the start and the iterate, so that a
    # solution at (or near) zero does not make every step look long
    settled = xtol is None
    newest = None
    start_norm = 0.0 if settled else float(norm(xp, x0))
    for n_iter in range(1, max_iter + 1):
        passing = test.passes(grad, grad_norm)
        # (a zero gradient is the minimizer: nothing left to measure)
        if n_iter > min_iter and passing and (settled or grad_norm == 0.0):
            n_iter -= 1
            converged, message = True, "gradient norm below tol"
            break
        # superlinear forcing, but never much tighter than the step needs: a
        # CG residual below gtol meets the test in the quadratic model (a
        # tenth of it leaves room for the model's error)
        forcing = (grad_norm / max(scale, 1e-300)) ** 0.5
        if loose_steps:
            forcing = max(forcing, 0.1 * gtol / grad_norm)
        forcing = min(0.5 if settled else _MEASURING_FORCING, forcing)
        # the residual r = -(g + H p) is the model's gradient after the step
        done = None
        # (not on a step min_iter forces at a point that passes already: a
        # residual that passes at once would stop CG before any direction;
        # nor on a step that measures the distance to the solution)
        if loose_steps and largest_entry is not None and settled and not passing:

            def done(r):
                return test.largest(r) <= 0.5 * largest_entry

        on_step, image = None, None
        if tracker is None:
            matvec = hessp(x)
        else:
            matvec, on_step, image = _imaged(tracker.matvec(x))
        if memory_size:
            products = []
            matvec = _recording(matvec, products)
        direction = preconditioned_cg(
            xp, matvec, -grad, tol=forcing, max_iter=_MAX_CG, done=done, on_step=on_step
        )
        step_image = None if image is None else image.total
        if memory_size and products:
            # only the last step's products make the memory (built once, at
            # the end); the others need not be held through the line search
            newest = products[-memory_size:]
            products.clear()
        n_fun += direction.n_matvec
        step = direction.solution
        slope = float(vdot(xp, grad, step))
        newton_step = True
        if not slope < 0:  # round-off: CG gave no descent direction
            step, slope = -grad, -grad_norm * grad_norm
            newton_step = False
            step_image = None
        t, round_off_step = 1.0, False
        for _ in range(_MAX_BACKTRACK):
            # the accepted trial point itself becomes x (the objective may
            # reuse what it computed there, see InnerObjective._point)
            trial = x + t * step
            if step_image is not None:
                tracker.seed(trial, x, step_image, t)
            new_value, new_grad = fun(trial)
            n_fun += 1
            if float(new_value) <= value + _C1 * t * slope:
                break
            if (
                newton_step
                and t == 1.0
                and float(new_value) - value <= ftol * abs(value)
            ):
                # f no longer resolves the decrease (it moved by round-off):
                # the gradient decides. A smaller one makes the full step
                # the better point (on a squared loss near its minimizer the
                # last steps' values differ in their last bits either way),
                # and the gradient test, not f's, then ends the solve.
                new_grad_norm = float(norm(xp, new_grad))
                if new_grad_norm < grad_norm:
                    round_off_step = True
                    break
            t /= 2
        else:
            message = "the line search found no decrease (round-off level)"
            # (grad is still the one `passing` tested)
            converged = passing or test.size(grad, grad_norm) <= 10 * gtol
            break
        decrease = value - float(new_value)
        x, value, grad = trial, float(new_value), new_grad
        grad_norm = new_grad_norm if round_off_step else float(norm(xp, grad))
        if not settled and newton_step and t == 1.0:
            # a full Newton step measures the distance to the solution (a
            # backtracked one, or steepest descent, does not)
            reference = max(float(norm(xp, x)), start_norm)
            settled = float(norm(xp, step)) <= xtol * reference
        if not round_off_step and decrease <= ftol * max(
            abs(value), abs(value + decrease)
        ):
            # round-off level: further steps cannot improve x (the same
            # stopping test as minimize_lbfgs's ftol)
            converged = True
            message = "relative decrease of f below round-off"
            break
    else:
        if settled and test.passes(grad, grad_norm):
            converged, message = True, "gradient norm below tol"
    if newest is not None:
        memory = _curvature_pairs(xp, newest)
    return LBFGSResult(
        x,
        value,
        grad,
        grad_norm,
        n_iter,
        n_fun,
        converged,
        empty_memory() if memory is None else memory,
        message,
    )


class _Image:
    """The linear image of a conjugate gradient's solution, summed from its
    directions' (see ``tracker`` of :func:`minimize_newton_cg`)."""

    def __init__(self):
        self.last = self.total = None
        self.known = True

    def step(self, alpha):
        # x += alpha p, p the last direction multiplied
        last, self.last = self.last, None
        if not self.known or last is None:
            self.known, self.total = False, None
        elif self.total is None:
            self.total = alpha * last
        else:
            self.total = self.total + alpha * last


def _imaged(pairs):
    """``(matvec, on_step, image)``: the products of ``pairs`` (``v -> (A v,
    L v)``), the conjugate gradient's step hook, and the image it sums."""
    image = _Image()

    def matvec(v):
        product, image.last = pairs(v)
        return product

    return matvec, image.step, image


def _recording(matvec, products):
    """``matvec`` that appends each ``(v, A v)`` to ``products``."""

    def recorded(v):
        product = matvec(v)
        products.append((v, product))
        return product

    return recorded


def _curvature_pairs(xp, products):
    """The products ``(v, A v)`` as an L-BFGS memory, held as one matrix
    (positive curvature only)."""
    kept = []
    for v, product in products:
        curvature = vdot(xp, v, product)
        if float(curvature) > 0:
            kept.append((v, product, curvature))
    return stacked_memory(xp, *zip(*kept)) if kept else empty_memory()
