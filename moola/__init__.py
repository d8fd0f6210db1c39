"""moola: a gated training workflow for small time-series classification datasets."""

__version__ = "0.1.0"
