"""The search service under both estimators.

- :mod:`._folds`: the folds of one fit (splits, Pipeline prefix fits, weights,
  device placement) and their engine objectives;
- :mod:`._space`: the hyperparameter space (log-space box, start, structure);
- :mod:`._service`: the search itself (bracket, HOAG, polish, history,
  warnings);
- :mod:`._progress`: what the search prints.
"""

from ._folds import (
    FoldData,
    SplitEstimator,
    as_engine_array,
    check_splits,
    engine_folds,
    fold_weights,
    materialize_folds,
    route_fit_params,
    split_estimator,
)
from ._service import POLISH_TOL, GradientSearch, SearchOptions, SearchResult
from ._space import STRUCTURES, HyperSpace

__all__ = [
    "FoldData",
    "GradientSearch",
    "HyperSpace",
    "POLISH_TOL",
    "STRUCTURES",
    "SearchOptions",
    "SearchResult",
    "SplitEstimator",
    "as_engine_array",
    "check_splits",
    "engine_folds",
    "fold_weights",
    "materialize_folds",
    "route_fit_params",
    "split_estimator",
]
