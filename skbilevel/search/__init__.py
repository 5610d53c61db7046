"""The search service under both estimators.

- :mod:`._folds`: the folds of one fit (splits, Pipeline prefix fits, weights,
  device placement) and their engine objectives;
- :mod:`._space`: the hyperparameter space (log-space box, start, structure);
- :mod:`._service`: the search itself (bracket, HOAG, polish, history,
  warnings), and the choice of a search for a problem;
- :mod:`._ridge`, :mod:`._ridge_factor`, :mod:`._ridge_rows`: the closed-form
  search of ridge penalties (the whole K-fold CV curve from one factorization
  per fold);
- :mod:`._vector` and :mod:`._heldout`: the search of one penalty per feature
  or per group, checked on held-out halves of the validation folds;
- :mod:`._banded` and :mod:`._banded_fold`: one ridge penalty per target and
  per group of features, in closed form over candidate group weightings;
- :mod:`._progress`: what the search prints.
"""

from ._banded import BandedRidgeSearch
from ._folds import (  # noqa: F401 (the fold plumbing: see __all__ below)
    FoldData,
    SplitEstimator,
    as_engine_array,
    check_splits,
    engine_folds,
    fit_steps,
    fold_weights,
    materialize_folds,
    route_fit_params,
    split_estimator,
)
from ._ridge import RidgePathSearch
from ._ridge_rows import SharedRows
from ._service import (
    PATHS,
    POLISH_TOL,
    GradientSearch,
    SearchOptions,
    SearchResult,
    make_search,
    newton_refit,  # noqa: F401 (for the estimators' refits)
)
from ._space import STRUCTURES, HyperSpace
from ._vector import VECTOR_STRUCTURES  # noqa: F401 (for the estimators)

# The service's API. The fold plumbing (check_splits, materialize_folds,
# engine_folds...) is importable from here for the estimators and benchmarks
# but is not public: it may change with them.
__all__ = [
    "BandedRidgeSearch",
    "GradientSearch",
    "HyperSpace",
    "PATHS",
    "POLISH_TOL",
    "RidgePathSearch",
    "SharedRows",
    "STRUCTURES",
    "SearchOptions",
    "SearchResult",
    "make_search",
]
