"""Evaluation pipeline: distances, vocabulary size and downstream classifier per variant (SynAlign sec. 4)."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
