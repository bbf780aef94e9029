"""LLMSynthor: structured records aligned to target statistics (issue 14; docs/llmsynthor.md)."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
