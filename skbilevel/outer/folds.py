"""Build the per-fold inner and outer objectives from data and a CV split."""

import numpy as np

from ..objectives import InnerObjective, ValidationLoss
from ..utils._array_api import device_of, get_namespace, is_sparse
from .problem import Fold

__all__ = ["take_rows", "make_folds"]


def take_rows(X, indices):
    """Rows ``indices`` of a dense or sparse matrix.

    Parameters
    ----------
    X : array or sparse matrix of shape (n_samples, ...) or None
        Data of any supported namespace (NumPy, CuPy, SciPy / cupyx sparse).
    indices : ndarray of int
        Row indices (NumPy, on the host).

    Returns
    -------
    array or sparse matrix, or None
        The selected rows, in the namespace and on the device of ``X``.
    """
    if X is None:
        return None
    if is_sparse(X):
        return X[indices]
    xp = get_namespace(X)
    return xp.take(X, xp.asarray(indices, device=device_of(X)), axis=0)


def make_folds(
    X,
    y,
    splits,
    *,
    loss,
    penalty,
    n_outputs,
    fit_intercept=True,
    sample_weight=None,
    outer_scale=1.0,
):
    """One :class:`~skbilevel.outer.problem.Fold` per ``(train, validation)`` split.

    Parameters
    ----------
    X : array or sparse matrix of shape (n_samples, n_features)
    y : array of shape (n_samples,) or (n_samples, n_outputs)
        Targets encoded by ``loss.encode``.
    splits : iterable of (ndarray, ndarray)
        Train and validation indices.
    loss, penalty, n_outputs, fit_intercept
        As for :class:`~skbilevel.objectives.InnerObjective`.
    sample_weight : array of shape (n_samples,) or None
        Weights of the training loss and of the validation mean.
    outer_scale : float, default=1.0
        ``scale`` of :class:`~skbilevel.objectives.ValidationLoss`.

    Returns
    -------
    list of Fold
    """
    n_samples = X.shape[0]
    for name, array in [("y", y), ("sample_weight", sample_weight)]:
        if array is not None and array.shape[0] != n_samples:
            raise ValueError(
                f"{name} has {array.shape[0]} samples, but X has {n_samples}."
            )
    folds = []
    for train, validation in splits:
        train, validation = np.asarray(train), np.asarray(validation)
        if train.size == 0 or validation.size == 0:
            raise ValueError(
                "Every cross-validation split needs training and validation samples."
            )
        for indices in (train, validation):
            if not np.issubdtype(indices.dtype, np.integer) or not (
                -n_samples <= indices.min() and indices.max() < n_samples
            ):
                raise ValueError(
                    f"Split indices must be integers in [0, {n_samples}), got "
                    f"{indices.dtype} values in [{indices.min()}, {indices.max()}]."
                )
        inner = InnerObjective(
            take_rows(X, train),
            take_rows(y, train),
            loss,
            penalty,
            n_outputs,
            fit_intercept,
            take_rows(sample_weight, train),
        )
        outer = ValidationLoss(
            take_rows(X, validation),
            take_rows(y, validation),
            loss,
            n_outputs,
            fit_intercept,
            take_rows(sample_weight, validation),
            scale=outer_scale,
        )
        folds.append(Fold(inner, outer))
    return folds
