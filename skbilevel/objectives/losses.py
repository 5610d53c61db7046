"""Pointwise losses on raw predictions (the first of the three GLM layers).

Each loss works on the raw prediction ``raw = X @ coef + intercept`` of one
sample (a scalar, or a row of ``n_outputs`` values) and provides what the inner
solver and the hypergradient need: the per-sample loss, its derivative with
respect to ``raw``, and the product of its second derivative with a direction,
from a curvature precomputed once per point (the ``hessp`` pattern: never build
the Hessian).

The curvature is a function of the mean prediction ``mean(raw)`` (the
probabilities of the logistic losses), which the gradient computes anyway:
:meth:`value_gradient_and_mean` returns it, and :meth:`curvature_at_mean`
turns it into the curvature without computing it again
(``curvature(y, raw)`` is ``curvature_at_mean(mean(raw))``, bit for bit).

Targets are encoded once, by :meth:`encode`, into a float array of the dtype of
the data: ``{0, 1}`` for the binary logistic loss, one-hot rows for the
multinomial loss, the raw targets for the squared loss.
"""

import functools

import numpy as np

from ..utils._array_api import device_of

__all__ = ["BinaryLogisticLoss", "MultinomialLogisticLoss", "SquaredLoss"]

# Up to this many classes a row's maximum is taken column by column: NumPy
# reduces a short last axis several times slower (on 1078 x 10, 45 us against
# 13 us; on 9600 x 10, 376 us against 79 us).
_COLUMN_LOOP = 32


def _row_max(xp, raw):
    """Largest entry of each row of ``raw`` (n, K), shape (n, 1)."""
    if raw.shape[1] > _COLUMN_LOOP:
        return xp.max(raw, axis=1, keepdims=True)
    largest = raw[:, 0]
    for k in range(1, raw.shape[1]):
        largest = xp.maximum(largest, raw[:, k])
    return largest[:, None]


@functools.lru_cache(maxsize=32)
def _host_ones(n, dtype):
    """A read-only NumPy column of ``n`` ones, shared by every call."""
    ones = np.ones((n, 1), dtype=dtype)
    ones.flags.writeable = False
    return ones


def _row_sum(xp, values):
    """Sum of each row of ``values`` (n, K), shape (n, 1): a product with a
    vector of ones (three to four times faster than a reduction along the
    short last axis, measured on 1078 x 10). On NumPy the ones are made once:
    making them took as long as the product (4 us on 480 x 10)."""
    if isinstance(values, np.ndarray):
        return values @ _host_ones(values.shape[1], values.dtype)
    ones = xp.ones((values.shape[1], 1), dtype=values.dtype, device=device_of(values))
    return values @ ones


def _log1pexp_parts(xp, raw):
    """``log(1 + exp(raw))`` and ``exp(-|raw|)``, without overflow.

    ``log(1 + exp(raw)) = max(raw, 0) + log1p(exp(-|raw|))``: the exponential
    is at most 1, and it also gives ``expit(raw)`` (:func:`_expit`) without
    another one. Five passes over ``raw`` of cheap functions take about half
    the time of ``logaddexp(0, raw)`` and the ``exp`` that ``expit`` took
    after it (0.46 ms against 0.81 ms for 40000 values, one thread), to the
    same precision (1e-15 relative).
    """
    small = xp.exp(-xp.abs(raw))
    return xp.maximum(raw, xp.zeros_like(raw)) + xp.log1p(small), small


def _expit(xp, raw, small):
    """``expit(raw)`` from ``small = exp(-|raw|)``: ``1 / (1 + small)`` where
    ``raw >= 0``, ``small / (1 + small)`` elsewhere (no cancellation)."""
    return xp.where(raw >= 0, xp.ones_like(small), small) / (1.0 + small)


def _log_softmax_parts(xp, raw):
    """Row-wise ``logsumexp`` (shape (n,)) and softmax (shape (n, K)), stably."""
    row_max = _row_max(xp, raw)
    shifted = xp.exp(raw - row_max)
    total = _row_sum(xp, shifted)
    return (row_max + xp.log(total))[:, 0], shifted / total


class _Loss:
    """What every loss derives from its ``value_gradient_and_mean``,
    ``mean`` and ``curvature_at_mean``."""

    def value_and_gradient(self, xp, y, raw):
        """Per-sample losses and their gradients with respect to ``raw``."""
        return self.value_gradient_and_mean(xp, y, raw)[:2]

    def curvature(self, xp, y, raw):
        """The per-sample curvature at ``raw`` (None where it is constant)."""
        return self.curvature_at_mean(xp, self.mean(xp, raw))


class BinaryLogisticLoss(_Loss):
    """Binary cross-entropy ``log(1 + exp(raw)) - y raw`` with ``y`` in {0, 1}.

    One raw prediction per sample. Its second derivative is ``p (1 - p)`` with
    ``p = expit(raw)``, at most 1/4.
    """

    name = "binary_logistic"
    constant_curvature = False

    def n_outputs(self, n_classes):
        return 1

    def encode(self, xp, y, classes, dtype):
        """``y`` (labels) -> float array of shape (n,), 1 for ``classes[1]``."""
        return xp.astype(y == classes[1], dtype)

    def value(self, xp, y, raw):
        return _log1pexp_parts(xp, raw)[0] - y * raw

    def mean(self, xp, raw):
        """``expit(raw)``: finite for every raw."""
        return _expit(xp, raw, xp.exp(-xp.abs(raw)))

    def value_gradient_and_mean(self, xp, y, raw):
        log1pexp, small = _log1pexp_parts(xp, raw)
        proba = _expit(xp, raw, small)  # self.mean(xp, raw), sharing the exp
        return log1pexp - y * raw, proba - y, proba

    def curvature_at_mean(self, xp, proba):
        return proba * (1 - proba)

    def hessian_product(self, xp, curvature, direction):
        return curvature * direction


class MultinomialLogisticLoss(_Loss):
    """Softmax cross-entropy ``logsumexp(raw) - raw[y]`` over ``K`` classes.

    ``K`` raw predictions per sample (scikit-learn's symmetric parametrization).
    The Hessian of one sample is ``diag(p) - p p'`` with ``p = softmax(raw)``:
    its product with a direction ``r`` is ``p * (r - p'r)``.
    """

    name = "multinomial_logistic"
    constant_curvature = False

    def n_outputs(self, n_classes):
        return n_classes

    def encode(self, xp, y, classes, dtype):
        """``y`` (labels) -> one-hot float array of shape (n, K)."""
        return xp.astype(y[:, None] == classes[None, :], dtype)

    def value(self, xp, y, raw):
        log_norm, _ = _log_softmax_parts(xp, raw)
        return log_norm - _row_sum(xp, y * raw)[:, 0]

    def mean(self, xp, raw):
        """``softmax(raw)`` row by row, shape (n, K)."""
        return _log_softmax_parts(xp, raw)[1]

    def value_gradient_and_mean(self, xp, y, raw):
        log_norm, proba = _log_softmax_parts(xp, raw)
        return log_norm - _row_sum(xp, y * raw)[:, 0], proba - y, proba

    def curvature_at_mean(self, xp, proba):
        # the product with a direction needs the probabilities themselves
        return proba

    def hessian_product(self, xp, curvature, direction):
        proba = curvature
        return proba * (direction - _row_sum(xp, proba * direction))


class SquaredLoss(_Loss):
    """Half squared error ``(raw - y)^2 / 2``, summed over outputs.

    With the penalty ``exp(lambda) / 2 ||w||^2`` this is scikit-learn's ``Ridge``
    objective divided by two, so ``alpha = exp(lambda)`` has the same minimizer.

    Parameters
    ----------
    n_targets : int, default=1
        Raw predictions (regression targets) per sample.
    """

    name = "squared"
    # the second derivative is 1 everywhere: hessp needs no raw predictions
    constant_curvature = True

    def __init__(self, n_targets=1):
        self.n_targets = n_targets

    def n_outputs(self, n_classes=None):
        return self.n_targets

    def encode(self, xp, y, classes, dtype):
        return xp.astype(y, dtype)

    def value(self, xp, y, raw):
        residual = raw - y
        sq = residual * residual
        return 0.5 * (sq if sq.ndim == 1 else xp.sum(sq, axis=1))

    def mean(self, xp, raw):
        return raw

    def value_gradient_and_mean(self, xp, y, raw):
        residual = raw - y
        sq = residual * residual
        return 0.5 * (sq if sq.ndim == 1 else xp.sum(sq, axis=1)), residual, raw

    def curvature_at_mean(self, xp, mean):
        return None

    def hessian_product(self, xp, curvature, direction):
        return direction
