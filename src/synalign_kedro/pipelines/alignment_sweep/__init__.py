"""`alignment_sweep` pipeline: the |Theta| sweep of SynAlign table 5 (slow; not part of ``__default__``)."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
