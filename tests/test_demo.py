"""The README's demo runs end to end and prints the comparison it promises.

Slow (about a minute on 2 cores: GridSearchCV and LogisticRegressionCV take
most of it); run with ``python -m pytest -m slow tests/test_demo.py``.
"""

import subprocess
import sys
from pathlib import Path

import pytest

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo.py"
METHODS = [
    "BilevelSearchCV",
    "GridSearchCV (20 C)",
    "LogisticRegressionCV (20 C)",
    "HOAGLogisticRegression",
]


@pytest.mark.slow
def test_demo_prints_the_comparison_and_saves_the_plot(tmp_path):
    pytest.importorskip("matplotlib")
    plot = tmp_path / "path.png"
    run = subprocess.run(
        [sys.executable, str(DEMO), str(plot)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr
    rows = {}
    for line in run.stdout.splitlines():
        for method in METHODS:
            cells = line[len(method) :].split()
            # a table row: the method, then its five numbers (the summary
            # sentence after the table also starts with a method's name)
            if line.startswith(method) and len(cells) == 5:
                rows[method] = [float(x) for x in cells]
    assert list(rows) == METHODS
    # time, ratio, C, CV log-loss, test accuracy
    assert rows["BilevelSearchCV"][1] == 1.0
    grid_loss, ours = rows["GridSearchCV (20 C)"][3], rows["BilevelSearchCV"][3]
    assert ours <= grid_loss * 1.001  # at least as good as the 20-point grid
    assert all(0.9 < row[4] <= 1 for row in rows.values())
    assert plot.stat().st_size > 10_000
