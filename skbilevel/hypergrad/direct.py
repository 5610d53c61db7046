"""``H v = b`` solved with a factorization the inner solve already computed."""

from .base import LinearSolver, LinearSolveResult

__all__ = ["DirectSolver"]


class DirectSolver(LinearSolver):
    """Exact ``v = H^{-1} b`` from a factorization of ``H``.

    Where the inner problem is a quadratic solved by factoring its Hessian
    (the squared loss with few features, :func:`skbilevel.solvers.direct.direct_factor`),
    the hypergradient's system has the same matrix: two triangular solves per
    output, no HVP. The solver is bound to the factorization of one ``lambda``,
    so it is built by the fold evaluation that computed it rather than chosen
    by name. ``tol`` is ignored; the residual is not computed (it is round-off).

    Parameters
    ----------
    factor : object
        ``factor.solve(b)`` returns ``H^{-1} b`` for ``b`` of shape (n_params,).
    """

    name = "direct"
    requires = frozenset()

    def __init__(self, factor):
        self.factor = factor

    def __repr__(self):
        return f"{type(self).__name__}()"

    def _solve(self, system, b, *, b_norm, tol, state):
        return LinearSolveResult(self.factor.solve(b), 0, 0, None, None)
