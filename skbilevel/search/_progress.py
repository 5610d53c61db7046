"""What a gradient search prints while it runs, by verbosity level.

A search over penalties can take minutes (one hyperparameter per feature on
Fashion-MNIST: hundreds of evaluations of ``K`` warm-started fits each), so the
user sees, one line per evaluation of the CV loss as soon as it is decided, where
the search is, how good the best point is, and what each evaluation cost:

- ``verbose=0``: nothing.
- ``verbose=1``: a header, one row per evaluation (phase, gradient step out of
  ``max_iter``, hyperparameter, CV loss, best so far, hypergradient norm,
  whether the step was kept, elapsed time) and a closing line saying why the
  search stopped and where.
- ``verbose>=2``: each row also shows the inner tolerance of that evaluation,
  L-BFGS iterations and Hessian-vector products summed over folds, the largest
  relative residual of the hypergradient linear systems, and the spread of the
  fold losses (a warning sign when one fold dominates).

Rows are written when the step's fate is known (a gradient step is kept or
rejected only after its evaluation), and flushed at once so that logs of long
jobs stay current.
"""

import sys

import numpy as np

__all__ = ["SearchProgress", "describe_values"]


def describe_values(name, values):
    """A hyperparameter's value(s) as one token: ``C=0.25``, or for several
    distinct values their range, ``C=[0.01..3.2]``."""
    values = np.ravel(np.asarray(values, dtype=float))
    low, high = values.min(), values.max()
    if values.size == 1 or high <= low * (1 + 1e-12):
        return f"{name}={values[0]:.4g}"
    return f"{name}=[{low:.3g}..{high:.3g}]"


def _status(record):
    accepted = record["accepted"]
    if record["phase"] == "bracket":
        return "kept" if accepted else "past-min"
    return "kept" if accepted else "rejected"


class SearchProgress:
    """Progress display of one search.

    Parameters
    ----------
    verbose : int
        Verbosity level (see the module docstring).
    describe : callable
        ``lam -> str``: the hyperparameter as the user knows it, e.g. ``C=0.25``.
    max_iter : int
        Gradient steps allowed, shown as the denominator of the step counter.
    stream : file-like or None, default=None
        Where to write (``sys.stdout`` when None, looked up at each write so
        that captured output works).
    """

    def __init__(self, verbose, describe, max_iter, stream=None):
        self.verbose = int(verbose or 0)
        self.describe = describe
        self.max_iter = max_iter
        self.stream = stream
        self.best = np.inf
        self._header_written = False
        self._width = 16

    def _write(self, line):
        stream = self.stream if self.stream is not None else sys.stdout
        print(line, file=stream, flush=True)

    def _columns(self):
        columns = [
            ("eval", 4),
            ("phase", 8),
            ("step", 7),
            ("parameter", self._width),
            ("CV loss", 11),
            ("best", 11),
            ("|grad|", 8),
            ("status", 8),
            ("elapsed", 8),
        ]
        if self.verbose >= 2:
            columns += [
                ("tol", 7),
                ("inner it", 8),
                ("HVP", 6),
                ("residual", 8),
                ("fold spread", 11),
            ]
        return columns

    def evaluation(self, record):
        """Write the row of one evaluated point (a history record)."""
        if self.verbose <= 0:
            return
        parameter = self.describe(record["lam"])
        if not self._header_written:
            # room for the widest value a later row may print (ranges grow)
            self._width = max(self._width, len(parameter) + 6)
            columns = self._columns()
            self._write("  ".join(name.rjust(width) for name, width in columns))
            self._header_written = True
        if record["accepted"]:
            self.best = min(self.best, record["value"])
        step = (
            f"{record['gradient_step']}/{self.max_iter}"
            if record["phase"] == "gradient"
            else "-"
        )
        cells = [
            str(record["iteration"]),
            record["phase"],
            step,
            parameter,
            f"{record['value']:.6g}",
            f"{self.best:.6g}",
            f"{record['grad_norm']:.2e}",
            _status(record),
            f"{record['elapsed']:.2f}s",
        ]
        if self.verbose >= 2:
            residual = record["residual"]
            folds = np.asarray(record["fold_values"], dtype=float)
            cells += [
                f"{record['inner_tol']:.0e}",
                str(record["inner_iter"]),
                str(record["n_hvp"]),
                "-" if residual is None else f"{residual:.1e}",
                f"{folds.min():.4g}-{folds.max():.4g}",
            ]
        widths = [width for _, width in self._columns()]
        self._write("  ".join(cell.rjust(width) for cell, width in zip(cells, widths)))

    def finish(self, result):
        """Write why the search stopped and the point it returns."""
        if self.verbose <= 0:
            return
        history = result.history
        elapsed = history[-1]["elapsed"] if history else 0.0
        outcome = "converged" if result.converged else "not converged"
        n = len(history)
        self._write(
            f"Search {outcome} after {n} evaluation{'s' * (n != 1)} "
            f"({result.n_iter} gradient step{'s' * (result.n_iter != 1)}, "
            f"{elapsed:.2f}s): {result.message}. Lowest CV loss "
            f"{result.value:.6g} at {self.describe(result.lam)}."
        )
