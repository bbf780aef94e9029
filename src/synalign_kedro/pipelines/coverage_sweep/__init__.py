"""`coverage_sweep` pipeline: the tau x k coverage sweep of SynAlign figure 5 (not part of ``__default__``)."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
