"""Figures of ``benchmarks/run.py``, drawn from its JSON results (matplotlib, Agg).

Kept apart from the measurements: ``run.py`` imports this module only after
the results are saved, and skips the figures when matplotlib is missing.
``python benchmarks/run.py --plot RESULTS.json`` redraws them without measuring.
"""

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

#: The target of the hypergradient comparison, in % of the fine-grid best.
TARGET_GAP = 0.1
#: Gaps below this (in %) are drawn at it: the log scale cannot show 0 or less.
GAP_FLOOR = 1e-3


def plot_results(results, out_dir, prefix):
    """Write one PNG per data set of ``results``; return the paths written."""
    paths = []
    for name, dataset in results["datasets"].items():
        if "searches" not in dataset:
            continue
        figure, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
        plot_search_times(left, dataset)
        plot_gap_traces(right, dataset)
        figure.suptitle(dataset["description"])
        figure.tight_layout()
        path = os.path.join(out_dir, f"{prefix}-{name}.png")
        figure.savefig(path, dpi=110)
        plt.close(figure)
        paths.append(path)
    return paths


def plot_search_times(axes, dataset):
    """Horizontal bars: wall time of each search (log scale), annotated with its
    ratio to BilevelSearchCV and the gap of its pick to the fine-grid best."""
    rows = dataset["searches"]
    names = [row["method"] for row in rows][::-1]
    seconds = [row["time"] for row in rows][::-1]
    axes.barh(names, seconds, color="tab:blue")
    axes.set_xscale("log")
    axes.set_xlabel("wall time (s), log scale")
    axes.set_title("Searches for C (5 folds, neg_log_loss)")
    for y, row in enumerate(rows[::-1]):
        axes.annotate(
            f" x{row['ratio']:.2f}, gap {row['gap']:+.3f}%",
            (row["time"], y),
            va="center",
            fontsize=8,
        )
    axes.set_xlim(min(seconds) / 2, max(seconds) * 20)


def plot_gap_traces(axes, dataset):
    """Precise CV-loss gap of each solver's incumbent against time since the start
    of ``fit``, with the 0.1% target; log scale, gaps below ``GAP_FLOOR`` (the
    fine-grid best matched or beaten) drawn at the floor."""
    for row in dataset["hypergradients"]:
        trace = row["trace"]
        axes.step(
            trace["time"],
            [max(gap, GAP_FLOOR) for gap in trace["incumbent_gap"]],
            where="post",
            marker=".",
            label=row["solver"],
        )
    axes.axhline(TARGET_GAP, color="black", linestyle="--", linewidth=1)
    axes.annotate(f"{TARGET_GAP}%", (0, TARGET_GAP), va="bottom", fontsize=8)
    axes.set_yscale("log")
    axes.set_ylim(bottom=GAP_FLOOR / 2)
    axes.set_xlabel("time since fit started (s)")
    axes.set_ylabel(f"gap to fine-grid best CV log-loss (%, floor {GAP_FLOOR})")
    axes.set_title("HOAGLogisticRegression: hypergradient solvers")
    axes.legend(fontsize=8)
