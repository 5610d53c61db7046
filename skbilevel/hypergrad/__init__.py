"""Linear solvers for the hypergradient system ``H v = grad_w F``."""

from .base import (
    LINEAR_SOLVERS,
    InnerSystem,
    LinearSolver,
    LinearSolveResult,
    get_linear_solver,
)
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
