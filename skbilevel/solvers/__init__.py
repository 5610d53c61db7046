"""Inner solvers: an array-API-generic L-BFGS that keeps its secant memory,
Newton-CG for the tight re-solves near a known solution, and (:mod:`.direct`)
one factorization for a squared-loss fold with few features."""

from ._memory import (
    LBFGSMemory,
    append_pair,
    empty_memory,
    inv_hessian_operator,
    inv_hessian_product,
)
from .lbfgs import LBFGSResult, minimize_lbfgs
from .newton import minimize_newton_cg

__all__ = [
    "LBFGSMemory",
    "LBFGSResult",
    "append_pair",
    "empty_memory",
    "inv_hessian_operator",
    "inv_hessian_product",
    "minimize_lbfgs",
    "minimize_newton_cg",
]
