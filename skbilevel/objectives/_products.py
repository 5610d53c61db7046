"""The two products of a linear model with its data, routed per thread.

:class:`~skbilevel.objectives.linear.LinearPredictor` computes ``X @ coef``
and ``X' r`` through :func:`forward` and :func:`adjoint`. By default they are
those products. A thread that runs one fold of several which share ``X``
(:mod:`skbilevel.outer._lockstep`) installs a router instead: the router
collects every fold's product of a round and computes them together, one pass
over ``X`` for all the folds instead of one pass each.
"""

import threading

__all__ = ["adjoint", "forward", "routing"]

_local = threading.local()


def forward(source, coef):
    """``source @ coef``, or its share of a product the thread's router runs."""
    router = getattr(_local, "router", None)
    if router is not None and router.serves(source):
        return router.ask("forward", coef)
    return source @ coef


def adjoint(source, source_t, cotangent):
    """``source.T @ cotangent`` (``source_t`` is ``source.T``), or its share of a
    product the thread's router runs."""
    router = getattr(_local, "router", None)
    if router is not None and router.serves(source):
        return router.ask("adjoint", cotangent)
    return source_t @ cotangent


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
