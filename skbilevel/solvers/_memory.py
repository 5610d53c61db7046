"""Limited-memory quasi-Newton pairs and the two-loop recursion.

The L-BFGS memory is the set of secant pairs ``(s_i, y_i)`` with
``s_i = w_{i+1} - w_i`` and ``y_i = grad G(w_{i+1}) - grad G(w_i)``. It defines an
approximation ``B^{-1}`` of the inverse Hessian of the inner objective, which the
inner solver uses for its search directions and SHINE reuses for the
hypergradient linear system ``H v = grad F``.
"""

from typing import NamedTuple

from ..utils._array_api import device_of

__all__ = [
    "LBFGSMemory",
    "append_pair",
    "empty_memory",
    "inv_hessian_operator",
    "inv_hessian_product",
    "stacked_memory",
]


class LBFGSMemory(NamedTuple):
    """Secant pairs of an L-BFGS run, oldest first.

    Attributes
    ----------
    s : tuple of arrays of shape (n_params,)
        Steps ``w_{i+1} - w_i``.
    y : tuple of arrays of shape (n_params,)
        Gradient differences ``grad G(w_{i+1}) - grad G(w_i)``.
    sy : tuple of 0-d arrays
        Curvatures ``s_i' y_i`` (all positive: pairs failing the curvature
        condition are never stored).
    stacked : array of shape (2 * n_pairs, n_params) or None
        Not a field (the tuple is ``(s, y, sy)``): the matrix
        ``[s_1 ... s_m, y_1 ... y_m]`` whose rows are the pairs, for a memory
        built by :func:`stacked_memory` (:func:`inv_hessian_operator` then
        multiplies by it without copying the pairs); None otherwise.
    """

    s: tuple
    y: tuple
    sy: tuple

    stacked = None  # set on the memories of stacked_memory only

    def __len__(self):
        return len(self.s)


class _StackedMemory(LBFGSMemory):
    """An :class:`LBFGSMemory` whose pairs are the rows of ``stacked``."""

    def __reduce__(self):
        # the default would pickle the rows and the matrix (the instance's
        # __dict__): the pairs twice. One built by the tuple's own
        # constructor holds no matrix: a plain memory.
        if self.stacked is None:
            return LBFGSMemory, (self.s, self.y, self.sy)
        return _unstack, (self.stacked, self.sy)


def _unstack(stacked, sy):
    """The memory whose pairs are the rows of ``stacked``."""
    m = len(sy)
    memory = _StackedMemory(
        tuple(stacked[i, :] for i in range(m)),
        tuple(stacked[m + i, :] for i in range(m)),
        tuple(sy),
    )
    memory.stacked = stacked
    return memory


def empty_memory():
    """An L-BFGS memory holding no pairs."""
    return LBFGSMemory((), (), ())


def stacked_memory(xp, s, y, sy):
    """An L-BFGS memory of the pairs ``(s[i], y[i])`` (oldest first), held as
    the rows of one matrix (see ``LBFGSMemory.stacked``).

    The pairs are copied once, into that matrix: a memory that is built once
    and used by many products (the pairs of a Newton step's conjugate
    gradient, the preconditioner of the hypergradient systems) then exists
    once, not as its pairs plus the stack :func:`inv_hessian_operator` would
    make of them.

    Parameters
    ----------
    xp : module
        Array namespace of the pairs.
    s, y : sequence of arrays of shape (n_params,)
        Steps and gradient differences (or directions and their Hessian
        products), oldest first.
    sy : sequence of 0-d arrays
        ``s[i]' y[i]`` (positive).

    Returns
    -------
    LBFGSMemory
    """
    if len(s) == 0:
        return empty_memory()
    return _unstack(xp.stack(tuple(s) + tuple(y)), sy)


def append_pair(memory, s, y, sy, max_size):
    """Return ``memory`` with ``(s, y)`` appended, keeping the newest ``max_size``.

    Parameters
    ----------
    memory : LBFGSMemory
        Current pairs, oldest first.
    s, y : array of shape (n_params,)
        The new step and gradient difference.
    sy : 0-d array
        ``s' y`` (positive).
    max_size : int
        Number of pairs to keep.

    Returns
    -------
    LBFGSMemory
    """
    keep = max(0, max_size - 1)
    start = max(0, len(memory) - keep)
    return LBFGSMemory(
        memory.s[start:] + (s,), memory.y[start:] + (y,), memory.sy[start:] + (sy,)
    )


def inv_hessian_product(xp, memory, v, *, gamma_max=None):
    """Apply the L-BFGS inverse-Hessian estimate ``B^{-1}`` to ``v``.

    Two-loop recursion (Nocedal & Wright, Algorithm 7.4) with the initial matrix
    ``H0 = gamma I``, ``gamma = s'y / y'y`` of the newest pair. For an inner
    objective with an L2 penalty of strength ``mu = min exp(lambda)``, the Hessian
    is at least ``mu I``, so no direction can need more than ``1 / mu``:
    ``gamma_max = 1 / mu`` caps ``gamma`` there. Without the cap, an unscaled or
    badly scaled ``H0`` makes the estimate too large in directions the inner
    solver never explored, by up to a factor ``exp(lambda)``.

    Parameters
    ----------
    xp : module
        Array namespace of ``v``.
    memory : LBFGSMemory
        Secant pairs, oldest first.
    v : array of shape (n_params,)
        Vector to multiply.
    gamma_max : float or None
        Upper bound on the initial scaling ``gamma``.

    Returns
    -------
    array of shape (n_params,)
        ``B^{-1} v``. With an empty memory, ``gamma_max * v`` (or ``v`` when no
        bound is given).
    """
    if len(memory) == 0:
        return v if gamma_max is None else gamma_max * v
    q = v
    alphas = []
    for s, y, sy in zip(reversed(memory.s), reversed(memory.y), reversed(memory.sy)):
        alpha = (s @ q) / sy
        q = q - alpha * y
        alphas.append(alpha)
    y_new = memory.y[-1]
    gamma = memory.sy[-1] / (y_new @ y_new)
    if gamma_max is not None:
        cap = xp.asarray(gamma_max, dtype=gamma.dtype, device=device_of(gamma))
        gamma = xp.minimum(gamma, cap)
    r = gamma * q
    for s, y, sy, alpha in zip(memory.s, memory.y, memory.sy, reversed(alphas)):
        beta = (y @ r) / sy
        r = r + (alpha - beta) * s
    return r


def inv_hessian_operator(xp, memory, *, gamma_max=None):
    """``v -> B^{-1} v`` for many products with the same pairs.

    The matrix of :func:`inv_hessian_product`, in the compact form of Byrd,
    Nocedal & Schnabel (1994), eq. (3.1), its small factors computed once:
    with the pairs as the rows of ``S`` and ``Y`` (m x n), ``R = triu(S Y')``
    and ``D = diag(S Y')``,

        B^{-1} v = gamma v + S'(K a - gamma R^{-T} b) - gamma Y'(R^{-1} a),
        K = R^{-T} (D + gamma Y Y') R^{-1},  a = S v,  b = Y v,

    that is ``gamma v + Z' M (Z v)`` with the pairs stacked, ``Z = [S; Y]``
    (2m x n), and ``M = [[K, -gamma R^{-T}], [-gamma R^{-1}, 0]]``.

    Each product then takes three matrix products whatever the number of
    pairs, where the two loops take four operations per pair: on small
    problems their per-operation overhead dominated the preconditioned
    conjugate gradient of the hypergradient systems (and the stacked form
    halves the products of ``S`` and ``Y`` apart: 20 to 10 us with 10 pairs
    of 650 parameters).

    Parameters
    ----------
    xp : module
        Array namespace of the pairs.
    memory : LBFGSMemory
        Secant pairs, oldest first.
    gamma_max : float or None
        Upper bound on the initial scaling ``gamma``.

    Returns
    -------
    callable
        ``v -> B^{-1} v`` for arrays of shape (n_params,).
    """
    if len(memory) == 0:
        return lambda v: inv_hessian_product(xp, memory, v, gamma_max=gamma_max)
    Z = memory.stacked  # a stacked memory's rows are its pairs: no copy
    if Z is None:
        Z = xp.stack(memory.s + memory.y)
    m = len(memory)
    S, Y = Z[:m, :], Z[m:, :]
    y_new = memory.y[-1]
    gamma = memory.sy[-1] / (y_new @ y_new)
    if gamma_max is not None:
        cap = xp.asarray(gamma_max, dtype=gamma.dtype, device=device_of(gamma))
        gamma = xp.minimum(gamma, cap)
    SY = S @ xp.matrix_transpose(Y)
    eye = xp.eye(m, dtype=SY.dtype, device=device_of(SY))
    R_inv = xp.linalg.solve(xp.triu(SY), eye)
    R_inv_T = xp.matrix_transpose(R_inv)
    # D + gamma Y Y': the curvatures s_i'y_i on the diagonal
    middle = gamma * (Y @ xp.matrix_transpose(Y)) + SY * eye
    K = R_inv_T @ middle @ R_inv
    M = xp.concat(
        [
            xp.concat([K, -gamma * R_inv_T], axis=1),
            xp.concat([-gamma * R_inv, xp.zeros_like(eye)], axis=1),
        ],
        axis=0,
    )
    Z_T = xp.matrix_transpose(Z)

    def apply(v):
        return gamma * v + Z_T @ (M @ (Z @ v))

    return apply
