"""The linear solvers by name: the one place that lists them.

The solver modules import :mod:`.base` (the protocol); this module imports the
solver modules, so the names live next to the classes without an import cycle.
:class:`.direct.DirectSolver` has no name here: it is bound to the factorization
of one ``lambda``, which the fold evaluation builds where it solves the inner
problem directly.
"""

from .base import LinearSolver
from .cg import ConjugateGradientSolver
from .exact import ExactSolver
from .identity import IdentitySolver
from .neumann import NeumannSolver
from .shine import ShineOPASolver, ShineRefineSolver, ShineSolver
from .truncated import TruncatedSolver

__all__ = ["LINEAR_SOLVERS", "get_linear_solver"]

_SOLVER_CLASSES = (
    ShineSolver,
    ShineOPASolver,
    ShineRefineSolver,
    ConjugateGradientSolver,
    NeumannSolver,
    TruncatedSolver,
    IdentitySolver,
    ExactSolver,
)

LINEAR_SOLVERS = tuple(cls.name for cls in _SOLVER_CLASSES)

_SOLVERS_BY_NAME = dict(zip(LINEAR_SOLVERS, _SOLVER_CLASSES))


def get_linear_solver(method, **params):
    """Return the linear solver named ``method``, built with ``params``.

    Parameters
    ----------
    method : str or LinearSolver
        One of :data:`LINEAR_SOLVERS`, or a solver instance (returned as is).
    **params
        Constructor arguments of the named solver (e.g. ``max_iter``).

    Returns
    -------
    LinearSolver

    Examples
    --------
    >>> from skbilevel.hypergrad import get_linear_solver
    >>> get_linear_solver("cg", max_iter=50)
    ConjugateGradientSolver(max_iter=50)
    """
    if isinstance(method, LinearSolver):
        if params:
            raise ValueError(
                f"Parameters {sorted(params)} apply to a solver name, not to the "
                f"instance {method!r}: set them on the instance."
            )
        return method
    if not isinstance(method, str):
        raise TypeError(
            f"The linear solver must be a name in {LINEAR_SOLVERS} or a "
            f"LinearSolver instance, got {type(method).__name__}."
        )
    if method not in _SOLVERS_BY_NAME:
        raise ValueError(
            f"Unknown linear solver {method!r}; valid names are "
            f"{', '.join(repr(name) for name in LINEAR_SOLVERS)}."
        )
    return _SOLVERS_BY_NAME[method](**params)
