"""The GPU check in one call: CuPy tests, then GPU against CPU and GridSearchCV.

Run from the repository root on a machine where CuPy sees a CUDA device::

    python benchmarks/gpu_check.py                 # about 4 minutes on one H200
    python benchmarks/gpu_check.py --full          # the issue's sizes (CPU side: long)

Without CuPy, or when CuPy sees no device, it says so and exits 0: nothing is
measured. ``--stand-in`` runs every step on tiny problems with
``array_api_strict.Device("device1")`` in place of the GPU (a dry run of the
script on a CPU-only machine; its times mean nothing).

Steps, each in a ``try`` (a failure is reported and the next step runs), each
skipped once ``--budget`` seconds (default 270, pytest included) have passed:

1. the environment: GPU, CuPy, NumPy, SciPy, scikit-learn;
2. ``SCIPY_ARRAY_API=1 pytest -m gpu tests/test_gpu.py`` in a subprocess
   (``--skip-tests`` leaves it out);
3. for each problem (dense binary float32, dense 10-class float32, CSR binary):
   ``HOAGLogisticRegression(C_init=1, max_iter=3)`` on ``device="cuda"`` and
   ``device="cpu"`` (target: >= 20x), after an untimed warm-up fit on 2000
   rows (CUDA context, CuPy's kernel compilation). Every row has the time
   split (host-to-GPU transfers, inner L-BFGS solves, hypergradients, Newton
   re-solves of the polish and the refit, the rest) and, on the GPU, the peak
   memory (high-water mark of CuPy's memory pool). The CPU run gets
   ``max_time`` from the budget left; when that stops it early, the row says
   the speedup is a lower bound;
4. for the dense problems: ``BilevelSearchCV(LogisticRegression(),
   device="cuda")`` on NumPy data, then on CuPy data under the array API
   dispatch, and the whole ``HOAGLogisticRegression`` search on CuPy data,
   against ``GridSearchCV(LogisticRegression(), 20 Cs)`` on CuPy arrays
   through scikit-learn's array API (target: >= 5x), and cuML's
   ``LogisticRegression`` in the same ``GridSearchCV`` when ``cuml`` imports.
   A ``GridSearchCV`` whose projected time (from one timed fit) exceeds the
   budget left is skipped, and says so.

The last lines are a table; ``$OUT/gpu_check.json`` (or ``--json``) holds every
figure. Default sizes: 200,000 x 1000, 50,000 x 784 (10 classes), 100,000 x
100,000 CSR; ``--full``: 1,000,000 x 1000, 200,000 x 784, 1,000,000 x 100,000
(give it ``--budget``: the CPU side alone takes many minutes there).

The device machine of this workplace has no network. Its image has CuPy,
NumPy, SciPy and pytest; if its scikit-learn is older than 1.9 or
``array_api_compat`` / ``array_api_strict`` are missing, fetch wheels here once
and carry them::

    python benchmarks/gpu_check.py --download-wheels .gpu_wheels   # here
    echo /.gpu_wheels/ >> .git/info/exclude
    # device: python3 benchmarks/gpu_check.py --wheels .gpu_wheels
    #         with carry=[".gpu_wheels"], timeout_s=420

skbilevel itself is imported from the checkout (no install needed).
"""

import os

# scikit-learn's array API dispatch (GridSearchCV on CuPy arrays) needs SciPy's,
# which reads this variable when SciPy is first imported.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

WHEELS = ("scikit-learn=={sklearn}", "array-api-compat", "array-api-strict")
SIZES = {
    "default": {"dense": (200_000, 1000), "multiclass": (50_000, 784),
                "sparse": (100_000, 100_000)},
    "full": {"dense": (1_000_000, 1000), "multiclass": (200_000, 784),
             "sparse": (1_000_000, 100_000)},
    "stand-in": {"dense": (600, 20), "multiclass": (600, 16), "sparse": (600, 300)},
}  # fmt: skip
N_CS = 20


# -- wheels for a machine without network ----------------------------------------
def download_wheels(folder):
    import sklearn

    names = [w.format(sklearn=sklearn.__version__) for w in WHEELS]
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
         "--python-version", "3.12", "--platform", "manylinux2014_x86_64",
         "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux_2_28_x86_64",
         "-d", str(folder), *names],
        check=True,
    )  # fmt: skip


def install_wheels(folder):
    wheels = sorted(str(p) for p in Path(folder).glob("*.whl"))
    if wheels:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps",
             "--find-links", str(folder), *wheels],
            check=True,
        )  # fmt: skip


def missing_requirements():
    problems = []
    try:
        import sklearn

        major, minor = (int(part) for part in sklearn.__version__.split(".")[:2])
        if (major, minor) < (1, 9):
            problems.append(f"scikit-learn {sklearn.__version__} < 1.9")
    except ImportError:
        problems.append("scikit-learn is not installed")
    for module in ("array_api_compat", "array_api_strict", "pytest"):
        try:
            __import__(module)
        except ImportError:
            problems.append(f"{module} is not installed")
    return problems


# -- the device: CuPy, or array_api_strict standing in ----------------------------
class Device:
    """Transfers, synchronization and peak memory of the GPU (or of the stand-in)."""

    def __init__(self, stand_in):
        self.stand_in = stand_in
        if stand_in:
            import array_api_strict as xps

            self.xp, self.where = xps, xps.Device("device1")
            self.name = "array_api_strict device1 (stand-in: times mean nothing)"
            self._install_stand_in()
            return
        import cupy

        self.xp, self.cupy = cupy, cupy
        props = cupy.cuda.runtime.getDeviceProperties(0)
        self.name = f"{props['name'].decode()}, CuPy {cupy.__version__}"
        self.pool = cupy.get_default_memory_pool()

    def _install_stand_in(self):
        import numpy as np

        import skbilevel.linear_model._hoag_logistic as hoag_module
        import skbilevel.model_selection._search as search_module
        import skbilevel.search._folds as folds_module

        def to_stand_in(X, dtype=None):
            if X is None:
                return None
            if hasattr(X, "toarray"):  # no sparse arrays in the standard
                X = X.toarray()
            return self.xp.asarray(np.asarray(X, dtype=dtype), device=self.where)

        hoag_module.to_cuda = folds_module.to_cuda = to_stand_in
        search_module.check_device_available = lambda: None

    def asarray(self, X):
        if self.stand_in:
            return self.xp.asarray(X, device=self.where)
        return self.cupy.asarray(X)

    def sync(self):
        if not self.stand_in:
            self.cupy.cuda.Stream.null.synchronize()

    def reset_peak(self):
        gc.collect()
        if not self.stand_in:
            self.sync()
            self.pool.free_all_blocks()

    def peak_mib(self):
        # CuPy's pool keeps freed blocks for reuse: its size after a run is the
        # high-water mark of the memory the run held at once.
        return None if self.stand_in else self.pool.total_bytes() / 2**20


# -- the time split ----------------------------------------------------------------
# (module, function) pairs timed by wrapping; a pair missing after a refactor
# is reported as not instrumented rather than failing the run.
# The fold evaluation moved from outer/problem.py to outer/_fold_eval.py: both
# are listed, and the first of each phase's engine pairs that exists is used.
PHASES = {
    "transfer": [("skbilevel.linear_model._hoag_logistic", "to_cuda"),
                 ("skbilevel.search._folds", "to_cuda")],
    "inner_lbfgs": [("skbilevel.outer._fold_eval", "minimize_lbfgs"),
                    ("skbilevel.outer.problem", "minimize_lbfgs")],
    "hypergradient": [("skbilevel.outer._fold_eval", "hypergradient"),
                      ("skbilevel.outer.problem", "hypergradient")],
    "newton": [("skbilevel.outer._fold_eval", "minimize_newton_cg"),
               ("skbilevel.outer.problem", "minimize_newton_cg"),
               ("skbilevel.linear_model._hoag_logistic", "minimize_newton_cg")],
}  # fmt: skip


class PhaseTimer:
    def __init__(self, device):
        import importlib

        self.device, self.seconds, self.missing = device, {}, []
        for phase, targets in PHASES.items():
            found = False
            for module_name, name in targets:
                try:
                    module = importlib.import_module(module_name)
                except ImportError:
                    continue
                if hasattr(module, name):
                    setattr(module, name, self._timed(phase, getattr(module, name)))
                    found = True
            if not found:
                self.missing.append(phase)

    def _timed(self, phase, function):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.device.sync()
                self.seconds[phase] = (
                    self.seconds.get(phase, 0.0) + time.perf_counter() - start
                )

        return timed

    def reset(self):
        self.seconds = {}

    def split(self, total):
        split = {phase: round(self.seconds.get(phase, 0.0), 3) for phase in PHASES}
        split["other"] = round(total - sum(split.values()), 3)
        return split


# -- problems ----------------------------------------------------------------------
def make_problems(sizes):
    import numpy as np
    from _datasets import make_sparse_classification

    rng = np.random.default_rng(0)
    n, p = sizes["dense"]
    X = rng.standard_normal((n, p), dtype=np.float32)
    coef = rng.standard_normal(p).astype(np.float32) * (3 / np.sqrt(p))
    y = (rng.random(n) < 1 / (1 + np.exp(-(X @ coef)))).astype(np.int64)
    yield f"dense {n}x{p} float32 binary", X, y, True
    n, p = sizes["multiclass"]
    X = rng.standard_normal((n, p), dtype=np.float32)
    coef = rng.standard_normal((p, 10)).astype(np.float32) * (2 / np.sqrt(p))
    y = np.argmax(X @ coef + rng.gumbel(size=(n, 10)), axis=1)
    yield f"dense {n}x{p} float32 10-class", X, y, True
    n, p = sizes["sparse"]
    density = max(1e-4, 10 / p)
    X, y = make_sparse_classification(n, p, density=density, random_state=0)
    yield f"CSR {n}x{p} density {density:g} binary", X, y, False


# -- the measurements --------------------------------------------------------------
class Check:
    def __init__(self, device, budget):
        self.device, self.budget, self.start = device, budget, time.perf_counter()
        self.timer = PhaseTimer(device)
        self.rows = []

    def remaining(self):
        return self.budget - (time.perf_counter() - self.start)

    def skip(self, problem, method, where, reason):
        row = {"problem": problem, "method": method, "device": where, "error": reason}
        self.rows.append(row)
        print(json.dumps(row), flush=True)
        return row

    def run(self, problem, method, where, function, *args, **kwargs):
        """Time ``function(*args, **kwargs)`` (a dict: C, loss...) into a row."""
        if self.remaining() <= 0:
            return self.skip(problem, method, where, "skipped: budget spent")
        row = {"problem": problem, "method": method, "device": where}
        self.device.reset_peak()
        self.timer.reset()
        start = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                row.update(function(*args, **kwargs))
            self.device.sync()
            row["seconds"] = round(time.perf_counter() - start, 3)
            row["split"] = self.timer.split(row["seconds"])
            if where != "cpu":
                row["peak_gpu_mib"] = self.device.peak_mib()
        except Exception as exc:  # report and go on: one call, many measurements
            row["error"] = f"{type(exc).__name__}: {exc}"[:300]
        self.rows.append(row)
        print(json.dumps(row), flush=True)
        return row


def _default_max_iter():
    """``HOAGLogisticRegression``'s default ``max_iter``: the whole search."""
    from skbilevel import HOAGLogisticRegression

    return HOAGLogisticRegression().max_iter


def hoag_fit(X, y, device, max_time=None, **params):
    """HOAGLogisticRegression's fit; by default with ``C_init=1, max_iter=3``.

    C_init skips the bracket: both devices do the same, bounded work (a start,
    3 gradient steps, the polish of the best point and the refit), unless
    max_time stops the CPU early (then the rows say so). ``params`` replace
    them (``C_init=None`` and the default ``max_iter``: the whole search).
    """
    from skbilevel import HOAGLogisticRegression

    params = {"C_init": 1.0, "max_iter": 3, **params}
    model = HOAGLogisticRegression(
        cv=5, device=device, max_time=max_time, **params
    ).fit(X, y)
    return {
        "C": float(model.C_),
        "loss": float(model.cv_loss_),
        "evaluations": int(model.n_iter_),
        "inner_iter": int(sum(r.get("inner_iter", 0) for r in model.history_)),
    }


def bilevel_search(X, y, dispatch=False):
    """BilevelSearchCV on the GPU: NumPy data with ``device="cuda"``, or (with
    ``dispatch``) device data under scikit-learn's array API dispatch."""
    from sklearn import config_context
    from sklearn.linear_model import LogisticRegression

    from skbilevel import BilevelSearchCV

    search = BilevelSearchCV(
        LogisticRegression(), {"C": (1e-4, 1e4)}, cv=5, scoring="neg_log_loss",
        device="cuda",
    )  # fmt: skip
    with config_context(array_api_dispatch=dispatch):
        search.fit(X, y)
    return {
        "C": float(search.best_params_["C"]),
        "loss": float(-search.best_score_),
        "evaluations": int(search.n_iter_),
    }


def grid_search(estimator, X, y, dispatch, scoring="neg_log_loss"):
    import numpy as np
    from sklearn import config_context
    from sklearn.model_selection import GridSearchCV

    search = GridSearchCV(
        estimator,
        {"C": np.logspace(-4, 4, N_CS)},
        cv=5,
        scoring=scoring,
        error_score="raise",  # a failing scorer is an error, not NaN scores
    )
    with config_context(array_api_dispatch=dispatch):
        search.fit(X, y)
    loss = -search.best_score_ if scoring == "neg_log_loss" else None
    return {"C": float(search.best_params_["C"]), "loss": loss, "scoring": scoring}


def one_fit_seconds(estimator, X, y, dispatch):
    """One fit on 4/5 of the data: what each of GridSearchCV's fits costs."""
    from sklearn import clone, config_context

    n = X.shape[0] * 4 // 5
    start = time.perf_counter()
    with warnings.catch_warnings(), config_context(array_api_dispatch=dispatch):
        warnings.simplefilter("ignore")
        clone(estimator).set_params(C=1.0).fit(X[:n, ...], y[:n])
    return time.perf_counter() - start


def run_grid_search(check, name, method, estimator, X, y, dispatch):
    """GridSearchCV scored by log-loss (by accuracy where scikit-learn cannot
    score log-loss on the device); skipped when its projected time, 1.5 x the
    5 * N_CS fits at the cost of one, exceeds the budget left."""
    try:
        projected = 1.5 * 5 * N_CS * one_fit_seconds(estimator, X, y, dispatch)
    except Exception as exc:
        return check.skip(name, method, "cuda", f"{type(exc).__name__}: {exc}"[:300])
    if projected > check.remaining():
        return check.skip(
            name, method, "cuda",
            f"skipped: projected {projected:.0f} s > {check.remaining():.0f} s left",
        )  # fmt: skip
    row = check.run(name, method, "cuda", grid_search, estimator, X, y, dispatch)
    if "error" in row and not row["error"].startswith("skipped"):
        row = check.run(
            name, method, "cuda", grid_search, estimator, X, y, dispatch, scoring=None
        )
    return row


def run_tests(device, budget):
    if device.stand_in:
        return {"skipped": "stand-in: tests/test_gpu.py needs a GPU"}
    start = time.perf_counter()
    # The checkout first, then the caller's own PYTHONPATH.
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "SCIPY_ARRAY_API": "1", "PYTHONPATH": path}
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "gpu", "tests/test_gpu.py", "-q",
         "-p", "no:cacheprovider"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=budget,
    )  # fmt: skip
    tail = (completed.stdout + completed.stderr).strip().splitlines()[-15:]
    print("\n".join(tail), flush=True)
    return {
        "returncode": completed.returncode,
        "seconds": round(time.perf_counter() - start, 1),
        "summary": tail[-1] if tail else "",
    }


def compare_hoag(check, problems):
    """HOAGLogisticRegression, the same settings on the GPU and on the CPU."""
    for index, (name, X, y, _) in enumerate(problems):
        # CUDA context, cuBLAS handles and CuPy's kernel compilation, untimed.
        n_warm = min(2000, X.shape[0])
        check.run(name, "warm-up", "cuda", hoag_fit, X[:n_warm], y[:n_warm], "cuda")
        check.rows.pop()
        gpu = check.run(name, "HOAGLogisticRegression", "cuda", hoag_fit, X, y, "cuda")
        if "error" in gpu:
            continue
        # The CPU run may take the time left to the budget, shared with the
        # problems after this one; max_time stops its search, not its refit.
        n_left = len(problems) - index
        max_time = max(5.0, 0.6 * check.remaining() / n_left)
        cpu = check.run(
            name, "HOAGLogisticRegression", "cpu", hoag_fit, X, y, "cpu", max_time
        )
        if "seconds" not in cpu:
            continue
        gpu["speedup_vs_cpu"] = round(cpu["seconds"] / gpu["seconds"], 2)
        if cpu["evaluations"] < gpu["evaluations"]:
            # Fewer evaluations on the CPU: the speedup is underestimated.
            gpu["note"] = (
                f"CPU stopped by max_time after {cpu['evaluations']} of "
                f"{gpu['evaluations']} evaluations: speedup is a lower bound"
            )


def compare_searches(check, device, problems):
    """BilevelSearchCV on the GPU against GridSearchCV on CuPy arrays (and cuML)."""
    from sklearn.linear_model import LogisticRegression

    for name, X, y, dense in problems:
        if not dense:  # scikit-learn's array API takes no GPU sparse matrices
            continue
        searches = [check.run(name, "BilevelSearchCV", "cuda", bilevel_search, X, y)]
        X_dev, y_dev = device.asarray(X), device.asarray(y)
        # On the grid's footing: the data already on the device (the copy
        # untimed, as the grid's).
        searches.append(
            check.run(
                name, "BilevelSearchCV device data", "cuda", bilevel_search,
                X_dev, y_dev, True,
            )
        )  # fmt: skip
        searches.append(
            check.run(
                name,
                "HOAG search device data",
                "cuda",
                hoag_fit,
                X_dev,
                y_dev,
                device=None,
                C_init=None,
                max_iter=_default_max_iter(),
            )
        )
        grid = run_grid_search(
            check, name, f"GridSearchCV({N_CS} Cs) array API", LogisticRegression(),
            X_dev, y_dev, True,
        )  # fmt: skip
        for search in searches:
            if "seconds" in search and "seconds" in grid:
                search["speedup_vs_gridsearch"] = round(
                    grid["seconds"] / search["seconds"], 2
                )
        try:
            from cuml.linear_model import LogisticRegression as CumlLogisticRegression
        except Exception as exc:
            check.skip(name, "cuML", "cuda", f"cuml does not import: {exc}"[:200])
        else:
            run_grid_search(
                check, name, f"GridSearchCV({N_CS} Cs) cuML", CumlLogisticRegression(),
                X_dev, y_dev, False,
            )  # fmt: skip
        del X_dev, y_dev


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the issue's sizes")
    parser.add_argument("--stand-in", action="store_true", help="CPU dry run")
    parser.add_argument("--budget", type=float, default=270.0, help="seconds")
    parser.add_argument("--skip-tests", action="store_true", help="no pytest step")
    parser.add_argument("--wheels", help="install the wheels of this folder first")
    parser.add_argument("--download-wheels", help="pip download them here, and stop")
    parser.add_argument("--json", help="where to write the figures")
    args = parser.parse_args()
    if args.download_wheels:
        download_wheels(args.download_wheels)
        return 0
    if args.wheels:
        install_wheels(args.wheels)
    if not args.stand_in:
        try:
            import cupy

            if cupy.cuda.runtime.getDeviceCount() < 1:
                raise RuntimeError("CuPy sees no CUDA device")
        except Exception as exc:  # ImportError, or no driver / device
            print(f"No GPU check: {type(exc).__name__}: {exc}. Nothing measured.")
            return 0
    problems = missing_requirements()
    if problems:
        print(
            "Cannot run the GPU check: " + "; ".join(problems) + ". Carry wheels: "
            "python benchmarks/gpu_check.py --download-wheels .gpu_wheels (here), "
            "then --wheels .gpu_wheels on the device machine."
        )
        return 1
    import numpy as np
    import scipy
    import sklearn

    start = time.perf_counter()
    device = Device(args.stand_in)
    print(
        f"{device.name}; NumPy {np.__version__}, SciPy {scipy.__version__}, "
        f"scikit-learn {sklearn.__version__}",
        flush=True,
    )
    report = {"device": device.name, "budget_s": args.budget}
    if not args.skip_tests:
        try:
            report["tests"] = run_tests(device, max(60.0, args.budget / 2))
        except subprocess.TimeoutExpired as exc:
            report["tests"] = {"error": f"pytest ran past {exc.timeout:.0f} s"}
    check = Check(device, args.budget - (time.perf_counter() - start))
    sizes = SIZES["stand-in" if args.stand_in else "full" if args.full else "default"]
    problems = list(make_problems(sizes))
    # The two targets, most important first: the same fit on the GPU
    # and the CPU, then the search against GridSearchCV.
    compare_hoag(check, problems)
    compare_searches(check, device, problems)
    report["rows"] = check.rows
    report["not_instrumented"] = check.timer.missing
    report["total_s"] = round(time.perf_counter() - start, 1)
    out = args.json or (
        os.path.join(os.environ["OUT"], "gpu_check.json")
        if "OUT" in os.environ
        else None
    )
    if out:
        Path(out).write_text(json.dumps(report, indent=1))
    print_table(report)
    return 0


def print_table(report):
    print(f"\n{report['device']}; tests: {report.get('tests')}")
    header = f"{'problem':36s} {'method':32s} {'dev':4s} {'s':>8s} {'x':>6s} "
    print(header + f"{'MiB':>7s} {'C':>9s} {'loss':>7s}  split / error")
    for row in report["rows"]:
        speedup = row.get("speedup_vs_cpu", row.get("speedup_vs_gridsearch"))
        cells = [
            f"{row['problem'][:36]:36s} {row['method'][:32]:32s} {row['device']:4s}",
            f"{row['seconds']:8.2f}" if "seconds" in row else f"{'-':>8s}",
            f"{speedup:6.1f}" if speedup else f"{'':6s}",
            f"{row['peak_gpu_mib']:7.0f}" if row.get("peak_gpu_mib") else f"{'':7s}",
            f"{row['C']:9.3g}" if "C" in row else f"{'':9s}",
            f"{row['loss']:7.4f}" if row.get("loss") is not None else f"{'':7s}",
        ]
        detail = row.get("error") or " ".join(
            f"{k}={v:.1f}" for k, v in row.get("split", {}).items() if v
        )
        if row.get("note"):
            detail += f" ({row['note']})"
        if "scoring" in row and row["scoring"] is None:
            detail += " (scored by accuracy: log-loss failed on the device)"
        print(" ".join(cells) + "  " + detail)
    print(
        f"total {report['total_s']} s; not instrumented: {report['not_instrumented']}"
    )


if __name__ == "__main__":
    sys.exit(main())
