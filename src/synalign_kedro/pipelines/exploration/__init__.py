"""Exploration pipeline: embed the real training set, pick demonstration batches with the GP uncertainty
tracker (SynAlign sec. 3.2) and measure convex-hull coverage against random sampling (appendix A.2.3)."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
