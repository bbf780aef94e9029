"""Ingestion: read, validate, clean and split the real labelled data (train, held-out, test)."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
