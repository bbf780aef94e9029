"""Generation pipeline: SynAlign latent-attribute generation and the SimPrompt / AttrPrompt baselines."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
