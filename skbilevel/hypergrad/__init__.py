"""Linear solvers for the hypergradient system ``H v = grad_w F``."""

from ._registry import LINEAR_SOLVERS, get_linear_solver
from .base import InnerSystem, LinearSolver, LinearSolveResult
from .cg import ConjugateGradientSolver
from .exact import ExactSolver
from .identity import IdentitySolver
from .neumann import NeumannSolver
from .shine import ShineOPASolver, ShineRefineSolver, ShineSolver
from .truncated import TruncatedSolver

__all__ = [
    "InnerSystem",
    "LinearSolveResult",
    "LinearSolver",
    "LINEAR_SOLVERS",
    "get_linear_solver",
    "ConjugateGradientSolver",
    "ExactSolver",
    "IdentitySolver",
    "NeumannSolver",
    "ShineSolver",
    "ShineOPASolver",
    "ShineRefineSolver",
    "TruncatedSolver",
]
