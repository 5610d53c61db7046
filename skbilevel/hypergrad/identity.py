"""Jacobian-free hypergradient: replace ``H^{-1}`` by the identity."""

from .base import LinearSolver, LinearSolveResult

__all__ = ["IdentitySolver"]


class IdentitySolver(LinearSolver):
    """Jacobian-free approximation ``v = b`` (``H ~ I``).

    Exact only when ``H = I``; its error grows with the spread of the spectrum
    of ``H`` and with ``|log mu|`` (the Hessian is at least ``mu I``, so ``v``
    is off by up to a factor ``mu`` in the penalized directions). It is the
    cheapest baseline among the approximations compared by Ramzi et al. (2022).
    ``tol`` is ignored.

    Cost: nothing (no HVP, no gradient); the residual is not computed.

    References
    ----------
    Z. Ramzi et al., "SHINE: SHaring the INverse Estimate from the forward pass
    for bi-level optimization and implicit models", ICLR 2022.
    """

    name = "identity"
    requires = frozenset()

    def _solve(self, system, b, *, b_norm, tol, state):
        return LinearSolveResult(b, 0, 0, None, None)
