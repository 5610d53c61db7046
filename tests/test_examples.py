"""The gallery examples run, as a user runs them: ``python examples/<name>.py``.

Each fast example runs in its own interpreter with matplotlib's Agg backend, in
an empty temporary directory (so nothing depends on the working directory, and
a script that leaves files behind is caught); a non-zero exit status fails the
test with the script's output. The examples that fit on Fashion-MNIST take
minutes and are not run here (``SKBILEVEL_DOC_PLOT=1 make -C doc html`` runs
them).
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

# Seconds before a run counts as hung (they take seconds).
TIMEOUT = 600

# The GPU branch of plot_gpu.py with a stand-in for CuPy that keeps every
# array on the host: it checks the script's own code (names, formatting,
# attribute access) where no GPU is available, not CuPy's behaviour, which
# tests/test_gpu.py covers on a GPU machine.
_WITH_STAND_IN_CUPY = """
import runpy
import sys
import types

import numpy as np


class _Device:
    def synchronize(self):
        pass


cupy = types.ModuleType("cupy")
cupy.ndarray = type("ndarray", (), {})  # no array is a stand-in CuPy array
cupy.asarray = np.asarray
cupy.cuda = types.SimpleNamespace(
    runtime=types.SimpleNamespace(
        getDeviceCount=lambda: 1,
        getDeviceProperties=lambda index: {"name": b"stand-in"},
    ),
    Device=_Device,
)
sys.modules["cupy"] = cupy
runpy.run_path(sys.argv[1], run_name="__main__")
"""


def _run(command, cwd):
    env = dict(os.environ, MPLBACKEND="Agg")
    # One BLAS thread: the problems are small, and on a shared machine idle
    # cores are few; BLAS threads spinning against other processes made one
    # GridSearchCV of the quick start 15 times slower (29 s instead of 2 s).
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(name, "1")
    # The checkout's skbilevel, installed or not.
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])
    )
    result = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert result.returncode == 0, (
        f"{' '.join(map(str, command))} exited with {result.returncode}:\n"
        f"{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    )
    return result.stdout


def run_example(name, cwd):
    """Run ``examples/<name>`` in ``cwd``; its standard output."""
    return _run([sys.executable, str(EXAMPLES / name)], cwd)


def test_quick_start(tmp_path):
    out = run_example("plot_quick_start.py", tmp_path)
    assert "best_params_: {'logisticregression__C':" in out
    assert "one C per feature" in out
    assert list(tmp_path.iterdir()) == []


def test_pipeline_gridsearch(tmp_path):
    out = run_example("plot_pipeline_gridsearch.py", tmp_path)
    assert "keys only in GridSearchCV: []" in out
    assert "refit='r2'" in out
    assert "one alpha per target" in out
    assert list(tmp_path.iterdir()) == []


def _has_cuda_device():
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def test_gpu_example(tmp_path):
    out = run_example("plot_gpu.py", tmp_path)
    assert "CPU fit:" in out
    if _has_cuda_device():
        assert "GPU fit (CuPy in)" in out
    else:
        assert "Skipped the GPU fits" in out
        assert "HOAGLogisticRegression(device='cuda').fit raises" in out
    assert list(tmp_path.iterdir()) == []


def test_gpu_example_gpu_branch_with_stand_in_cupy(tmp_path):
    out = _run(
        [sys.executable, "-c", _WITH_STAND_IN_CUPY, str(EXAMPLES / "plot_gpu.py")],
        tmp_path,
    )
    assert "GPU: CUDA device 0: stand-in" in out
    assert "GPU fit (device='cuda', NumPy in)" in out
    assert "GPU fit (CuPy in)" in out
    assert "Skipped" not in out
