"""`ab_export` pipeline: SynAlign sec. 4.6, control / treatment export for an A/B test, privacy checks,
offline A/B estimate and the run report."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
