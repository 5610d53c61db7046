"""Adapters: how an estimator and its continuous parameter map to the engine.

:class:`~skbilevel.model_selection.BilevelSearchCV` never fits the user's
estimator during the search. It solves, on every fold, the engine's problem

    G(w, lambda) = sum_i s_i loss(y_i, x_i @ coef + intercept) + 1/2 exp(lambda) ||coef||^2

warm-started from one outer step to the next, and scores the solutions as
if they had been fitted by the estimator. An adapter is the contract that makes
this legitimate: for one estimator class it says which loss the estimator
minimizes, how its parameter maps to ``lambda``, how ``y`` is encoded, which
weights enter the training loss, and how to give an unfitted estimator the
fitted attributes (``coef_``, ``intercept_``, ``classes_``...) of a solution.
The minimizer of ``G`` must be the estimator's own solution: an adapter is only
correct for estimators whose ``fit`` solves exactly that problem.

Built-in adapters:

=================  =========  ==================  =======================================
estimator          parameter  lambda              loss (outer criterion)
=================  =========  ==================  =======================================
LogisticRegression ``C``      ``-log C``          binary / multinomial log-loss
Ridge              ``alpha``  ``log alpha``       half squared error (MSE); one ``alpha``
                                                  per target allowed
RidgeClassifier    ``alpha``  ``log alpha``       squared error on targets in {-1, 1} per
                                                  class (MSE of those targets: a log-loss
                                                  is not defined for this classifier)
=================  =========  ==================  =======================================

Subclasses of these estimators are not matched automatically (a subclass may
change what ``fit`` solves): register them, e.g.
``register_adapter(MyRidge, RidgeAdapter())``.
"""

from typing import NamedTuple

import numpy as np
from sklearn.linear_model import LogisticRegression, Ridge, RidgeClassifier
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_array, column_or_1d
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.multiclass import check_classification_targets

from ..objectives import BinaryLogisticLoss, MultinomialLogisticLoss, SquaredLoss
from ..utils._sklearn_compat import class_weight_per_sample
from ._ridge_refit import refit_from_search

__all__ = [
    "EstimatorAdapter",
    "LogisticRegressionAdapter",
    "RidgeAdapter",
    "RidgeClassifierAdapter",
    "TargetEncoding",
    "get_adapter",
    "register_adapter",
]


class TargetEncoding(NamedTuple):
    """Targets of the whole data set, as the engine and the fold models need them.

    Attributes
    ----------
    loss : object
        Engine loss (:mod:`skbilevel.objectives.losses`).
    y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        Encoded targets (float64), sliced per fold by the search.
    n_outputs : int
        Raw predictions per sample (columns of ``coef``).
    outer_scale : float
        ``scale`` of :class:`~skbilevel.objectives.ValidationLoss`: 1 for the
        log-loss, ``2 / n_outputs`` for the mean squared error.
    context : dict
        What :meth:`EstimatorAdapter.set_solution` needs beyond the solution
        (``classes_``, the shape of ``y``...).
    """

    loss: object
    y: np.ndarray
    n_outputs: int
    outer_scale: float
    context: dict


class EstimatorAdapter:
    """Protocol of an adapter (and base class of the built-in ones).

    Subclass it, set the class attributes and implement :meth:`encode_targets`
    and :meth:`set_solution`; override the other methods where the defaults do
    not fit. Then :func:`register_adapter` it for an estimator class.

    Attributes
    ----------
    params : tuple of str
        Names of the parameters that can be searched (on the estimator itself,
        without a pipeline prefix).
    log_sign : {1, -1}
        ``lambda = log_sign * log(value)``: 1 when the parameter is the penalty
        strength (``alpha``), -1 when it is its inverse (``C``).
    per_output : bool
        Whether the parameter may hold one value per output (``Ridge``'s
        ``alpha`` of shape (n_targets,)).
    per_feature : bool
        Whether ``BilevelSearchCV(..., penalty_groups=...)`` may search one
        value per feature or per group of features. Such a value is not one
        the estimator can hold: the fold models and the refit carry the
        engine's solution with the parameter left as given, which is only
        right when predictions do not use the parameter (True for linear
        models that predict from ``coef_`` and ``intercept_``).
    fit_params : tuple of str
        Fit parameters the adapter understands (``sample_weight``).
    """

    params = ()
    log_sign = 1
    per_output = False
    per_feature = True
    fit_params = ("sample_weight",)

    def check_estimator(self, estimator, param):
        """Raise ValueError if the search cannot reproduce ``estimator.fit``.

        Parameters
        ----------
        estimator : estimator instance
            The (unfitted) estimator, as given by the user.
        param : str
            The parameter to search.
        """
        if param not in self.params:
            raise ValueError(
                f"BilevelSearchCV can search {_quoted(self.params)} of "
                f"{type(estimator).__name__}, not {param!r}."
            )

    def fit_intercept(self, estimator):
        """Whether the estimator fits an unpenalized intercept."""
        # the parameter's attribute (scikit-learn's convention): get_params
        # inspects the constructor's signature at every call
        return bool(getattr(estimator, "fit_intercept", True))

    def encode_targets(self, estimator, y):
        """Validate ``y`` (all samples) and encode it for the engine.

        Returns
        -------
        TargetEncoding
        """
        raise NotImplementedError

    def training_weights(self, estimator, y, sample_weight):
        """Weights ``s_i`` of the training loss of one fold, or None for ones.

        Parameters
        ----------
        y : ndarray of shape (n_train,) or (n_train, n_outputs)
            Raw targets of the training fold (class weights depend on them).
        sample_weight : ndarray of shape (n_train,) or None
            User-given sample weights of the training fold.
        """
        return sample_weight

    def set_solution(self, estimator, coef, intercept, encoding):
        """Give ``estimator`` the fitted attributes of an engine solution.

        Parameters
        ----------
        estimator : estimator instance
            A fresh clone with the searched parameter set; modified in place.
        coef : ndarray of shape (n_features,) or (n_features, n_outputs)
            Coefficients in the engine's layout.
        intercept : ndarray of shape (n_outputs,) or None
            Intercepts, None without ``fit_intercept``.
        encoding : TargetEncoding

        Returns
        -------
        estimator
        """
        raise NotImplementedError

    def refit_from_search(self, estimator, fold_models, index, X, y, fit_params):
        """Fit ``estimator`` at evaluated point ``index`` from what the search
        computed, when that gives exactly what its ``fit`` would.

        Parameters
        ----------
        estimator : estimator instance
            A clone of the user's estimator at the point's parameters.
        fold_models : FoldModels
            The search's folds, encoding and search.
        index : int
            The evaluated point.
        X, y : array-like
            The data.
        fit_params : dict
            The estimator's routed fit parameters.

        Returns
        -------
        bool
            Whether ``estimator`` is fitted; False (the default) leaves it to
            its ``fit``.
        """
        return False

    def warm_refit(self, estimator):
        """Whether the refit at the chosen point should start from the engine's
        solution on all the data (``warm_start=True`` for the estimator's own
        ``fit``, as ``warm_started_refit`` does).

        Parameters
        ----------
        estimator : estimator instance
            The final step, as given by the user.

        Returns
        -------
        bool
            False (the default): its ``fit`` from scratch. True needs a
            ``warm_start`` parameter and a ``fit`` that continues from the
            ``coef_`` / ``intercept_`` that :meth:`set_solution` sets.
        """
        return False

    def to_lambda(self, value):
        """Parameter value(s) -> log penalty strength(s)."""
        return self.log_sign * np.log(np.asarray(value, dtype=np.float64))

    def from_lambda(self, lam):
        """Log penalty strength(s) -> parameter value(s), as an ndarray."""
        return np.exp(self.log_sign * np.asarray(lam, dtype=np.float64))


def _quoted(names):
    return ", ".join(repr(n) for n in names)


class LogisticRegressionAdapter(EstimatorAdapter):
    """:class:`~sklearn.linear_model.LogisticRegression` with its L2 penalty.

    ``lambda = -log C``. Two classes use the binary log-loss (``coef_`` of
    shape (1, n_features), positive class ``classes_[1]``), more classes the
    multinomial one with scikit-learn's symmetric parametrization.
    ``class_weight`` multiplies the training weights, computed on each
    training fold as ``LogisticRegression.fit`` would (``"balanced"`` counts
    the weighted samples of the fold). Any solver but ``"liblinear"`` solves
    this problem (liblinear penalizes the intercept).
    """

    params = ("C",)
    log_sign = -1

    def check_estimator(self, estimator, param):
        super().check_estimator(estimator, param)
        p = estimator.get_params()
        penalty = p.get("penalty", "deprecated")
        if penalty not in ("deprecated", "l2"):
            raise ValueError(
                "BilevelSearchCV supports LogisticRegression with an L2 penalty only "
                f"(penalty='deprecated' or 'l2'), got penalty={penalty!r}."
            )
        if p.get("l1_ratio") not in (0, 0.0, None):
            raise ValueError(
                "BilevelSearchCV supports LogisticRegression with an L2 penalty only: "
                f"l1_ratio must be 0 or None, got l1_ratio={p['l1_ratio']!r}."
            )
        if p.get("multi_class", "deprecated") not in ("deprecated", "auto"):
            raise ValueError(
                "BilevelSearchCV supports LogisticRegression's default "
                "multi_class='auto' only (the binary log-loss for two classes, the "
                f"multinomial one for more), got multi_class={p['multi_class']!r}."
            )
        if p.get("solver") == "liblinear":
            raise ValueError(
                "solver='liblinear' is not supported: it penalizes the intercept and "
                "fits one-vs-rest models. Use 'lbfgs' (or 'newton-cg', "
                "'newton-cholesky', 'sag', 'saga'): they solve the problem "
                "BilevelSearchCV searches."
            )

    def encode_targets(self, estimator, y):
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        classes = np.unique(y)
        if classes.size < 2:
            raise ValueError(
                "This solver needs samples of at least 2 classes in the data, but the "
                f"data contains only one class: {classes[0]!r}."
            )
        loss = BinaryLogisticLoss() if classes.size == 2 else MultinomialLogisticLoss()
        encoded = loss.encode(np, y, classes, np.float64)
        return TargetEncoding(
            loss, encoded, loss.n_outputs(classes.size), 1.0, {"classes_": classes}
        )

    def training_weights(self, estimator, y, sample_weight):
        class_weight = getattr(estimator, "class_weight", None)
        if class_weight is None:
            return sample_weight
        per_sample = class_weight_per_sample(
            class_weight, np.unique(y), y, sample_weight
        )
        return per_sample if sample_weight is None else sample_weight * per_sample

    def warm_refit(self, estimator):
        # every supported solver (liblinear is rejected) continues from coef_
        # with warm_start=True; from scratch, lbfgs took 33 and 26 iterations
        # on the benchmarks' full digits and sparse sets (session script at
        # 8d8253a)
        return True

    def set_solution(self, estimator, coef, intercept, encoding):
        n_outputs = encoding.n_outputs
        estimator.coef_ = coef.reshape(1, -1) if n_outputs == 1 else coef.T.copy()
        estimator.intercept_ = (
            np.array(intercept, dtype=np.float64)
            if intercept is not None
            else np.zeros(n_outputs)
        )
        estimator.classes_ = encoding.context["classes_"]
        estimator.n_iter_ = np.zeros(1, dtype=np.int32)
        return estimator


class RidgeAdapter(EstimatorAdapter):
    """:class:`~sklearn.linear_model.Ridge`: squared loss, ``lambda = log alpha``.

    Ridge minimizes ``||y - X coef - intercept||^2 + alpha ||coef||^2``, whose
    minimizer is that of the engine's half squared error with strength
    ``alpha``. ``y`` of shape (n_samples, n_targets) gives one output per
    target; ``alpha`` may then hold one value per target (bounds given as
    arrays of shape (n_targets,)). The outer criterion is the mean squared
    error, averaged over targets. ``positive=True`` is not supported.
    """

    params = ("alpha",)
    log_sign = 1
    per_output = True

    def check_estimator(self, estimator, param):
        super().check_estimator(estimator, param)
        if getattr(estimator, "positive", False):
            raise ValueError(
                "positive=True is not supported: the search solves the "
                "unconstrained ridge problem."
            )

    def encode_targets(self, estimator, y):
        y = check_array(
            y, ensure_2d=False, dtype=np.float64, input_name="y", ensure_min_samples=1
        )
        if y.ndim > 2:
            raise ValueError(f"y must be 1- or 2-dimensional, got shape {y.shape}.")
        n_outputs = 1 if y.ndim == 1 else y.shape[1]
        # One output is one raw prediction per sample: a 1-d target for the engine.
        engine_y = y.reshape(-1) if n_outputs == 1 else y
        offset = _target_offset(self, estimator, engine_y)
        context = {"target_ndim": y.ndim, "offset": offset}
        return TargetEncoding(
            SquaredLoss(n_outputs),
            engine_y - offset,
            n_outputs,
            2.0 / n_outputs,
            context,
        )

    def refit_from_search(self, estimator, fold_models, index, X, y, fit_params):
        """A closed-form search's solution on all rows (see
        :func:`~skbilevel.model_selection._ridge_refit.refit_from_search`)."""
        return refit_from_search(estimator, fold_models, index, X, y, fit_params)

    def set_solution(self, estimator, coef, intercept, encoding):
        one_dim = encoding.context["target_ndim"] == 1
        estimator.coef_ = coef.reshape(-1) if one_dim else coef.T.copy()
        if intercept is None:
            estimator.intercept_ = 0.0
        else:
            intercept = intercept + encoding.context["offset"]
            estimator.intercept_ = np.float64(intercept[0]) if one_dim else intercept
        estimator.n_iter_ = None
        return estimator


class RidgeClassifierAdapter(RidgeAdapter):
    """:class:`~sklearn.linear_model.RidgeClassifier`: ridge on {-1, 1} targets.

    As scikit-learn does, the labels are binarized into one column (two
    classes) or one column per class, with values in {-1, 1}, and each column
    is fit by ridge regression. The outer criterion is the mean squared error
    of these {-1, 1} targets (a log-loss is not defined for this classifier;
    ``scoring`` still reports accuracy or any other metric).
    ``class_weight`` multiplies the training weights, computed on each
    training fold.
    """

    per_output = False

    def encode_targets(self, estimator, y):
        check_classification_targets(y)
        binarizer = LabelBinarizer(pos_label=1, neg_label=-1)
        Y = binarizer.fit_transform(y).astype(np.float64)
        if binarizer.classes_.size < 2:
            raise ValueError(
                "RidgeClassifier needs samples of at least 2 classes in the data, but "
                f"the data contains only one class: {binarizer.classes_[0]!r}."
            )
        n_outputs = Y.shape[1]
        if n_outputs == 1:
            Y = Y[:, 0]
        offset = _target_offset(self, estimator, Y)
        context = {
            "classes_": binarizer.classes_,
            "label_binarizer": binarizer,
            "offset": offset,
        }
        return TargetEncoding(
            SquaredLoss(n_outputs), Y - offset, n_outputs, 2.0 / n_outputs, context
        )

    def training_weights(self, estimator, y, sample_weight):
        class_weight = getattr(estimator, "class_weight", None)
        if not class_weight:
            return sample_weight
        per_sample = compute_sample_weight(class_weight, y)
        return per_sample if sample_weight is None else sample_weight * per_sample

    def set_solution(self, estimator, coef, intercept, encoding):
        # RidgeClassifier keeps a 1-d coef_ but a (1,) intercept_ for 2 classes.
        estimator.coef_ = coef.reshape(-1) if coef.ndim == 1 else coef.T.copy()
        if intercept is None:
            estimator.intercept_ = 0.0
        else:
            estimator.intercept_ = np.atleast_1d(intercept + encoding.context["offset"])
        estimator.classes_ = encoding.context["classes_"]
        estimator._label_binarizer = encoding.context["label_binarizer"]
        estimator.n_iter_ = None
        return estimator


def _target_offset(adapter, estimator, y):
    """Mean of each target column when an intercept is fit, else 0.

    With an unpenalized intercept, shifting the targets by a constant only
    shifts the intercept, so the engine fits centered targets and the offset is
    added back. It matters: the engine's inner tolerance is relative to the
    gradient at zero, which a large target mean (diabetes: 152) makes mostly
    intercept, letting the coefficients stop far from their optimum.
    """
    if not adapter.fit_intercept(estimator):
        return np.zeros(y.shape[1:])
    return y.mean(axis=0)


_REGISTRY = {
    LogisticRegression: LogisticRegressionAdapter(),
    Ridge: RidgeAdapter(),
    RidgeClassifier: RidgeClassifierAdapter(),
}

_REQUIRED = ("check_estimator", "encode_targets", "set_solution", "to_lambda")


def register_adapter(estimator_class, adapter):
    """Make :class:`BilevelSearchCV` support ``estimator_class``.

    Parameters
    ----------
    estimator_class : type
        The estimator class (matched exactly: register subclasses too).
    adapter : EstimatorAdapter
        An instance following the :class:`EstimatorAdapter` protocol; it
        replaces any adapter registered before for that class.

    Examples
    --------
    >>> from sklearn.linear_model import Ridge
    >>> from skbilevel.model_selection import RidgeAdapter, register_adapter
    >>> class MyRidge(Ridge):
    ...     pass
    >>> register_adapter(MyRidge, RidgeAdapter())
    """
    if not isinstance(estimator_class, type):
        raise TypeError(
            f"estimator_class must be a class, got {type(estimator_class).__name__}."
        )
    missing = [name for name in _REQUIRED if not callable(getattr(adapter, name, None))]
    if missing or not getattr(adapter, "params", ()):
        raise TypeError(
            "adapter must follow the EstimatorAdapter protocol (subclass "
            "skbilevel.model_selection.EstimatorAdapter); missing: "
            f"{', '.join(missing) or 'params'}."
        )
    _REGISTRY[estimator_class] = adapter


def get_adapter(estimator):
    """The adapter registered for the class of ``estimator``.

    Parameters
    ----------
    estimator : estimator instance
        The estimator (not a Pipeline: its last step).

    Returns
    -------
    EstimatorAdapter

    Raises
    ------
    TypeError
        If no adapter is registered; the message lists the supported classes.
    """
    adapter = _REGISTRY.get(type(estimator))
    if adapter is None:
        supported = ", ".join(
            f"{cls.__name__} ({'/'.join(a.params)})" for cls, a in _REGISTRY.items()
        )
        raise TypeError(
            f"BilevelSearchCV does not support {type(estimator).__name__}. Supported "
            f"estimators (searchable parameter): {supported}, alone or as the last "
            "step of a Pipeline. Use skbilevel.register_adapter to add one."
        )
    return adapter
