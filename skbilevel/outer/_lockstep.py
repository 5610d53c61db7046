"""Folds that share one matrix, solved in lockstep: one pass over it per round.

With the "view" storage (:func:`skbilevel.search.materialize_folds`) every
fold reads its rows in place from one matrix ``X``, and each product of a
fold's solve, ``(X @ coef)[rows]`` or ``X' scatter(r)``, runs over every row
of ``X``. On large data those products are the whole cost of a search, and
each is a pass over ``X`` in memory. Solved one after the other, ``K`` folds
pay ``K`` passes where one product with ``K`` columns, ``X @ [c_1 ... c_K]``,
pays about one: on a 12000 x 784 dense ``X`` with one BLAS thread, five
matrix-vector products take 2.0-2.5 times as long as one product with five
columns, on a 40000 x 20000 CSR ``X`` (density 0.002) about twice as long.

:class:`Lockstep` gets that product without changing the solvers. Each fold's
evaluation runs in a thread of its own, but only one thread runs at a time,
in the order of the folds: a fold runs until it asks for a product with ``X``
(through :mod:`skbilevel.objectives._products`), then hands over to the next.
Once every fold still running has asked, the products of the round are
computed together (forward products in one, adjoint products in another),
and the round starts again. The order of everything each fold computes is
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

from ..objectives._products import routing

__all__ = ["Lockstep", "shared_source"]

# Folds share a matrix worth grouping when a pass over it costs more than the
# switches between the folds' threads (tens of microseconds a round): at
# least this many bytes of data (dense array, or a sparse matrix's arrays).
MIN_BYTES = 8 * 2**20


def _nbytes(X):
    if sp.issparse(X):
        return X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
    return X.nbytes


def shared_source(folds):
    """The matrix every fold's training and validation rows are read from, when
    lockstep solves pay for themselves on it; else None.

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
    return source if _nbytes(source) >= MIN_BYTES else None


class _Abort(Exception):
    """Raised in a fold's thread when the round it waits on failed."""


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

    def serves(self, source):
        return source is self.source

    def run(self, tasks):
        """Results of ``tasks`` (callables without arguments), in order.

        The first exception a task raised is raised here, once every task has
        ended.
        """
        n = len(tasks)
        self._resume = [threading.Semaphore(0) for _ in range(n)]
        self._paused = threading.Semaphore(0)
        self._asks, self._answers = {}, {}
        self._done = [False] * n
        results, errors = [None] * n, [None] * n
        local = threading.local()
        self._local = local
        config = get_config()

        def body(k, task):
            self._resume[k].acquire()
            local.member = k
            try:
                with config_context(**config), routing(self):
                    results[k] = task()
            except BaseException as error:  # re-raised by the caller's thread
                errors[k] = error
            finally:
                self._done[k] = True
                self._paused.release()

        threads = []
        for k, task in enumerate(tasks):
            context = contextvars.copy_context()  # the caller's numpy errstate
            thread = threading.Thread(
                target=context.run, args=(body, k, task), daemon=True
            )
            thread.start()
            threads.append(thread)
        failure = None
        live = list(range(n))
        while live:
            for k in live:
                self._resume[k].release()
                self._paused.acquire()
            live = [k for k in live if not self._done[k]]
            asks = {k: self._asks.pop(k) for k in live}
            try:
                if failure is None:
                    self._answers = self._serve(asks)
                else:
                    raise failure
            except BaseException as error:
                failure = error
                self._answers = {k: _Abort() for k in asks}
        for thread in threads:
            thread.join()
        if failure is not None:
            raise failure
        for error in errors:
            if error is not None:
                raise error
        return results

    def ask(self, kind, operand):
        """The product ``kind`` (``"forward"``: ``source @ operand``;
        ``"adjoint"``: ``source.T @ operand``), once the round computes it.
        Called from a fold's thread."""
        k = self._local.member
        self._asks[k] = (kind, operand)
        self._paused.release()
        self._resume[k].acquire()
        answer = self._answers.pop(k)
        if isinstance(answer, _Abort):
            raise answer
        return answer

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
                answers.update(zip(members, self._grouped(kind, operands)))
        return answers

    def _grouped(self, kind, operands):
        """One product for all ``operands`` (each of shape (m,) or (m, c)),
        split back into each one's product."""
        widths = [1 if v.ndim == 1 else v.shape[1] for v in operands]
        ends = np.cumsum(widths)
        if sp.issparse(self.source):
            # CSR (CSC for the adjoint) times a dense block: one pass over the
            # matrix's arrays, the block's rows read in the inner loop
            block = np.column_stack(operands)
            matrix = self.source if kind == "forward" else self._transpose
            product = matrix @ block
            return [
                product[:, end - 1] if v.ndim == 1 else product[:, end - w : end]
                for v, w, end in zip(operands, widths, ends)
            ]
        # dense: the operands as rows, X read once in its own (row-major)
        # order -- measured faster than X @ block with one BLAS thread
        block = np.concatenate([np.atleast_2d(v.T) for v in operands], axis=0)
        product = block @ self._transpose if kind == "forward" else block @ self.source
        return [
            product[end - 1] if v.ndim == 1 else product[end - w : end].T
            for v, w, end in zip(operands, widths, ends)
        ]
