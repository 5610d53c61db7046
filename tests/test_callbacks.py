"""scikit-learn's callback API (``set_callbacks``) on both estimators."""

import numpy as np
import pytest
from sklearn.callback import ProgressBar, ScoringMonitor
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.preprocessing import scale

from skbilevel import BilevelSearchCV, HOAGLogisticRegression


@pytest.fixture(scope="module")
def data():
    X, y = load_breast_cancer(return_X_y=True)
    return scale(X), y


class _Recorder:
    """A FitCallback that records every task it sees (name, depth, hook)."""

    def __init__(self):
        self.events = []

    def setup(self, estimator, context):
        self.events.append(("setup", context.task_name))

    def on_fit_task_begin(self, estimator, context):
        self.events.append(("begin", context.task_name))

    def on_fit_task_end(self, estimator, context):
        self.events.append(("end", context.task_name))

    def teardown(self, estimator, context):
        self.events.append(("teardown", context.task_name))


def _estimators():
    return {
        "hoag": HOAGLogisticRegression(),
        "bilevel": BilevelSearchCV(LogisticRegression(), {"C": (1e-4, 1e4)}),
    }


@pytest.mark.parametrize("name", ["hoag", "bilevel"])
def test_one_evaluation_task_per_evaluated_point(data, name):
    X, y = data
    recorder = _Recorder()
    model = _estimators()[name].set_callbacks(recorder).fit(X, y)
    events = recorder.events
    assert events[0] == ("setup", "fit") and events[-1] == ("teardown", "fit")
    assert events[1] == ("begin", "fit") and events[-2] == ("end", "fit")
    evaluations = [e for e in events if e[1] == "evaluation"]
    # one begin and one end per point in the history, in order
    assert evaluations == [("begin", "evaluation"), ("end", "evaluation")] * len(
        model.history_
    )
    search = [e for e in events if e[1] == "search"]
    assert search == [("begin", "search"), ("end", "search")]
    refits = [e for e in events if e[1].startswith("refit")]
    assert len(refits) == 2


def test_progress_bar_runs_on_both(data, capsys):
    pytest.importorskip("rich")
    X, y = data
    for model in _estimators().values():
        model.set_callbacks(ProgressBar()).fit(X, y)
    out = capsys.readouterr().out
    assert "HOAGLogisticRegression - search" in out
    assert "BilevelSearchCV - search" in out


def test_scoring_monitor_scores_the_refit_model(data):
    X, y = data
    monitor = ScoringMonitor(scoring="accuracy")
    model = HOAGLogisticRegression().set_callbacks(monitor).fit(X, y)
    logs = monitor.get_logs().data_as_pandas
    assert len(logs) == 2  # the refit task and the whole fit
    expected = accuracy_score(y, model.predict(X))
    np.testing.assert_allclose(logs["accuracy"], expected)


def test_scoring_monitor_on_the_searched_estimator_sees_the_refit(data):
    # As with GridSearchCV: a monitor set on the inner estimator logs its fits;
    # the search fits it once, at the refit.
    X, y = data
    monitor = ScoringMonitor(scoring="accuracy")
    search = BilevelSearchCV(
        LogisticRegression().set_callbacks(monitor), {"C": (1e-4, 1e4)}
    ).fit(X, y)
    logs = monitor.get_logs().data_as_pandas
    assert len(logs) >= 1
    assert logs["accuracy"].iloc[-1] == pytest.approx(
        accuracy_score(y, search.best_estimator_.predict(X))
    )
