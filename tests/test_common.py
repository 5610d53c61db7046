"""scikit-learn's estimator checks on every public estimator configuration."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from skbilevel import HOAGLogisticRegression

ESTIMATORS = [
    HOAGLogisticRegression(),
    HOAGLogisticRegression(penalty_groups="features", hypergradient="cg"),
]


def _expected_failed_checks(estimator):
    reason = (
        "C is chosen by cross-validation: repeating a sample moves copies of it "
        "into different folds, which weighting cannot reproduce, so the chosen C "
        "and the refit model differ slightly (as for LogisticRegressionCV)."
    )
    return {
        "check_sample_weight_equivalence_on_dense_data": reason,
        "check_sample_weight_equivalence_on_sparse_data": reason,
    }


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected_failed_checks)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
