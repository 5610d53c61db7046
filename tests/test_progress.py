"""What a search prints (search/_progress.py): one row per evaluation, decided
as the history records it, a closing line; and how values are described."""

import io

import numpy as np
import pytest

from skbilevel.outer import hoag
from skbilevel.search._progress import SearchProgress, describe_values

from ._problems import HIGH, LOW, VERBOSE_RUNS, make_problem


# -- the rows of a search against its history --------------------------------------
def _rows(out):
    """Header and data rows of a verbose search (rows start with the index)."""
    lines = out.splitlines()
    return lines[0].split(), [ln.split() for ln in lines if ln.split()[0].isdigit()]


@pytest.mark.parametrize("run", list(VERBOSE_RUNS))
@pytest.mark.parametrize("verbose", [0, 1, 2])
def test_verbose_rows_match_the_history(verbose, run, capsys):
    progress = SearchProgress(
        verbose, lambda lam: f"lambda={np.mean(lam):+.4f}", max_iter=8
    )
    result = hoag(
        make_problem(), bounds=(LOW, HIGH), max_iter=8, tol=1e-6,
        callback=progress.evaluation, **VERBOSE_RUNS[run],
    )  # fmt: skip
    progress.finish(result)
    statuses = {
        "bracket": "past-min",
        "rejections": "rejected",
    }
    out = capsys.readouterr().out
    if verbose == 0:
        assert out == ""
        return
    header, rows = _rows(out)
    assert header[:3] == ["eval", "phase", "step"]
    assert ("residual" in header) == (verbose == 2)
    assert len(rows) == len(result.history)
    best = np.inf
    for row, record in zip(rows, result.history):
        assert int(row[0]) == record["iteration"] and row[1] == record["phase"]
        if record["phase"] == "gradient":
            assert row[2] == f"{record['gradient_step']}/8"
        assert row[3] == f"lambda={record['lam'][0]:+.4f}"
        assert float(row[4]) == pytest.approx(record["value"], rel=1e-5)
        if record["accepted"]:
            best = min(best, record["value"])
        assert float(row[5]) == pytest.approx(best, rel=1e-5)
        expected = {True: "kept", False: "rejected"}[bool(record["accepted"])]
        if record["phase"] == "bracket" and not record["accepted"]:
            expected = "past-min"
        assert row[7] == expected
        if verbose == 2:
            assert int(row[10]) == record["inner_iter"]
            assert int(row[11]) == record["n_hvp"]
    assert statuses[run] in [row[7] for row in rows]
    closing = out.splitlines()[-1]
    assert closing.startswith("Search converged" if result.converged else "Search not")
    assert result.message in closing and f"{len(result.history)} evaluations" in closing


# -- rows and closing line of hand-made records ------------------------------------
def _record(iteration, phase, lam, value, accepted, **fields):
    record = {
        "iteration": iteration, "phase": phase, "gradient_step": iteration,
        "lam": np.asarray(lam, dtype=float), "value": value, "grad_norm": 0.1,
        "accepted": accepted, "elapsed": 0.1 * (iteration + 1), "inner_tol": 1e-4,
        "inner_iter": 12, "n_hvp": 3, "residual": None, "fold_values": [0.4, 0.6],
    }  # fmt: skip
    record.update(fields)
    return record


def _describe_C(lam):
    return describe_values("C", np.exp(-np.asarray(lam)))


def test_rows_and_closing_line_go_to_the_given_stream(capsys):
    from skbilevel.search import SearchResult

    stream = io.StringIO()
    progress = SearchProgress(2, _describe_C, max_iter=5, stream=stream)
    history = [
        _record(0, "start", [-np.log(2.0)], 0.5, True),
        _record(1, "gradient", [0.0], 0.7, False, residual=2e-3, n_hvp=7),
    ]
    for record in history:
        progress.evaluation(record)
    result = SearchResult(
        lam=history[0]["lam"], value=0.5, best_index=0, n_iter=1,
        converged=False, message="max_iter reached", history=history,
    )  # fmt: skip
    progress.finish(result)
    assert capsys.readouterr().out == ""
    header, *rows, closing = stream.getvalue().splitlines()
    assert header.split()[-2:] == ["fold", "spread"]
    assert rows[0].split() == [
        "0", "start", "-", "C=2", "0.5", "0.5", "1.00e-01", "kept", "0.10s",
        "1e-04", "12", "3", "-", "0.4-0.6",
    ]  # fmt: skip
    # A rejected step leaves the running best where it was.
    assert rows[1].split() == [
        "1", "gradient", "1/5", "C=1", "0.7", "0.5", "1.00e-01", "rejected",
        "0.20s", "1e-04", "12", "7", "2.0e-03", "0.4-0.6",
    ]  # fmt: skip
    assert closing == (
        "Search not converged after 2 evaluations (1 gradient step, 0.20s): "
        "max_iter reached. Lowest CV loss 0.5 at C=2."
    )


def test_verbose_one_has_no_solver_columns():
    stream = io.StringIO()
    progress = SearchProgress(1, _describe_C, max_iter=5, stream=stream)
    progress.evaluation(_record(0, "bracket", [0.0], 0.5, False))
    header, row = stream.getvalue().splitlines()
    assert header.split() == [
        "eval", "phase", "step", "parameter", "CV", "loss", "best", "|grad|",
        "status", "elapsed",
    ]  # fmt: skip
    # A bracket point past the minimum is not a rejected step.
    assert row.split()[7] == "past-min" and row.split()[5] == "inf"


@pytest.mark.parametrize(
    "values, expected",
    [
        (0.25, "C=0.25"),
        ([0.25, 0.25, 0.25], "C=0.25"),
        (123456.0, "C=1.235e+05"),
        ([3.2, 0.01, 1.0], "C=[0.01..3.2]"),
        ([[0.5], [2.0]], "C=[0.5..2]"),
        # equal up to rounding: one value
        ([1.0, 1.0 + 1e-14], "C=1"),
    ],
)
def test_describe_values(values, expected):
    assert describe_values("C", values) == expected
