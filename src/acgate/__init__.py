"""acgate: stop backdoor-poisoned training data before a model trained on it is promoted.

The pure core (:mod:`acgate.core`) implements Activation Clustering (Chen et al. 2018) on
arrays; adapters for torch, Parquet, MLflow, Great Expectations, the HTML report and the CLI
sit around it and are imported lazily.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("acgate")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
