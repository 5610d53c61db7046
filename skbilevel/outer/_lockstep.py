"""Folds that share one matrix, solved in lockstep: one pass over it per round.

With the "view" storage (:func:`skbilevel.search.materialize_folds`) every
fold reads its rows in place from one matrix ``X``, and each product of a
fold's solve, ``(X @ coef)[rows]`` or ``X' scatter(r)``, runs over every row
of ``X``. On large data those products are the whole cost of a search, and
each is a pass over ``X`` in memory. Solved one after the other, ``K`` folds
pay ``K`` passes where one product with ``K`` columns, ``X @ [c_1 ... c_K]``,
pays about one: on a 12000 x 784 dense ``X`` with one BLAS thread, five
matrix-vector products take 2.0-2.5 times as long as one product with five
columns, on a 40000 x 20000 CSR ``X`` (density 0.002) 1.5 to 2.5 times.

:class:`Lockstep` gets that product without changing the solvers. Each fold's
evaluation runs in a thread of its own, but only one thread runs at a time,
in the order of the folds: a fold runs until it asks for a product with ``X``
(through :mod:`skbilevel.objectives._products`), then hands over to the next.
Once every fold still running has asked, the products of the round are
computed together: those of the kind most folds asked for (forward or
adjoint), the others waiting for a later round (see :func:`_one_kind`), and
the round starts again with the folds served. The order of everything each fold computes is
the order it has alone, so the results are deterministic; they differ from
the folds' separate solves by the round-off of the grouped products only.
Only the products are grouped: one core runs everything, as in a sequential
evaluation.
"""

import contextvars
import threading

import numpy as np
import scipy.sparse as sp
from sklearn import config_context, get_config

from ..objectives._products import grouped, routing
from ..utils._array_api import nbytes

__all__ = ["Lockstep", "shared_source"]

# Folds share a matrix worth grouping when a pass over it costs more than the
# switches between the folds' threads (25 to 75 microseconds per fold and
# round here): at least this many bytes of data (dense array, or a sparse
# matrix's arrays). Measured (HOAGLogisticRegression, 5 folds, one BLAS
# thread, medians of 3, rows in place -> lockstep): make_classification
# 10000 x 120 (9.2 MB) 0.69 -> 0.91 s and, at 8000 x 150, 0.48 -> 1.02 s;
# 12500 x 120 (11.4 MB) 1.05 -> 0.82 s; 15000 x 120 (13.7 MB) 2.10 -> 1.62 s;
# 20000 x 120 (18 MB) 1.99 -> 1.46 s; 20000 x 400 (61 MB) 6.72 -> 3.34 s.
MIN_BYTES = 12 * 2**20


def shared_source(folds):
    """The matrix all the folds read, where lockstep solves pay; else None.

    Host data only (a NumPy array or a SciPy CSR matrix), every fold reading
    that one object (some of its rows, or all of them with zero weights on the
    others), and at least :data:`MIN_BYTES` of it.
    """
    if len(folds) < 2:
        return None
    models = [m for fold in folds for m in (fold.inner.model, fold.outer.model)]
    source = models[0].source
    if any(m.source is not source for m in models):
        return None
    dense = isinstance(source, np.ndarray) and source.ndim == 2
    if not (dense or sp.issparse(source) and source.format == "csr"):
        return None
    return source if nbytes(source) >= MIN_BYTES else None


class _Abort(Exception):
    """Raised in a fold's thread when its evaluation is abandoned (another
    fold failed, a grouped product failed, or the caller was interrupted)."""


class _Meeting:
    """One evaluation's meeting point of the folds' threads (the router they
    install): at most one of them, or the caller's thread, runs at a time."""

    def __init__(self, lockstep, n_folds):
        self.lockstep = lockstep
        self.resume = [threading.Semaphore(0) for _ in range(n_folds)]
        self.paused = threading.Semaphore(0)
        self.asks, self.answers = {}, {}
        self.done = [False] * n_folds
        self.local = threading.local()

    def serves(self, source):
        """Whether products with ``source`` are grouped."""
        return source is self.lockstep.source

    def ask(self, kind, operand):
        """The product ``kind`` of the shared matrix with ``operand``.

        ``"forward"``: ``source @ operand``; ``"adjoint"``: ``source.T @
        operand``. Called from a fold's thread, which waits for the round.
        """
        k = self.local.member
        self.asks[k] = (kind, operand)
        self.paused.release()
        self.resume[k].acquire()
        answer = self.answers.pop(k)
        if isinstance(answer, _Abort):
            raise answer
        return answer


def _one_kind(asks, waited):
    """The asks of one kind, the round's: the kind more folds ask for (a
    tie: the kind of the fold that has waited longest, then forward).

    A round that served both kinds would pass over the matrix twice, once
    for the folds a step out of phase with the others (a fold whose Newton
    step ended on a product the others' did not: see
    :class:`~skbilevel.objectives.linear.RawTracker`). Deferred by a round,
    such a fold asks with the others in the next: its products, and so its
    results, are the same; only its turn moves. A fold is never deferred
    for long: the majority alternates between the kinds, and ends.
    """
    counts = {"forward": 0, "adjoint": 0}
    longest = {"forward": -1, "adjoint": -1}
    for k, (kind, _) in asks.items():
        counts[kind] += 1
        longest[kind] = max(longest[kind], waited[k])
    kind = max(("forward", "adjoint"), key=lambda kind: (counts[kind], longest[kind]))
    return {k: ask for k, ask in asks.items() if ask[0] == kind}


def _wait(semaphore, failure):
    """Acquire ``semaphore`` whatever interrupts the wait; the first
    interruption is returned as the failure (the fold that runs stops at
    its next product, which keeps its thread from running on unattended)."""
    while True:
        try:
            semaphore.acquire()
            return failure
        except BaseException as error:  # KeyboardInterrupt
            failure = error if failure is None else failure


class Lockstep:
    """Run one task per fold in turn, grouping their products with ``source``.

    Parameters
    ----------
    source : ndarray or CSR matrix of shape (n_samples, n_features)
        The shared matrix. Products with any other matrix run as they are.
    """

    def __init__(self, source):
        self.source = source
        self._transpose = source.T
        self._running = False

    def run(self, tasks):
        """Results of ``tasks`` (callables without arguments), in order.

        A task that raises ends the run: the others stop at their next
        product, and the first failure (in the order of the tasks) is raised
        here once every thread has ended. So does an interruption of the
        caller (KeyboardInterrupt).
        """
        if self._running:
            raise RuntimeError("A Lockstep runs one set of tasks at a time.")
        self._running = True
        try:
            return self._run(tasks)
        finally:
            self._running = False

    def _run(self, tasks):
        meeting = _Meeting(self, len(tasks))
        results, errors = [None] * len(tasks), [None] * len(tasks)
        # the caller's thread-local settings, which new threads lack
        config, errstate = get_config(), np.geterr()

        def body(k, task):
            meeting.resume[k].acquire()
            meeting.local.member = k
            try:
                with (
                    np.errstate(**errstate),
                    config_context(**config),
                    routing(meeting),
                ):
                    results[k] = task()
            except BaseException as error:  # raised by the caller's thread
                errors[k] = error
            finally:
                meeting.done[k] = True
                meeting.paused.release()

        threads = [
            threading.Thread(
                target=contextvars.copy_context().run,
                args=(body, k, task),
                daemon=True,
            )
            for k, task in enumerate(tasks)
        ]
        for thread in threads:
            thread.start()
        failure = None
        # the folds to run this round (their answers ready), and the asks
        # deferred to a later round with their rounds of waiting
        ready, pending, waited = list(range(len(tasks))), {}, {}
        while ready:
            for k in ready:
                meeting.resume[k].release()
                failure = _wait(meeting.paused, failure)
            for k in ready:
                if not meeting.done[k]:
                    pending[k] = meeting.asks.pop(k)
                    waited[k] = 0
            if failure is None:
                failure = next((e for e in errors if e is not None), None)
            if failure is not None:
                # every fold still asking stops at its answer
                meeting.answers = {k: _Abort() for k in pending}
                ready, pending = sorted(pending), {}
                continue
            if not pending:
                break  # every fold has ended
            served = _one_kind(pending, waited)
            try:
                meeting.answers = self._serve(served)
            except BaseException as error:
                failure = error
                meeting.answers = {k: _Abort() for k in pending}
                ready, pending = sorted(pending), {}
                continue
            for k in pending:
                waited[k] += 1
            ready = sorted(served)
            pending = {k: ask for k, ask in pending.items() if k not in served}
        for thread in threads:
            thread.join()
        if failure is not None:
            raise failure
        return results

    def _serve(self, asks):
        answers = {}
        for kind in ("forward", "adjoint"):
            members = [k for k in asks if asks[k][0] == kind]
            if len(members) == 1:
                (k,) = members
                operand = asks[k][1]
                answers[k] = (
                    self.source @ operand
                    if kind == "forward"
                    else self._transpose @ operand
                )
            elif members:
                operands = [asks[k][1] for k in members]
                answers.update(
                    zip(members, grouped(self.source, self._transpose, kind, operands))
                )
        return answers
