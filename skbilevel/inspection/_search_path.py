"""SearchPathDisplay: the path a gradient search took on the CV-loss curve."""

import numpy as np

__all__ = ["SearchPathDisplay"]


class SearchPathDisplay:
    """Visualization of a fitted gradient search (scikit-learn Display style).

    Build it with :meth:`from_estimator`, then call :meth:`plot`. Two views:
    ``kind="path"`` draws the CV loss of every evaluated point against the
    hyperparameter (numbered in order, rejected steps hollow), over an optional
    grid curve; ``kind="trajectory"`` draws the hyperparameter and the CV loss
    against the evaluation index (for several hyperparameters: their geometric
    mean and range).

    Parameters
    ----------
    values : ndarray of shape (n_evaluations, n_hyper)
        Hyperparameter at each evaluation (e.g. ``C``), positive.
    losses : ndarray of shape (n_evaluations,)
        Mean CV loss at each evaluation.
    accepted : ndarray of bool of shape (n_evaluations,)
        Whether each evaluation was kept by the search.
    best_index : int
        Index of the returned point.
    param_name : str, default="C"
        Name of the hyperparameter, for the axis labels.
    grid_values, grid_losses : ndarray of shape (n_grid,) or None
        A reference curve (e.g. ``GridSearchCV``'s mean test losses).

    Attributes
    ----------
    ax_ : matplotlib Axes or ndarray of Axes
        Axes of the last :meth:`plot`.
    figure_ : matplotlib Figure
        Figure of the last :meth:`plot`.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn.datasets import load_breast_cancer
    >>> from sklearn.preprocessing import scale
    >>> from skbilevel import HOAGLogisticRegression
    >>> from skbilevel.inspection import SearchPathDisplay
    >>> X, y = load_breast_cancer(return_X_y=True)
    >>> model = HOAGLogisticRegression().fit(scale(X), y)
    >>> display = SearchPathDisplay.from_estimator(model).plot()
    """

    def __init__(
        self,
        values,
        losses,
        accepted,
        best_index,
        *,
        param_name="C",
        grid_values=None,
        grid_losses=None,
    ):
        self.values = np.asarray(values, dtype=float).reshape(len(losses), -1)
        self.losses = np.asarray(losses, dtype=float)
        self.accepted = np.asarray(accepted, dtype=bool)
        self.best_index = int(best_index)
        self.param_name = param_name
        self.grid_values = grid_values
        self.grid_losses = grid_losses

    @classmethod
    def from_estimator(cls, estimator, *, grid_values=None, grid_losses=None):
        """Read the search history of a fitted estimator.

        Parameters
        ----------
        estimator : fitted HOAGLogisticRegression or BilevelSearchCV
            For ``HOAGLogisticRegression``: its ``history_`` (``C`` of each
            evaluation and its CV log-loss); the best point is the lowest CV
            loss, the ``C_`` it returned. For ``BilevelSearchCV``: the searched
            parameter under the name the user gave (e.g.
            ``"logisticregression__C"``), the outer loss of every point of
            ``cv_results_`` (the estimator's own loss: log-loss for a
            classifier, squared error for ``Ridge``) and ``best_index_``.
        grid_values, grid_losses : array-like of shape (n_grid,), default=None
            Reference curve to draw under the path (e.g. a grid search's mean
            test losses), in the same units as the losses.

        Returns
        -------
        SearchPathDisplay
        """
        history = getattr(estimator, "history_", None)
        if not history:
            raise ValueError(
                f"{type(estimator).__name__} has no search history: fit it first "
                "(SearchPathDisplay needs a fitted gradient search with history_)."
            )
        losses = np.array([record["value"] for record in history])
        accepted = [record["accepted"] is not False for record in history]
        results = getattr(estimator, "cv_results_", None)
        if results is not None:
            # A search: one row of cv_results_ per evaluated point, in order.
            params = results["params"]
            param_name = next(iter(params[0]))
            values = [np.ravel(point[param_name]) for point in params]
            best_index = getattr(estimator, "best_index_", int(np.argmin(losses)))
        else:
            param_name = "C"
            values = [np.ravel(record["C"]) for record in history]
            best_index = int(np.argmin(losses))
        return cls(
            values,
            losses,
            accepted,
            best_index,
            param_name=param_name,
            grid_values=grid_values,
            grid_losses=grid_losses,
        )

    def plot(self, ax=None, *, kind="path", annotate=True):
        """Draw the display.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Where to draw ``kind="path"`` (a new figure when None). For
            ``kind="trajectory"`` a pair of Axes, or None.
        kind : {"path", "trajectory"}, default="path"
        annotate : bool, default=True
            Number the evaluations on the path.

        Returns
        -------
        self : SearchPathDisplay
        """
        import matplotlib.pyplot as plt

        if kind not in ("path", "trajectory"):
            raise ValueError(f"kind must be 'path' or 'trajectory', got {kind!r}.")
        if kind == "trajectory":
            return self._plot_trajectory(ax, plt)
        if ax is None:
            _, ax = plt.subplots(figsize=(6.5, 4))
        if self.values.shape[1] != 1:
            raise ValueError(
                "kind='path' needs one hyperparameter; use kind='trajectory'."
            )
        x = self.values[:, 0]
        if self.grid_values is not None:
            ax.plot(self.grid_values, self.grid_losses, "-", color="0.65", label="grid")
        ax.plot(x, self.losses, ":", color="C1", lw=1)
        ax.scatter(
            x[self.accepted],
            self.losses[self.accepted],
            color="C1",
            zorder=3,
            label="evaluations",
        )
        ax.scatter(
            x[~self.accepted],
            self.losses[~self.accepted],
            facecolors="none",
            edgecolors="C1",
            zorder=3,
            label="rejected",
        )
        ax.scatter(
            x[self.best_index],
            self.losses[self.best_index],
            marker="*",
            s=160,
            color="C3",
            zorder=4,
            label=f"best {self.param_name}",
        )
        if annotate:
            for i, (xi, loss) in enumerate(zip(x, self.losses)):
                ax.annotate(
                    str(i),
                    (xi, loss),
                    textcoords="offset points",
                    xytext=(4, 4),
                    fontsize=8,
                )
        ax.set_xscale("log")
        ax.set(xlabel=self.param_name, ylabel="mean CV loss")
        ax.legend()
        self.ax_, self.figure_ = ax, ax.figure
        return self

    def _plot_trajectory(self, axes, plt):
        from matplotlib.ticker import MaxNLocator

        if axes is None:
            _, axes = plt.subplots(2, 1, sharex=True, figsize=(6.5, 5))
        step = np.arange(len(self.losses))
        log_values = np.log(self.values)
        axes[0].plot(step, np.exp(log_values.mean(axis=1)), "o-", color="C0")
        if self.values.shape[1] > 1:
            axes[0].fill_between(
                step,
                self.values.min(axis=1),
                self.values.max(axis=1),
                color="C0",
                alpha=0.2,
                label="range",
            )
            axes[0].legend()
        axes[0].set(
            yscale="log",
            ylabel=self.param_name
            + (" (geometric mean)" if self.values.shape[1] > 1 else ""),
        )
        axes[1].plot(step, self.losses, "o-", color="C1")
        axes[1].set(xlabel="evaluation", ylabel="mean CV loss")
        axes[1].xaxis.set_major_locator(MaxNLocator(integer=True))
        self.ax_, self.figure_ = np.asarray(axes), axes[0].figure
        return self
