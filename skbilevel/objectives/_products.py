"""The two products of a linear model with its data, routed per thread.

:class:`~skbilevel.objectives.linear.LinearPredictor` computes ``X @ coef``
and ``X' r`` through :func:`forward` and :func:`adjoint`. By default they are
those products. A thread that runs one fold of several which share ``X``
(:mod:`skbilevel.outer._lockstep`) installs a router instead: the router
collects every fold's product of a round and computes them together, one pass
over ``X`` for all the folds instead of one pass each.
"""

import threading

import numpy as np
import scipy.sparse as sp

__all__ = ["adjoint", "forward", "grouped", "routed", "routing"]

_local = threading.local()


def _router(source):
    """This thread's router if it runs the products with ``source``, else None."""
    router = getattr(_local, "router", None)
    return router if router is not None and router.serves(source) else None


def routed(source):
    """Whether this thread's router runs the products with ``source``."""
    return _router(source) is not None


def forward(source, coef):
    """``source @ coef``, or its share of a product the thread's router runs."""
    router = _router(source)
    return source @ coef if router is None else router.ask("forward", coef)


def adjoint(source, source_t, cotangent):
    """``source.T @ cotangent`` (``source_t`` is ``source.T``), or its share of a
    product the thread's router runs."""
    router = _router(source)
    return source_t @ cotangent if router is None else router.ask("adjoint", cotangent)


class routing:
    """Context manager: ``router`` serves this thread's products inside the block.

    ``router.serves(source)`` says whether it runs the products with
    ``source``; ``router.ask(kind, operand)`` returns one (``kind`` is
    ``"forward"`` or ``"adjoint"``).
    """

    def __init__(self, router):
        self.router = router

    def __enter__(self):
        self._previous = getattr(_local, "router", None)
        _local.router = self.router
        return self.router

    def __exit__(self, *exc):
        _local.router = self._previous
        return False


def grouped(source, source_t, kind, operands):
    """Several products with ``source`` as one pass over it.

    ``kind`` is ``"forward"`` (``source @ v``) or ``"adjoint"``
    (``source.T @ v``, ``source_t`` being ``source.T``); each operand has
    shape (m,) or (m, c). Returns each operand's product, as if computed
    alone (to round-off).
    """
    widths = [1 if v.ndim == 1 else v.shape[1] for v in operands]
    ends = np.cumsum(widths)
    if sp.issparse(source):
        # CSR (CSC for the adjoint) times a dense block: one pass over the
        # matrix's arrays, the block's rows read in the inner loop
        block = np.column_stack(operands)
        matrix = source if kind == "forward" else source_t
        product = matrix @ block
        return [
            product[:, end - 1] if v.ndim == 1 else product[:, end - w : end]
            for v, w, end in zip(operands, widths, ends)
        ]
    # dense: the operands as rows of the block, ``block @ X.T`` -- measured
    # faster than ``X @ block`` on a row-major X with one BLAS thread
    block = np.concatenate([np.atleast_2d(v.T) for v in operands], axis=0)
    product = block @ source_t if kind == "forward" else block @ source
    return [
        product[end - 1] if v.ndim == 1 else product[end - w : end].T
        for v, w, end in zip(operands, widths, ends)
    ]
