"""`alignment` pipeline: SynAlign sec. 3.4, MMD distribution alignment of the synthetic pool."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
