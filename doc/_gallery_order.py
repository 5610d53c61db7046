"""Order of the examples in the gallery: the tour first, then by topic.

``sphinx_gallery_conf["within_subsection_order"]`` names this class by its
import path (a class object in ``conf.py`` would not be picklable, which Sphinx
reports as a warning). Examples not listed come after, by file name.
"""

from pathlib import Path

ORDER = (
    "plot_quick_start.py",
    "plot_pipeline_gridsearch.py",
    "plot_per_feature_fashion.py",
    "plot_hypergradient_solvers.py",
    "plot_gpu.py",
    "demo.py",
)


class ExampleOrder:
    """Sort key of sphinx-gallery's ``within_subsection_order``."""

    def __init__(self, src_dir):
        self.src_dir = src_dir

    def __call__(self, filename):
        name = Path(filename).name
        rank = ORDER.index(name) if name in ORDER else len(ORDER)
        return rank, name

    def __repr__(self):
        return f"<{type(self).__name__}>"
