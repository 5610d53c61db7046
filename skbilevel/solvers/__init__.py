"""Inner solvers: an array-API-generic L-BFGS that keeps its secant memory."""

from ._memory import LBFGSMemory, append_pair, empty_memory, inv_hessian_product
from .lbfgs import LBFGSResult, minimize_lbfgs

__all__ = [
    "LBFGSMemory",
    "LBFGSResult",
    "append_pair",
    "empty_memory",
    "inv_hessian_product",
    "minimize_lbfgs",
]
